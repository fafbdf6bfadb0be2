package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/internal/fixtures"
	"github.com/calgate/calgate/upstream"
)

// meFamilies is one parsed scrape of /metrics.
type meFamilies map[string]*dto.MetricFamily

// meGet sends an unauthenticated GET (with Authorization auth, if not
// empty) to path of srv and returns the status and body.
func meGet(t *testing.T, srv *calgateProcess, path, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, strings.TrimSuffix(srv.URL, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, body
}

// meScrape GETs /metrics with the bearer token and parses it with the
// Prometheus text parser.
func meScrape(t *testing.T, srv *calgateProcess, token string) meFamilies {
	t.Helper()
	code, body := meGet(t, srv, "/metrics", "Bearer "+token)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the value of the metric of family name with labels (name,
// value pairs; others may be present): a counter's or gauge's value, a
// histogram's sample count; 0 if absent (a counter not yet touched).
func (f meFamilies) value(name string, labels ...string) float64 {
	m := f.metric(name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// has reports whether family name has a metric with labels.
func (f meFamilies) has(name string, labels ...string) bool { return f.metric(name, labels...) != nil }

func (f meFamilies) metric(name string, labels ...string) *dto.Metric {
next:
	for _, m := range f[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, lp := range m.GetLabel() {
				ok = ok || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			if !ok {
				continue next
			}
		}
		return m
	}
	return nil
}

// total sums every series of family name (sample counts for histograms).
func (f meFamilies) total(name string) float64 {
	sum := 0.0
	for _, m := range f[name].GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// meFeedServer serves one .ics file on 127.0.0.1 with a plain net/http
// file server; while fail is set it answers 500.
type meFeedServer struct {
	URL  string
	fail atomic.Bool
	hits atomic.Int64
}

func startMeFeedServer(t *testing.T, file string) *meFeedServer {
	t.Helper()
	fs := &meFeedServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(filepath.Dir(file)))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.hits.Add(1)
		if fs.fail.Load() {
			http.Error(w, "feed server down for the test", http.StatusInternalServerError)
			return
		}
		files.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	fs.URL = "http://" + ln.Addr().String() + "/" + filepath.Base(file)
	return fs
}

// meUIDs counts the distinct UIDs of an .ics file (unfolded lines).
func meUIDs(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n ", "")
	uids := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "UID:"); ok {
			uids[strings.TrimSpace(v)] = true
		}
	}
	return len(uids)
}

const meMetricsToken = "e2e-metrics-token-0123456789"

// TestMetricsE2E runs the real binary with a local calendar and an ics
// source polling a fixture served on 127.0.0.1, and checks that /metrics
// (parsed with the Prometheus text parser) moves by exactly what the test
// did: CalDAV requests by method and status, items per calendar, syncs
// and their failures. It also checks /healthz, /readyz and the token.
func TestMetricsE2E(t *testing.T) {
	fixture := filepath.Join(fixtures.Dir(t), "feeds", "google-public-holidays.ics")
	wantFeedItems := meUIDs(t, fixture)
	if wantFeedItems < 100 {
		t.Fatalf("fixture has %d UIDs, want the 111 of EXPECTED.md", wantFeedItems)
	}
	feedSrv := startMeFeedServer(t, fixture)

	dir := t.TempDir()
	t.Setenv("CALGATE_E2E_METRICS_TOKEN", meMetricsToken)
	config := filepath.Join(dir, "gateway.yaml")
	yml := fmt.Sprintf(`listen: "127.0.0.1:0"
data: %q
users:
  - name: %s
    password_hash: %q
    calendars:
      - id: personal
        name: Personal
      - id: holidays
        name: Holidays
        ics:
          url: %q
          interval: 10s
metrics:
  token_env: CALGATE_E2E_METRICS_TOKEN
`, filepath.Join(dir, "calgate.db"), testUser, testHash, feedSrv.URL)
	if err := os.WriteFile(config, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startCalgate(t, config)
	source := testUser + "/holidays"

	// Liveness and readiness, without credentials.
	if code, body := meGet(t, srv, "/healthz", ""); code != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 \"ok\\n\"", code, body)
	}
	waitUntil(t, "/readyz answers 200", 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		code, body := meGet(t, srv, "/readyz", "")
		return code == http.StatusOK && string(body) == "ready\n", fmt.Sprintf("%d %q", code, body)
	})

	// The token guards /metrics.
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token", "Basic " + meMetricsToken, "Bearer"} {
		if code, body := meGet(t, srv, "/metrics", auth); code != http.StatusUnauthorized {
			t.Errorf("/metrics with Authorization %q: %d, want 401\n%s", auth, code, body)
		}
	}

	// The first sync brings the feed's events in.
	var before meFamilies
	waitUntil(t, "first sync of the ics source", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		before = meScrape(t, srv, meMetricsToken)
		ok := before.value("calgate_source_syncs_total", "source", source, "result", "ok")
		items := before.value("calgate_calendar_items", "user", testUser, "calendar", "holidays", "kind", "ics")
		return ok >= 1 && items == float64(wantFeedItems), fmt.Sprintf("syncs ok %v, items %v", ok, items)
	})
	if n := len(srv.hrefsOf(t, "/dav/calendars/alice/holidays/")); n != wantFeedItems {
		t.Errorf("PROPFIND lists %d objects in holidays, want %d", n, wantFeedItems)
	}
	before = meScrape(t, srv, meMetricsToken) // after the PROPFIND above

	// CalDAV requests: 3 PUTs (201), 1 PROPFIND (207), 1 GET (200), 1 GET
	// of a missing object (404). Health checks and scrapes are not counted.
	cal := "/dav/calendars/alice/personal/"
	start := time.Date(2030, 1, 7, 9, 0, 0, 0, time.UTC)
	for i := range 3 {
		resp, body := srv.mustDo(t, http.MethodPut, fmt.Sprintf("%sm%d.ics", cal, i),
			eventICS(fmt.Sprintf("m%d@metrics.test", i), "metrics", start.Add(time.Duration(i)*time.Hour)),
			http.Header{"Content-Type": {"text/calendar; charset=utf-8"}})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %d %s", resp.StatusCode, body)
		}
	}
	if n := len(srv.hrefsOf(t, cal)); n != 3 {
		t.Errorf("PROPFIND lists %d objects, want 3", n)
	}
	if resp, body := srv.mustDo(t, http.MethodGet, cal+"m0.ics", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET: %d %s", resp.StatusCode, body)
	}
	if resp, _ := srv.mustDo(t, http.MethodGet, cal+"missing.ics", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET missing: %d, want 404", resp.StatusCode)
	}
	meGet(t, srv, "/healthz", "")
	meGet(t, srv, "/readyz", "")
	meGet(t, srv, "/metrics", "")

	after := meScrape(t, srv, meMetricsToken)
	for _, c := range []struct {
		method, code string
		delta        float64
	}{
		{"PUT", "201", 3}, {"PROPFIND", "207", 1}, {"GET", "200", 1}, {"GET", "404", 1},
	} {
		got := after.value("calgate_http_requests_total", "method", c.method, "code", c.code) -
			before.value("calgate_http_requests_total", "method", c.method, "code", c.code)
		if got != c.delta {
			t.Errorf("calgate_http_requests_total{method=%s,code=%s} moved by %v, want %v", c.method, c.code, got, c.delta)
		}
	}
	if got := after.total("calgate_http_requests_total") - before.total("calgate_http_requests_total"); got != 6 {
		t.Errorf("requests moved by %v in all, want 6: health checks and scrapes must not count", got)
	}
	for method, delta := range map[string]float64{"PUT": 3, "PROPFIND": 1, "GET": 2} {
		got := after.value("calgate_http_request_duration_seconds", "method", method) -
			before.value("calgate_http_request_duration_seconds", "method", method)
		if got != delta {
			t.Errorf("duration histogram {method=%s} count moved by %v, want %v", method, got, delta)
		}
	}
	if h := after.metric("calgate_http_request_duration_seconds", "method", "PUT").GetHistogram(); h.GetSampleSum() <= 0 {
		t.Errorf("PUT latency sum %v, want > 0", h.GetSampleSum())
	}
	if got := after.value("calgate_calendar_items", "user", testUser, "calendar", "personal", "kind", "local"); got != 3 {
		t.Errorf("calgate_calendar_items{personal} = %v, want the 3 PUT", got)
	}
	if got := after.value("calgate_outbox_depth", "user", testUser, "calendar", "personal"); got != 0 {
		t.Errorf("outbox depth of a local calendar = %v, want 0", got)
	}

	// A later sync counts too, and the data's age stays within an interval.
	okBefore := after.value("calgate_source_syncs_total", "source", source, "result", "ok")
	waitUntil(t, "another successful sync", 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		after = meScrape(t, srv, meMetricsToken)
		ok := after.value("calgate_source_syncs_total", "source", source, "result", "ok")
		return ok > okBefore, fmt.Sprintf("syncs ok %v (was %v)", ok, okBefore)
	})
	if age := after.value("calgate_source_sync_age_seconds", "source", source); !after.has("calgate_source_sync_age_seconds", "source", source) || age > 30 {
		t.Errorf("sync age %v, want present and under 30s (interval 10s)", age)
	}
	if up := after.value("calgate_source_up", "source", source); up != 1 {
		t.Errorf("calgate_source_up = %v, want 1", up)
	}
	if got := after.value("calgate_source_sync_duration_seconds", "source", source); got != after.value("calgate_source_syncs_total", "source", source, "result", "ok") {
		t.Errorf("sync duration count %v, want one per sync", got)
	}
	if got := after.value("calgate_calendar_items", "user", testUser, "calendar", "holidays", "kind", "ics"); got != float64(wantFeedItems) {
		t.Errorf("holidays items = %v, want %d", got, wantFeedItems)
	}

	// The feed server fails: the next sync is an error.
	feedSrv.fail.Store(true)
	errBefore := after.value("calgate_source_syncs_total", "source", source, "result", "error")
	waitUntil(t, "a failed sync", 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		after = meScrape(t, srv, meMetricsToken)
		errs := after.value("calgate_source_syncs_total", "source", source, "result", "error")
		fails := after.value("calgate_source_consecutive_failures", "source", source)
		return errs > errBefore && fails >= 1, fmt.Sprintf("sync errors %v, consecutive failures %v", errs, fails)
	})
	if up := after.value("calgate_source_up", "source", source); up != 0 {
		t.Errorf("calgate_source_up = %v after a failed sync, want 0", up)
	}
	if !after.has("calgate_source_last_success_timestamp_seconds", "source", source) {
		t.Error("last success timestamp gone after a failure; it must keep the last success")
	}
	// The failed sync left the mirrored data in place.
	if got := after.value("calgate_calendar_items", "user", testUser, "calendar", "holidays", "kind", "ics"); got != float64(wantFeedItems) {
		t.Errorf("holidays items = %v after a failed sync, want %d", got, wantFeedItems)
	}
	// No label holds the upstream URL or the token.
	for name, fam := range after {
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "127.0.0.1") || strings.Contains(lp.GetValue(), meMetricsToken) {
					t.Errorf("%s has label %s=%q", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	if strings.Contains(srv.logs.String(), meMetricsToken) {
		t.Error("the metrics token appears in the log")
	}
}

// TestMetricsDisabledE2E checks that metrics: {enabled: false} removes
// /metrics (the gateway answers it like any unknown path) but keeps the
// health endpoints.
func TestMetricsDisabledE2E(t *testing.T) {
	dir := t.TempDir()
	config := writeCalgateConfig(t, dir)
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("metrics:\n  enabled: false\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := startCalgate(t, config)
	if code, body := meGet(t, srv, "/metrics", ""); code == http.StatusOK || bytes.Contains(body, []byte("calgate_")) {
		t.Errorf("/metrics with metrics disabled: %d\n%s", code, body)
	}
	if code, _ := meGet(t, srv, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	waitUntil(t, "/readyz answers 200", 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		code, body := meGet(t, srv, "/readyz", "")
		return code == http.StatusOK, fmt.Sprintf("%d %q", code, body)
	})
	if resp, body := srv.mustDo(t, http.MethodPost, "/healthz", nil, nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d %s, want 405", resp.StatusCode, body)
	}
}

// TestRootHandlerReadiness checks /readyz over a real store and engine:
// 503 with the reason before Start, after Stop and once the store is
// closed; 200 in between. /healthz answers throughout.
func TestRootHandlerReadiness(t *testing.T) {
	store, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	engine := upstream.NewEngine(upstream.EngineOptions{Store: store})
	gw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := httptest.NewServer(rootHandler(gw, nil, "", readiness(store, engine)))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	check := func(when string, wantCode int, wantBody string) {
		t.Helper()
		if code, body := get("/readyz"); code != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("%s: /readyz %d %q, want %d with %q", when, code, body, wantCode, wantBody)
		}
		if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("%s: /healthz %d %q", when, code, body)
		}
	}
	check("before Start", http.StatusServiceUnavailable, "sync engine has not started")
	engine.Start(t.Context())
	check("after Start", http.StatusOK, "ready\n")
	// Without metrics, /metrics is the gateway's.
	if code, _ := get("/metrics"); code != http.StatusTeapot {
		t.Errorf("/metrics without metrics: %d, want the gateway's 418", code)
	}
	engine.Stop()
	check("after Stop", http.StatusServiceUnavailable, "sync engine has not started")
	engine.Start(t.Context())
	defer engine.Stop()
	store.Close()
	check("store closed", http.StatusServiceUnavailable, "the data file cannot be read")
}
