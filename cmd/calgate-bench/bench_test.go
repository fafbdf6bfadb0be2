package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestMain lets the test binary play the trivial server of the limits,
// which runs this program again as a child process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serveBytesCmdName {
		os.Exit(serveBytesCmd(context.Background(), os.Args[2:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if calgateBin.dir != "" {
		os.RemoveAll(calgateBin.dir)
	}
	os.Exit(code)
}

// calgateBin is calgate built once for all tests.
var calgateBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildCalgate builds calgate from this module, once.
func buildCalgate(t *testing.T) string {
	t.Helper()
	calgateBin.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(gomod)) == "" {
			calgateBin.err = fmt.Errorf("go env GOMOD: %v", err)
			return
		}
		if calgateBin.dir, err = os.MkdirTemp("", "calgate-bench-test-"); err != nil {
			calgateBin.err = err
			return
		}
		calgateBin.path = filepath.Join(calgateBin.dir, "calgate")
		build := exec.CommandContext(ctx, "go", "build", "-o", calgateBin.path, "./cmd/calgate")
		build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		if out, err := build.CombinedOutput(); err != nil {
			calgateBin.err = fmt.Errorf("build calgate: %v\n%s", err, out)
		}
	})
	if calgateBin.err != nil {
		t.Fatal(calgateBin.err)
	}
	return calgateBin.path
}

// syncBuffer collects the server's log output from its process.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listeningLine = regexp.MustCompile(`msg="calgate listening" addr=(127\.0\.0\.1:\d+)`)

// feedToken is the token of the test's feed.
const feedToken = "test-feed-token-0123456789"

// testServer is a calgate process of a test.
type testServer struct {
	base string // http://127.0.0.1:PORT/
	home string // alice's calendar home
	feed string // the feed "bench" over alice/bench, with its token
	pid  int
}

