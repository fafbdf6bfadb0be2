package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// options are the settings of one run; main fills them from flags.
type options struct {
	Home     string // calendar home collection URL; found from URL when empty
	URL      string // server URL to discover the calendar home from (RFC 6764)
	Calendar string // fixed calendar name under the home; "" makes a fresh one
	Feed     string // merged-feed URL (with its token) over Calendar; "" skips the feed
	User     string
	Password string
	N        int // events to load
	C        int // concurrency of the load and the throughput measurements
	// LatencyC is the concurrency of the measurements whose figure is a
	// latency (p50 of PROPFIND Depth 1, queries, multiget, collection GET):
	// the time one client waits, not the queue of c clients on the cores.
	LatencyC int
	Duration time.Duration // time bound of each round of a measurement
	Requests int           // count bound of each round; 0 means maxRequests
	Rounds   int           // measured rounds of each operation, after a warm-up
	Ops      []string      // operations to measure; nil means all
	Bulk     int           // events stored by one PUT of the whole calendar before the load
	Seed     uint64
	Keep     bool          // keep the calendar after the run
	PID      int           // server process for peak RSS; 0 means none
	Timeout  time.Duration // per-request timeout

	// monthSkew and feedSkew are added to the expected one-month and feed
	// counts; the tests use them to see that a wrong count fails the run.
	monthSkew int
	feedSkew  int
}

// maxRequests bounds a measurement when no -requests is given.
const maxRequests = 1_000_000

// opResult is one row of the table: for a measured operation, the median
// round of each figure, with every round in Rounds.
type opResult struct {
	Name      string         `json:"name"`
	Requests  int            `json:"requests"` // over all rounds
	OpsPerSec float64        `json:"ops_per_sec"`
	P50ms     float64        `json:"p50_ms"`
	P99ms     float64        `json:"p99_ms"`
	Items     int            `json:"items"` // items in each answer (objects, responses or instances)
	OK        bool           `json:"ok"`
	Error     string         `json:"error,omitempty"`
	Mix       map[string]int `json:"mix,omitempty"` // requests per kind, for the mixed load
	// Tenths are the rates (per second) of each tenth of the PUT load, in
	// order of completion: whether writes slow down as the calendar grows.
	Tenths []float64 `json:"tenths_per_sec,omitempty"`
	Rounds []round   `json:"rounds,omitempty"`

	wall time.Duration // of a single round
}

