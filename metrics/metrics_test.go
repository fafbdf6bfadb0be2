package metrics

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
	"github.com/calgate/calgate/gateway"
)

// families is one parsed scrape.
type families map[string]*dto.MetricFamily

// scrape GETs url and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// find returns the metric of family name whose labels include labels
// (name, value pairs), or nil.
func (f families) find(name string, labels ...string) *dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value returns the value of a counter, gauge or untyped metric, or of a
// histogram its sample count; -1 if the metric is absent.
func (f families) value(name string, labels ...string) float64 {
	m := f.find(name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

// labelValues lists the values label takes in family name.
func (f families) labelValues(name, label string) []string {
	var out []string
	for _, m := range f[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && !slices.Contains(out, lp.GetValue()) {
				out = append(out, lp.GetValue())
			}
		}
	}
	slices.Sort(out)
	return out
}

func openStore(t *testing.T) *cache.Store {
	t.Helper()
	s, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCalendar(t *testing.T, s *cache.Store, user, id, kind string) {
	t.Helper()
	if _, err := s.CreateCalendar(cache.Calendar{User: user, ID: id, Kind: kind, Components: []string{"VEVENT"}}); err != nil {
		t.Fatal(err)
	}
}

func eventData(uid string) []byte {
	return []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
		"\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250301T100000Z\r\nDTEND:20250301T110000Z\r\nSUMMARY:" + uid +
		"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
}

func mustPut(t *testing.T, s *cache.Store, user, cal, uid string) {
	t.Helper()
	_, _, err := s.PutObject(user, cal, cache.Object{Name: uid + ".ics", UID: uid, Component: "VEVENT", Data: eventData(uid)}, cache.PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStoreGauges(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "alice", "home", "local")
	mustCalendar(t, s, "alice", "work", "caldav")
	mustCalendar(t, s, "bob", "empty", "")
	for i := range 3 {
		mustPut(t, s, "alice", "home", fmt.Sprintf("h%d", i))
	}
	// Client writes to a caldav calendar each queue an outbox entry.
	mustPut(t, s, "alice", "work", "w0")
	mustPut(t, s, "alice", "work", "w1")
	if _, err := s.PutConflict(cache.Conflict{User: "alice", Cal: "work", Name: "w0.ics", Kept: "upstream", LoserData: eventData("w0")}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	lastOK := now.Add(-90 * time.Second)
	for _, st := range []cache.SourceState{
		{ID: "alice/work", LastSuccess: lastOK, LastAttempt: lastOK},
		{ID: "alice/holidays", LastAttempt: now, LastError: "GET failed: 500", Failures: 3},
		{ID: "bob/feed", LastSuccess: lastOK.Add(-time.Hour), LastAttempt: now, LastError: "timeout", Failures: 1},
	} {
		if err := s.PutSource(st); err != nil {
			t.Fatal(err)
		}
	}

	m := New(Options{Store: s, Now: func() time.Time { return now }})
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	f := scrape(t, srv.URL)

	stats, err := s.Stats("")
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 3 {
		t.Fatalf("store has %d calendars, want 3", len(stats))
	}
	for _, st := range stats {
		if got := f.value("calgate_calendar_items", "user", st.User, "calendar", st.Cal, "kind", st.Kind); got != float64(st.Objects) {
			t.Errorf("calgate_calendar_items{%s/%s,%s} = %v, want the store's %d", st.User, st.Cal, st.Kind, got, st.Objects)
		}
		if got := f.value("calgate_outbox_depth", "user", st.User, "calendar", st.Cal); got != float64(st.Pending) {
			t.Errorf("calgate_outbox_depth{%s/%s} = %v, want %d", st.User, st.Cal, got, st.Pending)
		}
		if got := f.value("calgate_conflicts", "user", st.User, "calendar", st.Cal); got != float64(st.Conflicts) {
			t.Errorf("calgate_conflicts{%s/%s} = %v, want %d", st.User, st.Cal, got, st.Conflicts)
		}
	}
	// The store's counts, spelled out.
	for _, c := range []struct {
		name, user, cal string
		want            float64
	}{
		{"calgate_calendar_items", "alice", "home", 3},
		{"calgate_calendar_items", "alice", "work", 2},
		{"calgate_calendar_items", "bob", "empty", 0},
		{"calgate_outbox_depth", "alice", "work", 2},
		{"calgate_outbox_depth", "alice", "home", 0},
		{"calgate_conflicts", "alice", "work", 1},
	} {
		if got := f.value(c.name, "user", c.user, "calendar", c.cal); got != c.want {
			t.Errorf("%s{%s/%s} = %v, want %v", c.name, c.user, c.cal, got, c.want)
		}
	}
	if got := f.labelValues("calgate_calendar_items", "kind"); !slices.Equal(got, []string{"caldav", "local"}) {
		t.Errorf("kinds = %v, want [caldav local] (an unset kind reads as local)", got)
	}

	for _, c := range []struct {
		source                   string
		up, failures, age, stamp float64
	}{
		{"alice/work", 1, 0, 90, float64(lastOK.Unix())},
		{"alice/holidays", 0, 3, -1, -1}, // never succeeded: no age, no timestamp
		{"bob/feed", 0, 1, 3690, float64(lastOK.Add(-time.Hour).Unix())},
	} {
		for name, want := range map[string]float64{
			"calgate_source_up":                             c.up,
			"calgate_source_consecutive_failures":           c.failures,
			"calgate_source_sync_age_seconds":               c.age,
			"calgate_source_last_success_timestamp_seconds": c.stamp,
		} {
			if got := f.value(name, "source", c.source); got != want {
				t.Errorf("%s{source=%q} = %v, want %v (-1: absent)", name, c.source, got, want)
			}
		}
	}
}

func TestObserveSync(t *testing.T) {
	m := New(Options{})
	m.ObserveSync("alice/work", 3, nil, 1500*time.Millisecond)
	m.ObserveSync("alice/work", 0, errors.New("upstream: unavailable"), 20*time.Millisecond)
	m.ObserveSync("alice/work", 2, nil, 10*time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	f := scrape(t, srv.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"calgate_source_syncs_total", []string{"source", "alice/work", "result", "ok"}, 2},
		{"calgate_source_syncs_total", []string{"source", "alice/work", "result", "error"}, 1},
		{"calgate_source_sync_duration_seconds", []string{"source", "alice/work"}, 3},
		{"calgate_source_changed_objects_total", []string{"source", "alice/work"}, 5},
	} {
		if got := f.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := f.find("calgate_source_sync_duration_seconds", "source", "alice/work").GetHistogram()
	if sum := h.GetSampleSum(); sum < 1.5 || sum > 1.6 {
		t.Errorf("sync duration sum = %v, want 1.53", sum)
	}
	// Go runtime and process collectors are registered too.
	if f["go_goroutines"] == nil {
		t.Error("go_goroutines missing: the Go collector is not registered")
	}
}

const password = "secret"

// newGateway serves a real gateway for alice (calendar "personal", feed
// "team" of it with token feedToken) through m.Instrument.
func newGateway(t *testing.T, m *Metrics, s *cache.Store) *httptest.Server {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	mustCalendar(t, s, "alice", "personal", "local")
	gw, err := gateway.New(gateway.Options{
		Store:  s,
		Users:  []gateway.User{{Name: "alice", PasswordHash: string(hash)}},
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Feeds: []gateway.Feed{{
			Spec:   feed.Spec{Name: "team", Members: []feed.Member{{User: "alice", Cal: "personal"}}},
			Tokens: []string{feedToken},
		}},
		OnFeed: m.ObserveFeed,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Instrument(gw))
	t.Cleanup(srv.Close)
	return srv
}

const feedToken = "0123456789abcdef0123"

// do sends one request (as alice if auth) and returns its status and
// ETag; hdr are header name, value pairs.
func do(t *testing.T, method, url, body string, auth bool, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth("alice", password)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("ETag")
}

func TestInstrumentRequests(t *testing.T) {
	s := openStore(t)
	m := New(Options{Store: s})
	gw := newGateway(t, m, s)
	metricsSrv := httptest.NewServer(m.Handler())
	t.Cleanup(metricsSrv.Close)

	cal := gw.URL + "/dav/calendars/alice/personal/"
	wantCodes := map[[2]string]float64{} // {method, code} -> count
	send := func(method, url, body string, auth bool, hdr ...string) int {
		code, _ := do(t, method, url, body, auth, hdr...)
		label := method
		if !methods[method] {
			label = "other"
		}
		wantCodes[[2]string{label, fmt.Sprint(code)}]++
		return code
	}
	if code := send(http.MethodPut, cal+"a.ics", string(eventData("a")), true, "Content-Type", "text/calendar"); code != http.StatusCreated {
		t.Fatalf("PUT: %d, want 201", code)
	}
	if code := send(http.MethodPut, cal+"b.ics", string(eventData("b")), true, "Content-Type", "text/calendar"); code != http.StatusCreated {
		t.Fatalf("PUT: %d, want 201", code)
	}
	if code := send(http.MethodGet, cal+"a.ics", "", true); code != http.StatusOK {
		t.Fatalf("GET: %d, want 200", code)
	}
	if code := send(http.MethodGet, cal+"a.ics", "", false); code != http.StatusUnauthorized {
		t.Fatalf("GET without credentials: %d, want 401", code)
	}
	if code := send("PROPFIND", cal, "", true, "Depth", "1"); code != http.StatusMultiStatus {
		t.Fatalf("PROPFIND: %d, want 207", code)
	}
	fooCode := send("FOO", cal, "", true)
	if fooCode < 400 || fooCode >= 500 {
		t.Errorf("FOO: %d, want a 4xx", fooCode)
	}
	send("BREW", cal, "", true)

	f := scrape(t, metricsSrv.URL)
	for k, want := range wantCodes {
		if got := f.value("calgate_http_requests_total", "method", k[0], "code", k[1]); got != want {
			t.Errorf("calgate_http_requests_total{method=%s,code=%s} = %v, want %v", k[0], k[1], got, want)
		}
	}
	if got, want := len(f["calgate_http_requests_total"].GetMetric()), len(wantCodes); got != want {
		t.Errorf("%d request series, want %d (%v)", got, want, wantCodes)
	}
	if got := f.labelValues("calgate_http_requests_total", "method"); !slices.Equal(got, []string{"GET", "PROPFIND", "PUT", "other"}) {
		t.Errorf("method labels = %v, want [GET PROPFIND PUT other]: FOO and BREW are \"other\"", got)
	}
	for method, want := range map[string]float64{"PUT": 2, "GET": 2, "PROPFIND": 1, "other": 2} {
		if got := f.value("calgate_http_request_duration_seconds", "method", method); got != want {
			t.Errorf("duration histogram {method=%s} count = %v, want %v", method, got, want)
		}
	}
	h := f.find("calgate_http_request_duration_seconds", "method", "PUT").GetHistogram()
	if n := len(h.GetBucket()); n != len(requestBuckets)+1 {
		t.Errorf("%d buckets, want %d and +Inf", n, len(requestBuckets))
	}
	if ub := h.GetBucket()[0].GetUpperBound(); ub != 0.0005 {
		t.Errorf("first bucket %v, want 0.0005", ub)
	}
	// The scrape reflects the store: the two PUTs are the calendar's items.
	if got := f.value("calgate_calendar_items", "user", "alice", "calendar", "personal"); got != 2 {
		t.Errorf("calgate_calendar_items{alice/personal} = %v, want 2", got)
	}
}

func TestFeedMetrics(t *testing.T) {
	s := openStore(t)
	m := New(Options{Store: s})
	gw := newGateway(t, m, s)
	metricsSrv := httptest.NewServer(m.Handler())
	t.Cleanup(metricsSrv.Close)
	feedURL := gw.URL + "/feeds/team.ics?token=" + feedToken

	code, etag := do(t, http.MethodGet, feedURL, "", false)
	if code != http.StatusOK || etag == "" {
		t.Fatalf("GET feed: %d, etag %q; want 200 with an ETag", code, etag)
	}
	if code, _ := do(t, http.MethodGet, feedURL, "", false, "If-None-Match", etag); code != http.StatusNotModified {
		t.Fatalf("conditional GET: %d, want 304", code)
	}
	if code, _ := do(t, http.MethodGet, feedURL, "", false, "If-None-Match", etag); code != http.StatusNotModified {
		t.Fatalf("conditional GET: %d, want 304", code)
	}
	// A wrong token is a 404 that names no feed: not a feed request.
	if code, _ := do(t, http.MethodGet, gw.URL+"/feeds/team.ics?token=wrong-token-wrong-token", "", false); code != http.StatusNotFound {
		t.Fatalf("wrong token: %d, want 404", code)
	}
	// A change to the member rebuilds the rendering once.
	mustPut(t, s, "alice", "personal", "new")
	if code, _ := do(t, http.MethodGet, feedURL, "", false, "If-None-Match", etag); code != http.StatusOK {
		t.Fatalf("GET after a change: %d, want 200", code)
	}
	if code, _ := do(t, http.MethodGet, feedURL, "", false); code != http.StatusOK {
		t.Fatalf("GET: %d, want 200", code)
	}

	f := scrape(t, metricsSrv.URL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"calgate_feed_requests_total", []string{"feed", "team", "code", "200"}, 3},
		{"calgate_feed_requests_total", []string{"feed", "team", "code", "304"}, 2},
		{"calgate_feed_requests_total", []string{"code", "404"}, -1},
		{"calgate_feed_renders_total", []string{"feed", "team"}, 2},
		// Feed requests are HTTP requests too.
		{"calgate_http_requests_total", []string{"method", "GET", "code", "304"}, 2},
		{"calgate_http_requests_total", []string{"method", "GET", "code", "404"}, 1},
	} {
		if got := f.value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v (-1: absent)", c.name, c.labels, got, c.want)
		}
	}
	// No token or URL in any label.
	for name, fam := range f {
		for _, mt := range fam.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if strings.Contains(lp.GetValue(), feedToken) || strings.Contains(lp.GetValue(), "/feeds/") {
					t.Errorf("%s has label %s=%q", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

// TestInstrumentKeepsResponseController checks that a handler behind
// Instrument can still flush and set deadlines through
// http.ResponseController, and that http.Flusher is still there.
func TestInstrumentKeepsResponseController(t *testing.T) {
	m := New(Options{})
	errc := make(chan error, 1)
	srv := httptest.NewServer(m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(http.StatusAccepted)
		err := rc.Flush()
		if err == nil {
			err = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		}
		if _, ok := w.(http.Flusher); !ok && err == nil {
			err = errors.New("the ResponseWriter is no http.Flusher")
		}
		errc <- err
	})))
	t.Cleanup(srv.Close)
	if code, _ := do(t, http.MethodGet, srv.URL, "", false); code != http.StatusAccepted {
		t.Fatalf("status %d, want 202", code)
	}
	if err := <-errc; err != nil {
		t.Errorf("through Instrument: %v", err)
	}
	msrv := httptest.NewServer(m.Handler())
	t.Cleanup(msrv.Close)
	if got := scrape(t, msrv.URL).value("calgate_http_requests_total", "method", "GET", "code", "202"); got != 1 {
		t.Errorf("requests{GET,202} = %v, want 1", got)
	}
}

// TestScrapeStoreError checks that a store that cannot be read fails
// neither the scrape nor the process: the other metrics are served and the
// error is counted.
func TestScrapeStoreError(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "alice", "home", "local")
	m := New(Options{Store: s, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	m.ObserveSync("alice/work", 1, nil, time.Second)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f := scrape(t, srv.URL)
	if got := f.value("calgate_source_syncs_total", "source", "alice/work", "result", "ok"); got != 1 {
		t.Errorf("syncs_total = %v, want 1: the other metrics must still be served", got)
	}
	if f["calgate_calendar_items"] != nil {
		t.Error("calgate_calendar_items served from a closed store")
	}
	// The error is counted after the scrape that met it was gathered.
	f = scrape(t, srv.URL)
	if got := f.value("promhttp_metric_handler_errors_total", "cause", "gathering"); got != 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=gathering} = %v, want 1 (after one failed scrape)", got)
	}
}
