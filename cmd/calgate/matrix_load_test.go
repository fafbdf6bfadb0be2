package main

// The Load row of issue 8's adversarial matrix, against the calgate
// binary on 127.0.0.1: 10,000 mixed CalDAV requests at concurrency 200,
// every answer checked against a per-worker model, then 1,000 connections
// that stall in their request headers (slowloris) while normal clients
// keep working. Latencies are measured and reported, never asserted.

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Bounds of TestMatrixLoad.
const (
	loadRequests    = 10000
	loadConcurrency = 200
	loadMaxLive     = 3                // live objects per worker at most
	loadCalendars   = 20               // calendars the workers share, 10 workers each
	loadHangBound   = 75 * time.Second // the mixed phase is a failure past this

	slowConns         = 1000
	slowDialers       = 50              // dials in flight at once
	slowHeaderTimeout = 2 * time.Second // read_header_timeout of the test's calgate
	slowHangBound     = 10 * slowHeaderTimeout
	attackWorkers     = 8 // normal clients during the attack, 2 of them without keep-alive
)

// The request classes of the mixed load, with their weights (of 100).
const (
	opPutNew   = "put-new"
	opPutMatch = "put-if-match"
	opGet      = "get"
	opDelete   = "delete"
	opFind0    = "propfind-0"
	opFind1    = "propfind-1"
	opQuery    = "query-time-range"
	opMultiget = "multiget"
	opSync     = "sync-collection"
)

var loadMix = []struct {
	op     string
	weight int
}{
	{opPutNew, 15}, {opPutMatch, 12}, {opGet, 20}, {opDelete, 8}, {opFind0, 12},
	{opFind1, 6}, {opQuery, 10}, {opMultiget, 10}, {opSync, 7},
}

// loadWorker is one client of the mixed load. It owns the objects it
// creates (nobody else writes them), so its model of them is exact: after
// each acknowledged write it knows what every later read must return.
type loadWorker struct {
	id  int
	srv *calgateProcess
	rng *rand.Rand
	cal string    // the calendar's path
	day time.Time // every event of this worker starts on this UTC day

	live    map[string]ackedPut // path -> the acknowledged ETag and bytes
	num     map[string]int      // path -> its object number (for its UID)
	deleted []string            // paths acknowledged deleted (never reused)
	next    int                 // number of the next new object

	token   string          // sync token of the last sync-collection, "" before
	dirty   map[string]bool // paths written or deleted since token
	atToken map[string]bool // paths live when token was issued

	lat  map[string][]time.Duration // per class
	errs []string
}

func newLoadWorker(srv *calgateProcess, id int) *loadWorker {
	return &loadWorker{
		id:      id,
		srv:     srv,
		cal:     loadCalendarPath(id % loadCalendars),
		rng:     rand.New(rand.NewPCG(uint64(id), 8)),
		day:     time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, id),
		live:    make(map[string]ackedPut),
		num:     make(map[string]int),
		dirty:   make(map[string]bool),
		atToken: make(map[string]bool),
		lat:     make(map[string][]time.Duration),
	}
}

// step runs one request of a class drawn from loadMix, checks its answer
// and records its latency (or its error).
func (w *loadWorker) step(ctx context.Context) {
	op := w.pick()
	start := time.Now()
	err := w.run(ctx, op)
	w.lat[op] = append(w.lat[op], time.Since(start))
	if err != nil {
		w.errs = append(w.errs, fmt.Sprintf("worker %d %s: %v", w.id, op, err))
	}
}

// pick draws a class; classes that need a live object fall back to
// creating one, and creating falls back to deleting at loadMaxLive.
func (w *loadWorker) pick() string {
	n := w.rng.IntN(100)
	op := loadMix[len(loadMix)-1].op
	for _, m := range loadMix {
		if n < m.weight {
			op = m.op
			break
		}
		n -= m.weight
	}
	switch {
	case len(w.live) == 0 && (op == opPutMatch || op == opDelete || op == opFind0 || op == opMultiget):
		return opPutNew
	case op == opPutNew && len(w.live) >= loadMaxLive:
		return opDelete
	case op == opGet && len(w.live) == 0 && len(w.deleted) == 0:
		return opFind1 // nothing to get yet: still a read
	}
	return op
}