// round is one measured round of an operation.
type round struct {
	Requests  int     `json:"requests"`
	WallS     float64 `json:"wall_s"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
}

// report is the outcome of a run.
type report struct {
	Home      string     `json:"home,omitempty"`
	Calendar  string     `json:"calendar,omitempty"`
	Feed      string     `json:"feed,omitempty"` // redacted: no token
	Load      string     `json:"load,omitempty"` // how the events were stored
	N         int        `json:"n,omitempty"`
	C         int        `json:"c"`
	LatencyC  int        `json:"latency_c"`
	Rounds    int        `json:"rounds"`
	DurationS float64    `json:"duration_s"`
	Seed      uint64     `json:"seed,omitempty"`
	Ops       []opResult `json:"ops"`
	PeakRSSKB int64      `json:"peak_rss_kb,omitempty"`
	Failures  []string   `json:"failures,omitempty"`
}

// op returns the row called name, if there is one.
func (r *report) op(name string) (opResult, bool) {
	for _, o := range r.Ops {
		if o.Name == name {
			return o, true
		}
	}
	return opResult{}, false
}

// bench is the state of one run.
type bench struct {
	opts    options
	cl      *client
	calURL  *url.URL // the calendar of the run
	feedURL string   // the merged feed over the calendar, or ""
	evs     []event
	etags   []string // current ETag per event ("" until known); written by the one goroutine that PUTs it
	rev     []int    // current revision per event; same rule
}

// newClient makes the HTTP client of a run: per-request timeout, enough
// idle connections for c workers, and no redirects followed (only the
// given server is contacted; discovery follows them itself).
func newClient(user, password string, c int, timeout time.Duration) *client {
	return &client{
		user: user, password: password,
		http: &http.Client{
			Timeout:       timeout,
			Transport:     &http.Transport{MaxIdleConnsPerHost: c + 2, MaxIdleConns: c + 2},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// defaults fills in the zero settings of o.
func (o *options) defaults() {
	if o.Requests <= 0 {
		o.Requests = maxRequests
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.Rounds < 1 {
		o.Rounds = 1
	}
	if o.C < 1 {
		o.C = 1
	}
}

// run creates or takes a calendar under the home, loads the events,
// measures every operation and checks every answer. The error lists the
// failed checks; the report is filled in as far as the run got.
func run(ctx context.Context, opts options) (*report, error) {
	if opts.N < 1 || opts.C < 1 {
		return nil, errors.New("bench: -n and -c must be at least 1")
	}
	opts.defaults()
	if opts.Bulk > opts.N {
		opts.Bulk = opts.N
	}
	if opts.Feed != "" && opts.Calendar == "" {
		return nil, errors.New("bench: -feed needs -calendar: the feed must publish the calendar the tool loads")
	}
	if err := checkOps(opts.Ops); err != nil {
		return nil, err
	}
	cl := newClient(opts.User, opts.Password, opts.C, opts.Timeout)
	defer cl.http.CloseIdleConnections()
	if opts.Home == "" {
		if opts.URL == "" {
			return nil, errors.New("bench: give -home or -url")
		}
		base, err := httpURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("bench: -url: %w", err)
		}
		home, err := cl.discover(ctx, base)
		if err != nil {
			return nil, err
		}
		opts.Home = home.String()
	}
	home, err := httpURL(opts.Home)
	if err != nil {
		return nil, fmt.Errorf("bench: -home: %w", err)
	}
	if !strings.HasSuffix(home.Path, "/") {
		home.Path += "/"
	}
	if opts.Feed != "" {
		if _, err := httpURL(opts.Feed); err != nil {
			return nil, fmt.Errorf("bench: -feed %s: %w", redactURL(opts.Feed), err)
		}
	}
	evs, err := generate(opts.Seed, opts.N)
	if err != nil {
		return nil, err
	}
	name := opts.Calendar
	if name == "" {
		name = fmt.Sprintf("calgate-bench-%d-%d", opts.Seed, time.Now().UnixNano())
	}
	b := &bench{
		opts:    opts,
		cl:      cl,
		calURL:  home.JoinPath(name + "/"),
		feedURL: opts.Feed,
		evs:     evs,
		etags:   make([]string, len(evs)),
		rev:     make([]int, len(evs)),
	}
	rep := &report{
		Home: home.String(), Calendar: b.calURL.String(), Feed: redactURL(opts.Feed),
		N: opts.N, C: opts.C, LatencyC: max(1, opts.LatencyC), Rounds: opts.Rounds, DurationS: opts.Duration.Seconds(), Seed: opts.Seed,
	}
	if err := b.prepareCalendar(ctx); err != nil {
		return rep, err
	}
	if !opts.Keep {
		defer b.deleteCalendar()
	}

	rep.Load = fmt.Sprintf("%d by PUT at c=%d", opts.N-opts.Bulk, opts.C)
	if opts.Bulk > 0 {
		rep.Load = fmt.Sprintf("%d by one PUT of the whole calendar, then %s", opts.Bulk, rep.Load)
		bulk := b.bulkLoad(ctx)
		rep.Ops = append(rep.Ops, bulk)
		if !bulk.OK {
			rep.Failures = append(rep.Failures, bulk.Name+": "+bulk.Error)
			return rep, fmt.Errorf("bench: %s", strings.Join(rep.Failures, "; "))
		}
	}
	if opts.Bulk < opts.N {
		load := b.load(ctx)
		rep.Ops = append(rep.Ops, load)
		if !load.OK {
			rep.Failures = append(rep.Failures, load.Name+": "+load.Error)
			return rep, fmt.Errorf("bench: %s", strings.Join(rep.Failures, "; "))
		}
	}
	for _, m := range b.measurements() {
		if ctx.Err() != nil {
			break
		}
		if opts.Ops != nil && !slices.Contains(opts.Ops, m.name) {
			continue
		}
		r := b.measureRounds(ctx, m)
		rep.Ops = append(rep.Ops, r)
		if !r.OK {
			rep.Failures = append(rep.Failures, r.Name+": "+r.Error)
		}
	}
	if opts.PID > 0 {
		kb, err := peakRSS(opts.PID)
		if err != nil {
			rep.Failures = append(rep.Failures, "peak_rss: "+err.Error())
		}
		rep.PeakRSSKB = kb
	}
	if ctx.Err() != nil {
		rep.Failures = append(rep.Failures, "run: "+ctx.Err().Error())
	}
	if len(rep.Failures) > 0 {
		return rep, fmt.Errorf("bench: %d check(s) failed: %s", len(rep.Failures), strings.Join(rep.Failures, "; "))
	}
	return rep, nil
}

// httpURL parses an absolute http(s) URL.
func httpURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", redactURL(s))
	}
	return u, nil
}

// prepareCalendar makes the calendar of the run: a fresh one with
// MKCALENDAR, or the named one, created if missing and required empty.
func (b *bench) prepareCalendar(ctx context.Context) error {
	if b.opts.Calendar != "" {
		status, _, body, _, err := b.cl.do(ctx, "PROPFIND", b.calURL.String(),
			map[string]string{"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}, []byte(propfindBody))
		if err != nil {
			return fmt.Errorf("bench: look at calendar %s: %w", b.opts.Calendar, err)
		}
		if status != http.StatusNotFound {
			ms, err := parseMultistatus(status, body)
			if err != nil {
				return fmt.Errorf("bench: PROPFIND %s: %w", b.calURL, err)
			}
			if len(ms.Responses) != 1 {
				return fmt.Errorf("bench: calendar %s holds %d members; -calendar needs an empty calendar (delete it or its objects first)",
					b.calURL, len(ms.Responses)-1)
			}
			return nil
		}
	}
	status, _, body, _, err := b.cl.do(ctx, "MKCALENDAR", b.calURL.String(), map[string]string{"Content-Type": "application/xml"}, []byte(mkcalendarBody))
	if err != nil {
		return fmt.Errorf("bench: create calendar: %w", err)
	}
	if status != http.StatusCreated {
		return fmt.Errorf("bench: MKCALENDAR %s: status %d, want 201: %.300s", b.calURL, status, body)
	}
	return nil
}

// deleteCalendar deletes the calendar of the run, with a fresh context:
// it goes even when the run was cancelled.
func (b *bench) deleteCalendar() {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
	defer cancel()
	status, _, _, _, err := b.cl.do(ctx, http.MethodDelete, b.calURL.String(), nil, nil)
	if err == nil && status/100 != 2 {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "calgate-bench: delete %s: %v\n", b.calURL, err)
	}
}

// objURL is the URL of event i.
func (b *bench) objURL(i int) string { return b.calURL.JoinPath(b.evs[i].Name).String() }

// objPath is the path of event i, as hrefs in answers name it.
func (b *bench) objPath(i int) string { return b.calURL.Path + b.evs[i].Name }

// etag returns the current ETag of event i, reading it with a GET when
// the tool does not know it (after a bulk load).
func (b *bench) etag(ctx context.Context, i int) (string, error) {
	if b.etags[i] != "" {
		return b.etags[i], nil
	}
	status, h, _, _, err := b.cl.do(ctx, http.MethodGet, b.objURL(i), nil, nil)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK || h.Get("ETag") == "" {
		return "", fmt.Errorf("GET %s: status %d, ETag %q; want 200 with an ETag", b.evs[i].Name, status, h.Get("ETag"))
	}
	b.etags[i] = h.Get("ETag")
	return b.etags[i], nil
}

// put stores revision rev of event i and records its ETag. With ifMatch the
// PUT is conditional on the current ETag; otherwise on the object being new.
// The duration is that of the PUT alone.
func (b *bench) put(ctx context.Context, i, rev int, ifMatch bool) (time.Duration, error) {
	hdr := map[string]string{"Content-Type": "text/calendar; charset=utf-8"}
	want := []int{http.StatusCreated}
	if ifMatch {
		etag, err := b.etag(ctx, i)
		if err != nil {
			return 0, err
		}
		hdr["If-Match"] = etag
		want = []int{http.StatusNoContent, http.StatusOK, http.StatusCreated}
	} else {
		hdr["If-None-Match"] = "*"
	}
	status, h, body, d, err := b.cl.do(ctx, http.MethodPut, b.objURL(i), hdr, b.evs[i].body(rev))
	if err != nil {
		return 0, err
	}
	if !slices.Contains(want, status) {
		return d, fmt.Errorf("PUT %s: status %d, want %v: %.300s", b.evs[i].Name, status, want, body)
	}
	b.etags[i], b.rev[i] = "", rev
	if etag := h.Get("ETag"); etag != "" && !strings.HasPrefix(etag, "W/") {
		b.etags[i] = etag
	} else if _, err := b.etag(ctx, i); err != nil {
		// No strong ETag on the PUT answer (RFC 4791 section 5.3.4 allows
		// that): it was read with a GET.
		return d, fmt.Errorf("after PUT: %w", err)
	}
	return d, nil
}

// bulkLoad stores the first opts.Bulk events with one PUT of a whole
// VCALENDAR to the collection, which some servers split into one object
// per UID (named UID.ics, as the generator names the events). It is a
// fast way to fill servers whose PUT of a new object costs time linear in
// the calendar's size; the measured PUT load is then the rest.
func (b *bench) bulkLoad(ctx context.Context) opResult {
	body := bulkBody(b.evs[:b.opts.Bulk])
	start := time.Now()
	status, _, resp, d, err := b.cl.do(ctx, http.MethodPut, b.calURL.String(),
		map[string]string{"Content-Type": "text/calendar; charset=utf-8"}, body)
	if err == nil && status/100 != 2 {
		err = fmt.Errorf("PUT of the whole calendar (%d events): status %d, want 2xx: %.300s", b.opts.Bulk, status, resp)
	}
	return summarize("bulk_load", time.Since(start), []time.Duration{d}, b.opts.Bulk, err)
}

// load PUTs every event after the bulk-loaded ones with b.opts.C workers.
func (b *bench) load(ctx context.Context) opResult {
	var next atomic.Int64
	next.Store(int64(b.opts.Bulk))
	lats := make([][]time.Duration, b.opts.C)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var first firstError
	start := time.Now()
	total := len(b.evs) - b.opts.Bulk
	var done atomic.Int64
	doneAt := make([]time.Duration, total) // doneAt[k]: when the k-th PUT completed

	var wg sync.WaitGroup
	for w := range b.opts.C {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(b.evs) {
					return
				}
				d, err := b.put(ctx, i, 0, false)
				if err != nil {
					first.set(ctx, err)
					cancel()
					return
				}
				lats[w] = append(lats[w], d)
				if k := int(done.Add(1) - 1); k < total {
					doneAt[k] = time.Since(start)
				}
			}
		})
	}
	wg.Wait()
	all := slices.Concat(lats...)
	err := first.get()
	if want := len(b.evs) - b.opts.Bulk; err == nil && len(all) != want {
		err = fmt.Errorf("interrupted after %d of %d PUTs", len(all), want)
	}
	r := summarize("put_load", time.Since(start), all, len(all), err)
	if err == nil && total >= 100 {
		var prev time.Duration
		for t := 1; t <= 10; t++ {
			lo, hi := (t-1)*total/10, t*total/10
			end := doneAt[hi-1]
			if d := end - prev; d > 0 {
				r.Tenths = append(r.Tenths, float64(hi-lo)/d.Seconds())
			}
			prev = end
		}
	}
	return r
}

// firstError keeps the first error of a group of workers; the context
// errors of the others, cancelled because of it, are dropped.
type firstError struct {
	mu  sync.Mutex // protects err
	err error
}

func (f *firstError) set(ctx context.Context, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// opFunc does one request of an operation for worker w and iteration k,
// returns the time of the measured request alone and the item count of its
// answer, and fails on a wrong answer.
type opFunc func(ctx context.Context, w, k int) (time.Duration, int, error)

// measurement is one measured operation.
type measurement struct {
	name        string
	sequential  bool                            // run on one worker: each request depends on the last
	latency     bool                            // a latency figure: run on opts.LatencyC workers
	maxRequests int                             // count bound of a round; 0 means opts.Requests
	prepare     func(ctx context.Context) error // run once before the warm-up, if set
	op          opFunc
	mix         *mixCounts // set for the mixed load: requests per kind
}

// measureRounds runs m once untimed for a short warm-up, then
// opts.Rounds times, and gives the median round of each figure. A failed
// round ends the measurement.
func (b *bench) measureRounds(ctx context.Context, m measurement) opResult {
	limit := b.opts.Requests
	if m.maxRequests > 0 {
		limit = min(limit, m.maxRequests)
	}
	if m.prepare != nil {
		if err := m.prepare(ctx); err != nil {
			return opResult{Name: m.name, Error: "prepare: " + err.Error()}
		}
	}
	warm := b.measure(ctx, m, b.opts.Duration/5, max(1, limit/5))
	if !warm.OK {
		warm.Error = "warm-up: " + warm.Error
		return warm
	}
	if m.mix != nil {
		m.mix.reset()
	}
	var rounds []opResult
	for range b.opts.Rounds {
		if ctx.Err() != nil {
			break
		}
		r := b.measure(ctx, m, b.opts.Duration, limit)
		rounds = append(rounds, r)
		if !r.OK {
			break
		}
	}
	res := combineRounds(m.name, rounds, b.opts.Rounds)
	if m.mix != nil {
		res.Mix = m.mix.snapshot()
	}
	return res
}

// combineRounds makes one row from rounds: the median of each figure, the
// sum of requests, and every round; it is OK when all want rounds are.
func combineRounds(name string, rounds []opResult, want int) opResult {
	res := opResult{Name: name, OK: len(rounds) == want}
	var ops, p50, p99 []float64
	for _, r := range rounds {
		res.Requests += r.Requests
		if !r.OK {
			res.OK = false
			res.Error = cmpOr(res.Error, r.Error)
			continue
		}
		res.Items = r.Items
		ops, p50, p99 = append(ops, r.OpsPerSec), append(p50, r.P50ms), append(p99, r.P99ms)
		res.Rounds = append(res.Rounds, round{Requests: r.Requests, WallS: r.wall.Seconds(), OpsPerSec: r.OpsPerSec, P50ms: r.P50ms, P99ms: r.P99ms})
	}
	if res.OK || len(ops) > 0 {
		res.OpsPerSec, res.P50ms, res.P99ms = median(ops), median(p50), median(p99)
	}
	if !res.OK && res.Error == "" {
		res.Error = fmt.Sprintf("%d of %d rounds done", len(rounds), want)
	}
	return res
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measure runs one round of m until dur has passed or limit requests were
// made, whichever comes first, and at least once. Worker 0 starts alone;
// the others join when its first request is done, so an operation that
// takes longer than dur costs one request, not c at once. The first
// failure stops the round.
func (b *bench) measure(ctx context.Context, m measurement, dur time.Duration, limit int) opResult {
	workers := b.opts.C
	if m.latency {
		workers = max(1, b.opts.LatencyC)
	}
	if m.sequential {
		workers = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var count atomic.Int64
	lats := make([][]time.Duration, workers)
	items := make([]int, workers)
	var first firstError
	started := make(chan struct{})
	var startOnce sync.Once
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			if w == 0 {
				defer startOnce.Do(func() { close(started) })
			} else {
				select {
				case <-started:
				case <-ctx.Done():
					return
				}
			}
			for k := 0; ctx.Err() == nil; k++ {
				if n := count.Add(1); n > int64(limit) || (n > 1 && time.Now().After(deadline)) {
					return
				}
				d, n, err := m.op(ctx, w, k)
				if w == 0 {
					startOnce.Do(func() { close(started) })
				}
				if err != nil {
					first.set(ctx, err)
					cancel()
					return
				}
				lats[w] = append(lats[w], d)
				items[w] = max(items[w], n)
			}
		})
	}
	wg.Wait()
	all := slices.Concat(lats...)
	r := summarize(m.name, time.Since(start), all, len(all), first.get())
	r.Items = slices.Max(items)
	return r
}

// summarize makes a table row from latencies; ops/s counts done operations
// over the wall time of the measurement.
func summarize(name string, wall time.Duration, lats []time.Duration, done int, err error) opResult {
	r := opResult{Name: name, Requests: len(lats), Items: done, OK: err == nil, wall: wall}
	if err != nil {
		r.Error = err.Error()
	}
	if len(lats) == 0 {
		r.OK, r.Error = false, cmpOr(r.Error, "no request completed")
		return r
	}
	slices.Sort(lats)
	pct := func(p int) float64 {
		return float64(lats[(len(lats)-1)*p/100]) / float64(time.Millisecond)
	}
	r.P50ms, r.P99ms = pct(50), pct(99)
	r.OpsPerSec = float64(done) / wall.Seconds()
	return r
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// peakRSS reads VmHWM of a process from /proc, in KiB.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