// writeConfig writes a calgate config with user alice/secret, her local
// calendar bench and the feed bench over it, listening on listen.
func writeConfig(t *testing.T, dir, listen string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	yml := fmt.Sprintf(`listen: %q
data: %q
users:
  - name: alice
    password_hash: %q
    calendars:
      - id: bench
feeds:
  - name: bench
    calendars: [alice/bench]
    tokens_env: CALGATE_BENCH_TEST_TOKENS
`, listen, filepath.Join(dir, "calgate.db"), hash)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startCalgate starts calgate on a free port of 127.0.0.1 with the config
// of writeConfig. The process is stopped at cleanup.
func startCalgate(t *testing.T) testServer {
	t.Helper()
	bin := buildCalgate(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	logs := new(syncBuffer)
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), "CALGATE_BENCH_TEST_TOKENS="+feedToken)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		cmd.Wait()
		close(stopped)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-stopped
		}
	})
	deadline := time.After(10 * time.Second)
	for {
		if m := listeningLine.FindStringSubmatch(logs.String()); m != nil {
			base := "http://" + m[1] + "/"
			return testServer{
				base: base,
				home: base + "dav/calendars/alice/",
				feed: base + "feeds/bench.ics?token=" + feedToken,
				pid:  cmd.Process.Pid,
			}
		}
		select {
		case <-stopped:
			t.Fatalf("calgate exited before listening:\n%s", logs.String())
		case <-deadline:
			t.Fatalf("no listening line within 10s:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// expected is what a correct server answers for N events of a seed.
func expected(t *testing.T, seed uint64, n int) map[string]int {
	t.Helper()
	evs, err := generate(seed, n)
	if err != nil {
		t.Fatal(err)
	}
	month, weekInst, overrides := 0, 0, 0
	for i := range evs {
		if evs[i].overlapping(monthStart, monthEnd) > 0 {
			month++
		}
		weekInst += evs[i].overlapping(weekStart, weekEnd)
		if evs[i].Kind == override {
			overrides++
		}
	}
	if month == 0 || weekInst == 0 || overrides == 0 {
		t.Fatalf("generator gave an empty month (%d), week (%d) or no override (%d): the checks would be weak", month, weekInst, overrides)
	}
	return map[string]int{
		"put_load": n, "get": 1, "propfind_d0": 1, "propfind_d1": n + 1, "query_month": month,
		"query_week_expand": weekInst, "multiget_100": 100, "sync_after_change": 1,
		"get_collection": n, "put_update": 1, "mixed": 0,
		"feed_get": n + overrides, "feed_304": 0, "feed_after_change": n + overrides,
	}
}

func TestRunAgainstCalgate(t *testing.T) {
	srv := startCalgate(t)
	opts := options{
		User: "alice", Password: "secret",
		N: 200, C: 4, Duration: 150 * time.Millisecond, Requests: 200, Rounds: 2, Seed: 7, PID: srv.pid,
	}
	want := expected(t, opts.Seed, opts.N)
	cl := newClient("alice", "secret", 1, time.Minute)
	deleteBench := func(t *testing.T) {
		t.Helper()
		status, _, _, _, err := cl.do(t.Context(), http.MethodDelete, srv.home+"bench/", nil, nil)
		if err != nil || status != http.StatusNoContent {
			t.Fatalf("DELETE bench: %d %v", status, err)
		}
	}

	// Discovery from the server URL, the configured calendar "bench" and
	// its feed, every operation, two rounds; the calendar is kept.
	t.Run("correct", func(t *testing.T) {
		o := opts
		o.URL, o.Calendar, o.Feed, o.Keep = srv.base, "bench", srv.feed, true
		rep, err := run(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Home != srv.home || rep.Calendar != srv.home+"bench/" {
			t.Errorf("discovered home %s, calendar %s; want %s and its bench/", rep.Home, rep.Calendar, srv.home)
		}
		if len(rep.Ops) != len(want) {
			t.Errorf("%d operations, want %d", len(rep.Ops), len(want))
		}
		for _, r := range rep.Ops {
			if !r.OK || r.Requests == 0 || r.Items != want[r.Name] {
				t.Errorf("%s: ok=%v requests=%d items=%d (want %d) %s", r.Name, r.OK, r.Requests, r.Items, want[r.Name], r.Error)
			}
			if r.Name != "put_load" && len(r.Rounds) != 2 {
				t.Errorf("%s: %d rounds, want 2", r.Name, len(r.Rounds))
			}
			if r.Name == "feed_after_change" && r.Requests > 2*feedChangeRequests {
				t.Errorf("feed_after_change: %d requests in 2 rounds, want at most %d", r.Requests, 2*feedChangeRequests)
			}
		}
		mixed, _ := rep.op("mixed")
		total := 0
		for _, mw := range mixWeights {
			if mixed.Mix[mw.name] == 0 {
				t.Errorf("mixed: no %s request in %v", mw.name, mixed.Mix)
			}
			total += mixed.Mix[mw.name]
		}
		if sum := mixed.Rounds[0].Requests + mixed.Rounds[1].Requests; total != sum {
			t.Errorf("mixed: %d requests by kind, %d in the rounds", total, sum)
		}
		if rep.PeakRSSKB <= 0 {
			t.Errorf("peak RSS %d KiB", rep.PeakRSSKB)
		}
		data, _ := json.Marshal(rep)
		var out bytes.Buffer
		printTable(&out, rep)
		if strings.Contains(string(data)+out.String(), feedToken) {
			t.Errorf("the feed token is in the report:\n%s", out.String())
		}
		if !strings.Contains(out.String(), "token=REDACTED") {
			t.Errorf("the table does not name the redacted feed URL:\n%s", out.String())
		}
	})

	t.Run("non-empty calendar refused", func(t *testing.T) {
		o := opts
		o.Home, o.Calendar = srv.home, "bench"
		_, err := run(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), "holds 200 members") {
			t.Fatalf("err = %v, want a refusal of the non-empty calendar", err)
		}
	})

	t.Run("limits", func(t *testing.T) {
		evs, _ := generate(opts.Seed, opts.N)
		rep, err := runLimits(t.Context(), limitsOptions{
			Object: srv.home + "bench/" + evs[5].Name, Collection: srv.home + "bench/", Feed: srv.feed,
			User: "alice", Password: "secret", C: 2, Duration: 100 * time.Millisecond, Requests: 100, Rounds: 1,
			Dir: t.TempDir(), BatchDelay: time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		wantItems := map[string]int{"limit_get": 1, "limit_collection": opts.N, "limit_feed": opts.N, "bbolt_update": 1, "bbolt_batch": 1}
		if len(rep.Ops) != len(wantItems) {
			t.Errorf("%d limits, want %d", len(rep.Ops), len(wantItems))
		}
		for _, r := range rep.Ops {
			if !r.OK || r.Requests == 0 || r.OpsPerSec <= 0 || r.Items != wantItems[r.Name] {
				t.Errorf("%s: ok=%v requests=%d ops/s=%.1f items=%d (want %d) %s", r.Name, r.OK, r.Requests, r.OpsPerSec, r.Items, wantItems[r.Name], r.Error)
			}
		}
	})

	t.Run("wrong feed count fails", func(t *testing.T) {
		deleteBench(t)
		o := opts
		o.Home, o.Calendar, o.Feed, o.Rounds = srv.home, "bench", srv.feed, 1
		o.Ops = []string{"get", "feed_get"}
		o.feedSkew = 1
		rep, err := run(t.Context(), o)
		if err == nil || len(rep.Failures) != 1 || !strings.HasPrefix(rep.Failures[0], "feed_get: ") || !strings.Contains(err.Error(), "214 of 200") {
			t.Fatalf("err = %v, want a feed_get failure alone", err)
		}
		if strings.Contains(err.Error(), feedToken) {
			t.Errorf("the error names the feed token: %v", err)
		}
		if len(rep.Ops) != 3 {
			t.Errorf("%d operations, want put_load, get and feed_get", len(rep.Ops))
		}
	})

	t.Run("wrong count fails", func(t *testing.T) {
		o := opts
		o.Home, o.Rounds = srv.home, 1
		o.Ops = []string{"get", "query_month"}
		o.monthSkew = 1
		rep, err := run(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), "query_month") {
			t.Fatalf("err = %v, want a query_month failure", err)
		}
		for _, r := range rep.Ops {
			if (r.Name == "query_month") == r.OK {
				t.Errorf("%s: ok=%v %s", r.Name, r.OK, r.Error)
			}
		}
	})
}

// TestStartup times two start-ups of calgate to /readyz 200.
func TestStartup(t *testing.T) {
	bin := buildCalgate(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, addr)
	t.Setenv("CALGATE_BENCH_TEST_TOKENS", feedToken)
	rep, err := runStartup(t.Context(), startupOptions{
		Readyz: "http://" + addr + "/readyz", Command: []string{bin, "serve", "-config", cfg},
		Rounds: 2, Timeout: 30 * time.Second, Log: filepath.Join(dir, "log"),
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("%v\n%s", err, log)
	}
	r := rep.Ops[0]
	if !r.OK || len(r.Rounds) != 2 || r.P50ms <= 0 || r.P99ms < r.P50ms {
		t.Errorf("startup: %+v", r)
	}

	// A server that never gets ready fails within the timeout.
	rep, err = runStartup(t.Context(), startupOptions{
		Readyz: "http://" + addr + "/readyz", Command: []string{"sleep", "30"}, Rounds: 1, Timeout: 200 * time.Millisecond,
	})
	if err == nil || rep.Ops[0].OK {
		t.Errorf("a server that is never ready: err = %v, %+v", err, rep.Ops[0])
	}
}

// TestCheckObjects feeds the answer checker answers it must reject.
func TestCheckObjects(t *testing.T) {
	const ok = `<propstat><status>HTTP/1.1 200 OK</status><prop><C:calendar-data>BEGIN:VCALENDAR
BEGIN:VEVENT
UID:a
END:VEVENT
BEGIN:VEVENT
UID:a
END:VEVENT
END:VCALENDAR
</C:calendar-data></prop></propstat>`
	ms := func(body string) *multistatus {
		t.Helper()
		m, err := parseMultistatus(207, []byte(`<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">`+body+`</multistatus>`))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	want := map[string]int{"/c/a.ics": 2, "/c/b.ics": 2}
	for _, tc := range []struct {
		name    string
		body    string
		wantErr string
	}{
		{"good", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>http://h/c/b.ics</href>` + ok + `</response>`, ""},
		{"one missing", `<response><href>/c/a.ics</href>` + ok + `</response>`, "1 responses, want 2"},
		{"repeated", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/a.ics</href>` + ok + `</response>`, "repeated"},
		{"foreign", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/x.ics</href>` + ok + `</response>`, "unexpected"},
		{"no data", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/b.ics</href><propstat><status>HTTP/1.1 200 OK</status><prop/></propstat></response>`, "calendar-data"},
		{"404", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/b.ics</href>` + strings.Replace(ok, "200 OK", "404 Not Found", 1) + `</response>`, "calendar-data"},
		{"instances", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/b.ics</href>` + strings.Replace(ok, "BEGIN:VEVENT\nUID:a\nEND:VEVENT\n", "", 1) + `</response>`, "1 expanded instances, want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkObjects(ms(tc.body), want, 2, true)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestICSStats checks the VEVENT and UID counter and the search in
// unfolded lines, on folded input with LF and CRLF line ends.
func TestICSStats(t *testing.T) {
	evs, err := generate(3, 60)
	if err != nil {
		t.Fatal(err)
	}
	body := bulkBody(evs)
	vevents, uids := icsStats(body)
	overrides := 0
	for i := range evs {
		if evs[i].Kind == override {
			overrides++
		}
	}
	if vevents != len(evs)+overrides || len(uids) != len(evs) {
		t.Errorf("%d VEVENTs of %d UIDs, want %d of %d", vevents, len(uids), len(evs)+overrides, len(evs))
	}
	lf := bytes.ReplaceAll(evs[0].body(12), []byte("\r\n"), []byte("\n"))
	if !containsUnfolded(lf, evs[0].changeMarker(12)) || containsUnfolded(lf, evs[0].changeMarker(1)) {
		t.Errorf("revision marker search is wrong on:\n%s", lf)
	}
	folded := []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUI\r\n D:x\r\n\ty\r\nEND:VEVENT\r\nEND:VCALENDAR")
	if n, u := icsStats(folded); n != 1 || !u["xy"] {
		t.Errorf("folded UID: %d VEVENTs, UIDs %v", n, u)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/feeds/bench.ics?token=s3cret":       "http://127.0.0.1:8080/feeds/bench.ics?token=REDACTED",
		"http://127.0.0.1:8080/feeds/s3cret/bench.ics":             "http://127.0.0.1:8080/feeds/REDACTED/bench.ics",
		"http://u:p@127.0.0.1/dav/calendars/a/b/":                  "http://127.0.0.1/dav/calendars/a/b/",
		"http://127.0.0.1:8080/feeds/bench.ics?a=1&token=s3cret&b": "http://127.0.0.1:8080/feeds/bench.ics?a=REDACTED&b=REDACTED&token=REDACTED",
		"": "",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCombineRounds(t *testing.T) {
	r := func(ops, p50, p99 float64) opResult {
		return opResult{Requests: 10, OpsPerSec: ops, P50ms: p50, P99ms: p99, OK: true, Items: 3}
	}
	got := combineRounds("x", []opResult{r(100, 3, 9), r(300, 1, 7), r(200, 2, 8)}, 3)
	if !got.OK || got.OpsPerSec != 200 || got.P50ms != 2 || got.P99ms != 8 || got.Requests != 30 || len(got.Rounds) != 3 || got.Items != 3 {
		t.Errorf("combineRounds = %+v", got)
	}
	bad := r(1, 1, 1)
	bad.OK, bad.Error = false, "wrong answer"
	got = combineRounds("x", []opResult{r(100, 3, 9), bad}, 3)
	if got.OK || got.Error != "wrong answer" {
		t.Errorf("combineRounds with a failed round = %+v", got)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
}

// TestReport checks the comparison table on made-up runs.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	ok := func(name string, ops, p50, p99 float64) opResult {
		return opResult{Name: name, OpsPerSec: ops, P50ms: p50, P99ms: p99, OK: true, Requests: 1}
	}
	files := map[string]*report{
		"calgate.json": {N: 10000, C: 8, Rounds: 3, DurationS: 5, Load: "10000 by PUT at c=8", PeakRSSKB: 102400, Ops: []opResult{
			ok("put_load", 3000, 2, 5), ok("get", 20000, 0.3, 1), ok("query_month", 50, 20, 40),
			ok("query_week_expand", 60, 10, 20), ok("mixed", 2000, 3, 30),
		}},
		"radicale.json": {N: 10000, C: 8, Rounds: 3, DurationS: 5, Load: "9500 by one PUT of the whole calendar, then 500 by PUT at c=8", PeakRSSKB: 204800, Ops: []opResult{
			ok("put_load", 30, 200, 500), ok("get", 400, 15, 40), ok("query_month", 0.2, 5000, 6000),
			{Name: "query_week_expand", Error: "x.ics: 2 expanded instances, want 1"},
		}},
		"limits.json":  {C: 8, Rounds: 3, Ops: []opResult{ok("bbolt_update", 2000, 0.5, 2), ok("bbolt_batch", 6000, 1, 3), ok("limit_get", 40000, 0.1, 1)}},
		"100k.json":    {N: 100000, Ops: []opResult{ok("query_month", 10, 30, 60)}},
		"startup.json": {Ops: []opResult{ok("startup_ready", 0, 1500, 1700)}},
	}
	for name, rep := range files {
		if err := writeJSON(filepath.Join(dir, name), rep); err != nil {
			t.Fatal(err)
		}
	}
	targets := filepath.Join(dir, "targets.txt")
	os.WriteFile(targets, []byte("# comment\nput_load >= 2,500\nget >= 30000  # too high\nquery_month <= ?\nstartup_100k <= 2000\n"), 0o644)
	md := filepath.Join(dir, "table.md")
	var out, errOut bytes.Buffer
	code := reportCmd([]string{
		"-calgate", filepath.Join(dir, "calgate.json"), "-radicale", filepath.Join(dir, "radicale.json"),
		"-limits", filepath.Join(dir, "limits.json"), "-calgate-100k", filepath.Join(dir, "100k.json"),
		"-startup", filepath.Join(dir, "startup.json"), "-targets", targets, "-md", md,
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, errOut.String())
	}
	mdText, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	row := func(label string) []string {
		t.Helper()
		for l := range strings.Lines(string(mdText)) {
			if strings.HasPrefix(l, "| "+label+" |") {
				cells := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), " | ")
				for i := range cells {
					cells[i] = strings.TrimSpace(cells[i])
				}
				return cells
			}
		}
		t.Fatalf("no row %q in:\n%s", label, mdText)
		return nil
	}
	for _, tc := range []struct {
		label string
		want  []string // unit, calgate, Radicale, ratio, limit, of limit, target, met
	}{
		{"PUT load (every write durable)", []string{"objects/s", "3,000", "30.0", "100x", "2,000 [1]", "150%", ">= 2,500", "met"}},
		{"GET one object", []string{"req/s", "20,000", "400", "50.0x", "40,000 [3]", "50%", ">= 30,000", "missed"}},
		{"calendar-query month p50", []string{"ms", "20.0", "5,000", "0.004x", "-", "-", "(not set)", "-"}},
		{"week expand p50", []string{"ms", "10.0", "WRONG [5]", "-", "-", "-", "(not set)", "-"}},
		{"PROPFIND Depth 1 p50", []string{"ms", "-", "-", "-", "-", "-", "(not set)", "-"}},
		{"peak RSS", []string{"MB", "100", "200", "0.5x", "-", "-", "(not set)", "-"}},
		{"calendar-query month p50, 100,000 events", []string{"ms", "30.0", "-", "-", "-", "-", "(not set)", "-"}},
		{"calendar-query month p50, 100k / N", []string{"x", "1.50", "-", "-", "-", "-", "(not set)", "-"}},
		{"start-up to ready, 100,000 events", []string{"ms", "1,500", "-", "-", "-", "-", "<= 2,000", "met"}},
	} {
		got := row(tc.label)[1:]
		if strings.Join(got, " | ") != strings.Join(tc.want, " | ") {
			t.Errorf("%s:\n got %q\nwant %q", tc.label, got, tc.want)
		}
	}
	for _, s := range []string{"2 expanded instances, want 1", "bbolt db.Batch at c=8, 6,000 commits/s", "9500 by one PUT of the whole calendar"} {
		if !strings.Contains(string(mdText), s) || !strings.Contains(out.String(), s) {
			t.Errorf("no %q in the notes:\n%s", s, out.String())
		}
	}

	for _, bad := range []string{"nosuchrow >= 1\n", "put_load > 1\n", "put_load >= x\n"} {
		os.WriteFile(targets, []byte(bad), 0o644)
		if _, err := readTargets(targets); err == nil {
			t.Errorf("targets %q: no error", bad)
		}
	}
}

func TestMainCmd(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"nosuch"}, 2},
		{[]string{}, 2}, // no -home or -url
		{[]string{"-n", "10"}, 2},
		{[]string{"help"}, 0},
		{[]string{"report"}, 2},
		{[]string{"startup", "-readyz", "http://127.0.0.1:1/readyz"}, 2},
		{[]string{"-home", "http://127.0.0.1:1/", "-ops", "get,nosuch"}, 1},
		{[]string{"-home", "http://127.0.0.1:1/", "-feed", "http://127.0.0.1:1/feeds/x.ics?token=" + feedToken}, 1}, // -feed without -calendar
	} {
		out.Reset()
		errOut.Reset()
		if code := mainCmd(t.Context(), tc.args, &out, &errOut); code != tc.code {
			t.Errorf("%v: exit %d, want %d: %s", tc.args, code, tc.code, errOut.String())
		}
		if strings.Contains(out.String()+errOut.String(), feedToken) {
			t.Errorf("%v: output names the feed token", tc.args)
		}
	}
}

// TestInstances checks the rule evaluator on a Berlin weekly event with an
// EXDATE and an override across the March 2026 DST switch.
func TestInstances(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	e := event{Kind: override, Loc: berlin, Count: 5, Dur: time.Hour,
		Start: time.Date(2026, 3, 15, 9, 0, 0, 0, berlin)}
	var got []string
	for _, s := range e.instances() {
		got = append(got, s.Start.UTC().Format("01-02T15:04"))
	}
	// 09:00 CET is 08:00Z; from 29 March 09:00 CEST is 07:00Z. Instance 1
	// (22 March) is excluded, instance 3 (5 April) moved by 2h.
	want := "03-15T08:00 03-29T07:00 04-05T09:00 04-12T07:00"
	if strings.Join(got, " ") != want {
		t.Errorf("instances %v, want %s", got, want)
	}
	if n := e.overlapping(weekStart, weekEnd); n != 1 {
		t.Errorf("week overlap %d, want 1 (29 March only; 22 March is excluded)", n)
	}
	if n := e.overlapping(monthStart, monthEnd); n != 2 {
		t.Errorf("month overlap %d, want 2", n)
	}
}