// anyLive returns one of the worker's live paths.
func (w *loadWorker) anyLive() string {
	paths := slices.Sorted(maps.Keys(w.live))
	return paths[w.rng.IntN(len(paths))]
}

func (w *loadWorker) event(n, rev int) (uid string, body []byte) {
	uid = fmt.Sprintf("load-w%04d-%04d@calgate.test", w.id, n)
	return uid, eventICS(uid, fmt.Sprintf("Load worker %d object %d revision %d", w.id, n, rev),
		w.day.Add(time.Duration(n)*5*time.Minute))
}

var (
	calHeader = http.Header{"Content-Type": {"text/calendar; charset=utf-8"}}
	xmlHeader = http.Header{"Content-Type": {"application/xml; charset=utf-8"}}
)

func withHeader(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// run sends one request of class op and checks the answer against the
// model, updating the model after an acknowledged write.
func (w *loadWorker) run(ctx context.Context, op string) error {
	switch op {
	case opPutNew:
		n := w.next
		w.next++
		path := fmt.Sprintf("%sload-w%04d-%04d.ics", w.cal, w.id, n)
		_, body := w.event(n, 0)
		resp, data, err := w.srv.do(ctx, http.MethodPut, path, body, withHeader(calHeader, "If-None-Match", "*"))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("ETag") == "" {
			return fmt.Errorf("PUT %s: %s, ETag %q, want 201 and an ETag: %s", path, resp.Status, resp.Header.Get("ETag"), data)
		}
		w.live[path] = ackedPut{etag: resp.Header.Get("ETag"), body: body}
		w.num[path] = n
		w.dirty[path] = true

	case opPutMatch:
		path := w.anyLive()
		old := w.live[path]
		_, body := w.event(w.num[path], w.rng.IntN(1_000_000)+1)
		resp, data, err := w.srv.do(ctx, http.MethodPut, path, body, withHeader(calHeader, "If-Match", old.etag))
		if err != nil {
			return err
		}
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != http.StatusNoContent || etag == "" || etag == old.etag {
			return fmt.Errorf("PUT %s If-Match %s: %s, ETag %q, want 204 and a new ETag: %s", path, old.etag, resp.Status, etag, data)
		}
		w.live[path] = ackedPut{etag: etag, body: body}
		w.dirty[path] = true

	case opGet:
		if len(w.deleted) > 0 && (len(w.live) == 0 || w.rng.IntN(5) == 0) {
			path := w.deleted[w.rng.IntN(len(w.deleted))]
			resp, _, err := w.srv.do(ctx, http.MethodGet, path, nil, nil)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusNotFound {
				return fmt.Errorf("GET %s (deleted): %s, want 404", path, resp.Status)
			}
			return nil
		}
		path := w.anyLive()
		want := w.live[path]
		resp, data, err := w.srv.do(ctx, http.MethodGet, path, nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != want.etag || string(data) != string(want.body) {
			return fmt.Errorf("GET %s: %s, ETag %q (want 200, %q, the acknowledged bytes); body:\n%s", path, resp.Status, resp.Header.Get("ETag"), want.etag, data)
		}

	case opDelete:
		path := w.anyLive()
		resp, data, err := w.srv.do(ctx, http.MethodDelete, path, nil, http.Header{"If-Match": {w.live[path].etag}})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("DELETE %s: %s, want 204: %s", path, resp.Status, data)
		}
		delete(w.live, path)
		w.deleted = append(w.deleted, path)
		w.dirty[path] = true

	case opFind0:
		path := w.anyLive()
		ms, err := w.multistatus(ctx, "PROPFIND", path, "0", `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`)
		if err != nil {
			return err
		}
		got := hrefETags(ms)
		if len(ms.Responses) != 1 || got[path] != w.live[path].etag {
			return fmt.Errorf("PROPFIND %s Depth 0: %+v, want one response with ETag %s", path, ms.Responses, w.live[path].etag)
		}

	case opFind1:
		ms, err := w.multistatus(ctx, "PROPFIND", w.cal, "1", `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`)
		if err != nil {
			return err
		}
		return w.checkListing("PROPFIND Depth 1", hrefETags(ms), nil, false)

	case opQuery:
		start := w.day.Format("20060102T150405Z")
		end := w.day.AddDate(0, 0, 1).Format("20060102T150405Z")
		ms, err := w.multistatus(ctx, "REPORT", w.cal, "1", `<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
    <C:time-range start="`+start+`" end="`+end+`"/>
  </C:comp-filter></C:comp-filter></C:filter>
</C:calendar-query>`)
		if err != nil {
			return err
		}
		// The time range is this worker's day: exactly its live objects.
		return w.checkListing("calendar-query", hrefETags(ms), calendarData(ms), true)

	case opMultiget:
		hrefs := slices.Collect(maps.Keys(w.live))
		var gone string
		if len(w.deleted) > 0 {
			gone = w.deleted[w.rng.IntN(len(w.deleted))]
			hrefs = append(hrefs, gone)
		}
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="utf-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop>`)
		for _, h := range hrefs {
			b.WriteString("<D:href>" + h + "</D:href>")
		}
		b.WriteString("</C:calendar-multiget>")
		ms, err := w.multistatus(ctx, "REPORT", w.cal, "1", b.String())
		if err != nil {
			return err
		}
		if err := w.checkListing("calendar-multiget", hrefETags(ms), calendarData(ms), true); err != nil {
			return err
		}
		if gone != "" && !slices.Contains(notFound(ms), gone) {
			return fmt.Errorf("calendar-multiget: deleted %s not reported 404: %+v", gone, ms.Responses)
		}

	case opSync:
		ms, err := w.multistatus(ctx, "REPORT", w.cal, "0", `<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:"><D:sync-token>`+w.token+`</D:sync-token><D:sync-level>1</D:sync-level>
<D:prop><D:getetag/></D:prop></D:sync-collection>`)
		if err != nil {
			return err
		}
		if ms.SyncToken == "" {
			return errors.New("sync-collection: no sync-token")
		}
		if err := w.checkSync(hrefETags(ms), notFound(ms)); err != nil {
			return err
		}
		w.token = ms.SyncToken
		clear(w.dirty)
		clear(w.atToken)
		for p := range w.live {
			w.atToken[p] = true
		}
	}
	return nil
}

// checkListing checks the worker's own objects in a listing of the
// calendar: every live one is there with its ETag (and, with data, its
// bytes), no deleted one is; with exact, nothing else of the worker's is.
func (w *loadWorker) checkListing(what string, etags map[string]string, data map[string]string, exact bool) error {
	for path, want := range w.live {
		switch got, ok := etags[path]; {
		case !ok:
			return fmt.Errorf("%s: live %s missing", what, path)
		case got != want.etag:
			return fmt.Errorf("%s: %s has ETag %s, acknowledged %s", what, path, got, want.etag)
		case data != nil && data[path] != strings.ReplaceAll(string(want.body), "\r\n", "\n"):
			return fmt.Errorf("%s: %s calendar-data differs from the acknowledged bytes:\n%s", what, path, data[path])
		}
	}
	for _, path := range w.deleted {
		if _, ok := etags[path]; ok {
			return fmt.Errorf("%s: deleted %s listed", what, path)
		}
	}
	if exact {
		for path := range etags {
			if _, ok := w.live[path]; !ok && path != w.cal {
				return fmt.Errorf("%s: %s listed, not a live object of worker %d", what, path, w.id)
			}
		}
	}
	return nil
}

// checkSync checks a sync-collection answer against what the worker
// changed since its token (all of it, for an empty token): each live
// object written since is reported with its ETag, each object deleted
// since is reported removed (or need not be, if it was also created since).
func (w *loadWorker) checkSync(etags map[string]string, removed []string) error {
	if w.token == "" {
		return w.checkListing("sync-collection from an empty token", etags, nil, false)
	}
	for path := range w.dirty {
		want, live := w.live[path]
		switch {
		case live && etags[path] != want.etag:
			return fmt.Errorf("sync-collection: %s changed since %s, reported with ETag %q, want %s", path, w.token, etags[path], want.etag)
		case live && slices.Contains(removed, path):
			return fmt.Errorf("sync-collection: live %s reported removed", path)
		case !live && etags[path] != "":
			return fmt.Errorf("sync-collection: deleted %s reported present", path)
		case !live && w.atToken[path] && !slices.Contains(removed, path):
			return fmt.Errorf("sync-collection: %s, deleted since %s, not reported removed", path, w.token)
		}
	}
	return nil
}

// multistatus sends a PROPFIND or REPORT and decodes the 207 answer.
func (w *loadWorker) multistatus(ctx context.Context, method, path, depth, body string) (multistatus, error) {
	var ms multistatus
	resp, data, err := w.srv.do(ctx, method, path, []byte(body), withHeader(xmlHeader, "Depth", depth))
	if err != nil {
		return ms, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return ms, fmt.Errorf("%s %s: %s, want 207: %s", method, path, resp.Status, data)
	}
	if err := xml.Unmarshal(data, &ms); err != nil {
		return ms, fmt.Errorf("%s %s: decode multistatus: %v", method, path, err)
	}
	return ms, nil
}

// hrefPath is the path of a multistatus href (which may be absolute).
func hrefPath(h string) string {
	if u, err := url.Parse(h); err == nil {
		return u.Path
	}
	return h
}

// hrefETags maps each href with a 200 propstat to its getetag.
func hrefETags(ms multistatus) map[string]string {
	out := make(map[string]string, len(ms.Responses))
	for _, r := range ms.Responses {
		if p, ok := r.found(); ok {
			out[hrefPath(r.Href)] = p.ETag
		}
	}
	return out
}

// calendarData maps each href with a 200 propstat to its calendar-data.
func calendarData(ms multistatus) map[string]string {
	out := make(map[string]string, len(ms.Responses))
	for _, r := range ms.Responses {
		if p, ok := r.found(); ok {
			out[hrefPath(r.Href)] = strings.ReplaceAll(p.CalendarData, "\r\n", "\n")
		}
	}
	return out
}

// notFound lists the hrefs answered with a 404 status.
func notFound(ms multistatus) []string {
	var out []string
	for _, r := range ms.Responses {
		if strings.Contains(r.Status, " 404 ") {
			out = append(out, hrefPath(r.Href))
		}
	}
	return out
}

// latencies is per-class request latencies plus the errors seen.
type latencies struct {
	byOp map[string][]time.Duration
	errs []string
}

func (l *latencies) add(w *loadWorker) {
	if l.byOp == nil {
		l.byOp = make(map[string][]time.Duration)
	}
	for op, ds := range w.lat {
		l.byOp[op] = append(l.byOp[op], ds...)
	}
	l.errs = append(l.errs, w.errs...)
}

func (l *latencies) all() []time.Duration {
	var all []time.Duration
	for _, ds := range l.byOp {
		all = append(all, ds...)
	}
	return all
}

// quantiles returns the p50, p99 and max of ds.
func quantiles(ds []time.Duration) (p50, p99, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// report logs the figures and fails the test on any error.
func (l *latencies) report(t *testing.T, phase string) {
	t.Helper()
	for _, m := range loadMix {
		if ds := l.byOp[m.op]; len(ds) > 0 {
			p50, p99, maxD := quantiles(ds)
			t.Logf("MATRIX Load: %s %-16s n=%5d p50=%v p99=%v max=%v", phase, m.op, len(ds), p50, p99, maxD)
		}
	}
	all := l.all()
	p50, p99, maxD := quantiles(all)
	t.Logf("MATRIX Load: %s overall requests=%d errors=%d p50=%v p99=%v max=%v", phase, len(all), len(l.errs), p50, p99, maxD)
	for i, e := range l.errs {
		if i == 20 {
			t.Errorf("... and %d more errors", len(l.errs)-i)
			break
		}
		t.Error(e)
	}
}

// loadCalendarPath is the path of the i-th calendar of the load.
func loadCalendarPath(i int) string {
	return fmt.Sprintf("/dav/calendars/%s/load-%02d/", testUser, i)
}

// loadClient is an HTTP client for the load: enough idle connections that
// each worker keeps its own, or none (a new connection per request).
func loadClient(keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second, // a hang bound, far above any latency seen
		Transport: &http.Transport{
			MaxIdleConns:        loadConcurrency,
			MaxIdleConnsPerHost: loadConcurrency,
			DisableKeepAlives:   !keepAlive,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// openFileLimit reads the soft and hard RLIMIT_NOFILE of process pid.
func openFileLimit(t *testing.T, pid int) (soft, hard uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatalf("read the limits of calgate: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if f := strings.Fields(rest); ok && len(f) >= 2 {
			soft, _ = strconv.ParseUint(f[0], 10, 64)
			hard, _ = strconv.ParseUint(f[1], 10, 64)
			return soft, hard
		}
	}
	t.Fatalf("no open-files line in /proc/%d/limits:\n%s", pid, b)
	return 0, 0
}

// TestMatrixLoad is issue 8's Load row: 10,000 mixed requests at
// concurrency 200 with every answer checked and 0 errors, then 1,000
// slow-header connections, which calgate must close after its
// read_header_timeout while normal clients keep being served.
func TestMatrixLoad(t *testing.T) {
	t.Run("Config", testReadHeaderTimeoutConfig)

	config := writeCalgateConfig(t, t.TempDir())
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "read_header_timeout: %s\n", slowHeaderTimeout)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	srv := startCalgate(t, config)
	srv.client = loadClient(true)

	// calgate holds the mixed load's and the slow connections at once,
	// besides its files. The Go runtime raises the soft open-file limit
	// to the hard one at start; a hard limit this low fails here, clearly.
	need := uint64(loadConcurrency + slowConns + attackWorkers + 100)
	soft, hard := openFileLimit(t, srv.cmd.Process.Pid)
	t.Logf("MATRIX Load: calgate open-file limit soft=%d hard=%d (needs about %d)", soft, hard, need)
	if soft < need {
		t.Fatalf("calgate may open %d files, the load needs about %d: raise the hard limit (ulimit -Hn)", soft, need)
	}

	// The workers share calendars ten by ten, as clients of a few people
	// would, so that a listing is not the whole store.
	for i := range loadCalendars {
		resp, data := srv.mustDo(t, "MKCALENDAR", loadCalendarPath(i), nil, nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("MKCALENDAR %s: %s\n%s", loadCalendarPath(i), resp.Status, data)
		}
	}

	t.Run("Mixed", func(t *testing.T) { matrixLoadMixed(t, srv) })
	t.Run("SlowHeaders", func(t *testing.T) { matrixLoadSlowHeaders(t, srv) })

	srv.stop(t)
	if st := srv.cmd.ProcessState; st != nil {
		t.Logf("MATRIX Load: calgate CPU time user=%v system=%v (race build: %v)", st.UserTime().Round(time.Millisecond), st.SystemTime().Round(time.Millisecond), raceEnabled())
	}
	for _, bad := range []string{"level=ERROR", "Accept error", "panic"} {
		if logs := srv.logs.String(); strings.Contains(logs, bad) {
			t.Errorf("calgate logged %q under load:\n%s", bad, logs)
		}
	}
}

// testReadHeaderTimeoutConfig checks the read_header_timeout key that
// the slow-header phase sets: its default, a value, and the refusals.
func testReadHeaderTimeoutConfig(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want time.Duration
		err  string // "" for valid
	}{
		{"", readHeaderTimeout, ""},
		{"read_header_timeout: 2s", 2 * time.Second, ""},
		{"read_header_timeout: -1s", 0, "read_header_timeout -1s: must be a positive duration"},
		{"read_header_timeout: 10", 0, "write a duration with its unit"},
	} {
		yml := fmt.Sprintf("users:\n  - name: %s\n    password_hash: %q\n%s\n", testUser, testHash, tc.key)
		cfg, err := ParseConfig(strings.NewReader(yml))
		if err == nil {
			err = cfg.Validate()
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.key, err)
		case tc.err == "" && cfg.ReadHeaderTimeout != tc.want:
			t.Errorf("%q: ReadHeaderTimeout = %v, want %v", tc.key, cfg.ReadHeaderTimeout, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one containing %q", tc.key, err, tc.err)
		}
	}
}

// matrixLoadMixed sends loadRequests mixed requests from loadConcurrency
// workers and checks every answer.
func matrixLoadMixed(t *testing.T, srv *calgateProcess) {
	ctx, cancel := context.WithTimeout(t.Context(), loadHangBound)
	defer cancel()
	var (
		tickets atomic.Int64
		wg      sync.WaitGroup
		workers = make([]*loadWorker, loadConcurrency)
	)
	start := time.Now()
	for i := range workers {
		w := newLoadWorker(srv, i)
		workers[i] = w
		wg.Go(func() {
			for tickets.Add(1) <= loadRequests && ctx.Err() == nil {
				w.step(ctx)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	var l latencies
	for _, w := range workers {
		l.add(w)
	}
	if ctx.Err() != nil {
		t.Errorf("the mixed load did not finish within %v", loadHangBound)
	}
	n := len(l.all())
	l.report(t, "mixed")
	t.Logf("MATRIX Load: mixed %d requests at concurrency %d in %v: %.0f requests/s", n, loadConcurrency, took.Round(time.Millisecond), float64(n)/took.Seconds())
	if n != loadRequests {
		t.Errorf("%d requests sent, want %d", n, loadRequests)
	}
}

// slowResult is what became of one slow-header connection.
type slowResult struct {
	closed  bool          // the server closed it (EOF or reset)
	toClose time.Duration // from the start of the dial to the close
	got     int           // bytes the server sent before closing
	first   string        // the start of what the server sent
	err     string        // a dial or unexpected error
}

// slowAttack opens slow-header connections to addr, at most cap(dialing)
// dials at a time, and counts how many are open at once.
type slowAttack struct {
	addr       string
	dialing    chan struct{}
	open, peak atomic.Int64
}

// conn dials calgate, sends part of a request and then nothing (drip
// false) or one more byte a second, and reads until calgate closes the
// connection or slowHangBound passes.
func (a *slowAttack) conn(ctx context.Context, i int, drip bool) slowResult {
	a.dialing <- struct{}{}
	// Measured from before the dial, so that the server's clock for this
	// connection (started at accept) can only have started later.
	dialed := time.Now()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", a.addr)
	<-a.dialing
	if err != nil {
		return slowResult{err: "dial: " + err.Error()}
	}
	defer c.Close()
	n := a.open.Add(1)
	defer a.open.Add(-1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}

	partial := "GET /dav/calendars/alice/personal/ HT" // a cut request line
	if i%2 == 1 {
		partial = "PROPFIND /dav/calendars/alice/personal/ HTTP/1.1\r\nHost: " + a.addr + "\r\nDepth: 1\r\nX-Slow: "
	}
	if _, err := io.WriteString(c, partial); err != nil {
		return slowResult{err: "write: " + err.Error()}
	}
	var res slowResult
	buf := make([]byte, 512)
	for {
		deadline := dialed.Add(slowHangBound)
		if next := time.Now().Add(time.Second); drip && next.Before(deadline) {
			deadline = next
		}
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if res.got == 0 && n > 0 {
			res.first = string(buf[:min(n, 40)])
		}
		res.got += n
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			if time.Since(dialed) >= slowHangBound || ctx.Err() != nil {
				res.err = fmt.Sprintf("still open after %v", time.Since(dialed).Round(time.Millisecond))
				return res
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(c, "a"); err != nil {
				res.closed, res.toClose = true, time.Since(dialed) // the server closed it meanwhile
				return res
			}
		default: // io.EOF or a reset: the server closed it
			res.closed, res.toClose = true, time.Since(dialed)
			return res
		}
	}
}

// matrixLoadSlowHeaders opens slowConns slow-header connections while
// attackWorkers normal clients keep sending checked requests, and checks
// that every slow connection is closed by calgate, none before
// slowHeaderTimeout, and that the normal clients saw no error.
func matrixLoadSlowHeaders(t *testing.T, srv *calgateProcess) {
	ctx, cancel := context.WithTimeout(t.Context(), slowHangBound+30*time.Second)
	defer cancel()
	addr := strings.TrimSuffix(strings.TrimPrefix(srv.URL, "http://"), "/")

	// Normal traffic: the same checked mixed requests, on kept-alive
	// connections and (2 workers) on a new connection each time.
	stop := make(chan struct{})
	var (
		normal  sync.WaitGroup
		workers []*loadWorker
	)
	fresh := &calgateProcess{URL: srv.URL, client: loadClient(false)}
	for i := range attackWorkers {
		p := srv
		if i < 2 {
			p = fresh
		}
		w := newLoadWorker(p, 1000+i)
		workers = append(workers, w)
		normal.Go(func() {
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				w.step(ctx)
			}
		})
	}

	var (
		results = make([]slowResult, slowConns)
		slow    sync.WaitGroup
		a       = &slowAttack{addr: addr, dialing: make(chan struct{}, slowDialers)}
	)
	start := time.Now()
	for i := range slowConns {
		slow.Go(func() { results[i] = a.conn(ctx, i, i%4 >= 2) })
	}
	slow.Wait()
	attack := time.Since(start)
	close(stop)
	normal.Wait()

	var (
		closed, early       int
		silent, answered400 int
		toClose             []time.Duration
		sent                int
	)
	for i, r := range results {
		switch {
		case r.err != "":
			t.Errorf("slow connection %d: %s", i, r.err)
		case r.closed:
			closed++
			toClose = append(toClose, r.toClose)
			if r.toClose < slowHeaderTimeout {
				early++
			}
			sent += r.got
			switch {
			case r.first == "":
				silent++
			case strings.HasPrefix(r.first, "HTTP/1.1 400 "):
				answered400++
			default:
				t.Errorf("slow connection %d: calgate answered %q, want nothing or 400", i, r.first)
			}
		}
	}
	p50, _, maxD := quantiles(toClose)
	t.Logf("MATRIX Load: slow-header connections opened=%d closed-by-server=%d (silently %d, after a 400 %d, %d bytes) closed-before-timeout=%d peak-open=%d read_header_timeout=%v time-to-close min=%v p50=%v max=%v attack=%v",
		slowConns, closed, silent, answered400, sent, early, a.peak.Load(), slowHeaderTimeout,
		slices.Min(append(toClose, slowHangBound)), p50, maxD, attack.Round(time.Millisecond))
	if closed != slowConns {
		t.Errorf("calgate closed %d of %d slow-header connections within %v", closed, slowConns, slowHangBound)
	}
	if early > 0 {
		t.Errorf("%d slow-header connections were closed before read_header_timeout (%v): not by the timeout", early, slowHeaderTimeout)
	}
	var l latencies
	for _, w := range workers {
		l.add(w)
	}
	l.report(t, "during-attack")
}
