package upstream

// Fault tests for the upstream HTTP client and the ICS source. The faults
// here (a server that stops halfway through a body, a redirect loop, a
// redirect from https to http or from a public address to a loopback
// one, garbage, 503 with Retry-After) cannot be caused with a real
// Radicale or Xandikos, so the upstreams are in-process httptest servers
// on 127.0.0.1. The public address in the redirect tests is only ever
// passed to checkRedirect; no traffic is sent to it.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// hangTimeout is the client timeout of the hang tests: short, so the
// tests are quick, and long enough that a loaded CI machine still sends
// the first half of the body within it.
const hangTimeout = 700 * time.Millisecond

// hangSlack is how much longer than its timeout a hung request may take
// to fail (scheduling on a loaded machine, -race).
const hangSlack = 3 * time.Second

// halfThenHang returns a handler that announces body in full
// (Content-Length), writes its first half, flushes, and then blocks until
// the client goes away or the test ends.
func halfThenHang(t *testing.T, body []byte) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server's Close, registered earlier
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

// newTestServer starts an httptest server for h, closed when the test ends.
func newTestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// testFeed is a valid feed of n events.
func testFeed(n int) []byte {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate tests//http_test.go//EN\r\n")
	for i := range n {
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:fault-%d@calgate.test\r\nDTSTAMP:20240101T000000Z\r\n"+
			"DTSTART:20300101T%02d0000Z\r\nDTEND:20300101T%02d3000Z\r\nSUMMARY:Fault test %d\r\nEND:VEVENT\r\n", i, i%24, i%24, i)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return []byte(b.String())
}

func TestHTTPClientTimeoutMidBody(t *testing.T) {
	body := testFeed(200)
	srv := newTestServer(t, halfThenHang(t, body))
	client := NewHTTPClient(HTTPOptions{Timeout: hangTimeout})

	start := time.Now()
	resp, err := client.Get(srv.URL + "/feed.ics")
	if err != nil {
		t.Fatalf("GET: %v (the headers came at once; only the body hangs)", err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("reading a body that hangs halfway succeeded with %d bytes", len(data))
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v (%T), want a timeout", err, err)
	}
	if len(data) != len(body)/2 {
		t.Errorf("read %d bytes before the error, want the %d the server sent", len(data), len(body)/2)
	}
	if elapsed < hangTimeout-50*time.Millisecond || elapsed > hangTimeout+hangSlack {
		t.Errorf("the request failed after %v, want about the timeout %v", elapsed, hangTimeout)
	}
	// A networkError from it is worth retrying later.
	if err := networkError(err, "GET feed"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("networkError(timeout) = %v, want ErrUnavailable", err)
	}
}

func TestHTTPClientRedirectLoop(t *testing.T) {
	const maxRedirects = 3
	var requests atomic.Int32
	mux := http.NewServeMux()
	// /loop/N redirects to /loop/N+1 for ever; /chain/N redirects N more
	// times and then answers 200.
	mux.HandleFunc("GET /loop/{n}", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		n, _ := strconv.Atoi(r.PathValue("n"))
		http.Redirect(w, r, "/loop/"+strconv.Itoa(n+1), http.StatusFound)
	})
	mux.HandleFunc("GET /chain/{n}", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			io.WriteString(w, "arrived")
			return
		}
		http.Redirect(w, r, "/chain/"+strconv.Itoa(n-1), http.StatusFound)
	})
	srv := newTestServer(t, mux)
	client := NewHTTPClient(HTTPOptions{Timeout: 10 * time.Second, MaxRedirects: maxRedirects})

	t.Run("loop", func(t *testing.T) {
		requests.Store(0)
		resp, err := client.Get(srv.URL + "/loop/0")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a redirect loop ended in %s", resp.Status)
		}
		if !errors.Is(err, ErrRedirect) {
			t.Errorf("error %v, want ErrRedirect", err)
		}
		// The first request and at most maxRedirects redirects.
		if n := requests.Load(); n < maxRedirects || n > maxRedirects+1 {
			t.Errorf("the server saw %d requests, want %d or %d", n, maxRedirects, maxRedirects+1)
		}
		// A refused redirect is not "unavailable": retrying will not help.
		if err := networkError(err, "GET"); errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrRedirect) {
			t.Errorf("networkError(redirect loop) = %v, want ErrRedirect and not ErrUnavailable", err)
		}
	})
	// HTTPOptions.MaxRedirects is documented as "the longest redirect
	// chain followed": a shorter chain arrives, a longer one does not.
	for _, tc := range []struct {
		hops int
		ok   bool
	}{
		{hops: maxRedirects - 1, ok: true},
		{hops: maxRedirects, ok: true},
		{hops: maxRedirects + 1, ok: false},
	} {
		t.Run(fmt.Sprintf("chain of %d", tc.hops), func(t *testing.T) {
			resp, err := client.Get(srv.URL + "/chain/" + strconv.Itoa(tc.hops))
			if err == nil {
				defer resp.Body.Close()
			}
			switch {
			case tc.ok && err != nil:
				t.Errorf("a chain of %d redirects with MaxRedirects %d: %v", tc.hops, maxRedirects, err)
			case tc.ok && resp.StatusCode != http.StatusOK:
				t.Errorf("a chain of %d redirects: %s", tc.hops, resp.Status)
			case !tc.ok && !errors.Is(err, ErrRedirect):
				t.Errorf("a chain of %d redirects with MaxRedirects %d: error %v, want ErrRedirect", tc.hops, maxRedirects, err)
			}
		})
	}
}

func TestHTTPClientHTTPSToHTTP(t *testing.T) {
	var plainHits atomic.Int32
	plain := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		io.WriteString(w, "plain")
	}))
	var tlsSrv *httptest.Server
	tlsSrv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, plain.URL+"/feed.ics", http.StatusMovedPermanently)
		case "/to-https":
			http.Redirect(w, r, tlsSrv.URL+"/final", http.StatusFound)
		default:
			io.WriteString(w, "secure")
		}
	}))
	t.Cleanup(tlsSrv.Close)

	// The client calgate uses, trusting the test server's certificate.
	client := NewHTTPClient(HTTPOptions{Timeout: 10 * time.Second})
	tr := baseTransport(client)
	tr.TLSClientConfig = &tls.Config{RootCAs: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}

	resp, err := client.Get(tlsSrv.URL + "/to-http")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("https -> http redirect followed: %s", resp.Status)
	}
	if !errors.Is(err, ErrRedirect) {
		t.Errorf("error %v, want ErrRedirect", err)
	}
	if n := plainHits.Load(); n != 0 {
		t.Errorf("the plain http server got %d requests", n)
	}

	// https -> https on loopback is fine.
	resp, err = client.Get(tlsSrv.URL + "/to-https")
	if err != nil {
		t.Fatalf("https -> https redirect: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "secure" {
		t.Errorf("https -> https redirect: %s %q", resp.Status, body)
	}
}

// TestCheckRedirect calls checkRedirect with synthetic requests: the
// public addresses are never contacted.
func TestCheckRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		via     []string
		target  string
		refused bool
	}{
		{"public to loopback", []string{"http://93.184.216.34/feed.ics"}, "http://127.0.0.1:8080/admin", true},
		{"public to localhost", []string{"http://93.184.216.34/feed.ics"}, "http://localhost/", true},
		{"public to IPv6 loopback", []string{"http://93.184.216.34/feed.ics"}, "http://[::1]:631/", true},
		{"public to IPv4-mapped loopback", []string{"http://93.184.216.34/feed.ics"}, "http://[::ffff:127.0.0.1]/", true},
		{"public to private", []string{"https://93.184.216.34/feed.ics"}, "https://192.168.1.1/", true},
		{"public to 10/8", []string{"https://93.184.216.34/feed.ics"}, "https://10.0.0.5/", true},
		{"public to link-local metadata", []string{"http://93.184.216.34/feed.ics"}, "http://169.254.169.254/latest/meta-data/", true},
		{"public to unspecified", []string{"http://93.184.216.34/feed.ics"}, "http://0.0.0.0:8080/", true},
		{"public via public to loopback", []string{"http://93.184.216.34/a", "http://93.184.216.35/b"}, "http://127.0.0.1/", true},
		{"https to http", []string{"https://127.0.0.1:8443/feed.ics"}, "http://127.0.0.1:8080/feed.ics", true},
		{"https to http after a hop", []string{"http://127.0.0.1/a", "https://127.0.0.1/b"}, "http://127.0.0.1/c", true},
		{"loopback to loopback", []string{"http://127.0.0.1:8080/a"}, "http://127.0.0.1:9090/b", false},
		{"loopback to localhost", []string{"http://127.0.0.1:8080/a"}, "http://localhost:9090/b", false},
		{"private to private", []string{"http://10.0.0.1/a"}, "http://192.168.0.1/b", false},
		{"public to public", []string{"http://93.184.216.34/a"}, "https://93.184.216.35/b", false},
		{"http to https", []string{"http://93.184.216.34/a"}, "https://93.184.216.34/a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			via := make([]*http.Request, len(tc.via))
			for i, u := range tc.via {
				via[i] = req(u)
			}
			err := checkRedirect(req(tc.target), via, 5)
			switch {
			case tc.refused && !errors.Is(err, ErrRedirect):
				t.Errorf("checkRedirect(%s via %v) = %v, want ErrRedirect", tc.target, tc.via, err)
			case !tc.refused && err != nil:
				t.Errorf("checkRedirect(%s via %v) = %v, want nil", tc.target, tc.via, err)
			}
		})
	}
}

// faultFeedServer serves a valid feed, then whatever fault the test sets.
type faultFeedServer struct {
	*httptest.Server
	good []byte
	hang http.HandlerFunc

	mu       sync.Mutex // protects mode and requests
	mode     string     // "good", "garbage", "503", "503-date", "hang-body", "hang-headers"
	requests int
}

func newFaultFeedServer(t *testing.T, good []byte) *faultFeedServer {
	s := &faultFeedServer{good: good, mode: "good"}
	release := make(chan struct{})
	s.Server = newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		mode := s.mode
		s.requests++
		s.mu.Unlock()
		switch mode {
		case "good":
			w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
			w.Write(s.good)
		case "garbage":
			w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
			w.Write([]byte("\x1f\x8b\x08\x00\xde\xad\xbe\xef\x00\x00this is not a calendar\x00\xff\xfe"))
		case "503":
			w.Header().Set("Retry-After", "7")
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "503-date":
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		case "hang-body":
			s.hang(w, r)
		case "hang-headers":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(func() { close(release) }) // before the server's Close
	s.hang = halfThenHang(t, good)
	return s
}

func (s *faultFeedServer) set(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

// TestICSFaults syncs a feed once, then meets garbage, 503 with
// Retry-After (seconds and a date), a body that hangs halfway and a
// server that never answers. Each sync fails with the right kind of
// error, in bounded time, the stored copy stays as it was, and the
// engine records the error and counts the failures; the next good feed
// clears them.
func TestICSFaults(t *testing.T) {
	good := testFeed(5)
	srv := newFaultFeedServer(t, good)
	store, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateCalendar(cache.Calendar{User: "alice", ID: "feed", Kind: "ics", Source: "alice/feed"}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	src := NewICS(ICSOptions{
		ID: "alice/feed", User: "alice", Calendar: "feed", URL: srv.URL + "/feed.ics",
		Client: NewHTTPClient(HTTPOptions{Timeout: hangTimeout}),
		Store:  store, Logger: log,
	})
	engine := NewEngine(EngineOptions{Store: store, Logger: log})
	engine.Add(src, "alice", "feed", time.Hour) // not started: SyncNow only

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := engine.SyncNow(ctx, src.ID())
	if err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if res.Put != 5 {
		t.Fatalf("first sync stored %d objects, want 5", res.Put)
	}
	snapshot := func() (uint64, map[string]string) {
		t.Helper()
		c, err := store.GetCalendar("alice", "feed")
		if err != nil {
			t.Fatal(err)
		}
		objs, err := store.ListObjects("alice", "feed")
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]string, len(objs))
		for _, o := range objs {
			m[o.UID] = o.ETag + " " + string(o.Data)
		}
		return c.Revision, m
	}
	rev0, objs0 := snapshot()
	st0, err := store.GetSource(src.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st0.LastSuccess.IsZero() || st0.Failures != 0 || st0.LastError != "" {
		t.Fatalf("state after the first sync: %+v", st0)
	}

	failures := 0
	for _, tc := range []struct {
		mode        string
		unavailable bool
		retryAfter  time.Duration // 0: no *RetryAfterError
		slow        bool          // ends by the client timeout
		errText     string        // in the recorded LastError
	}{
		{mode: "garbage", errText: "ics: GET"},
		{mode: "503", unavailable: true, retryAfter: 7 * time.Second, errText: "503"},
		{mode: "503-date", unavailable: true, retryAfter: 90 * time.Second, errText: "503"},
		{mode: "hang-body", unavailable: true, slow: true, errText: "reading the body"},
		{mode: "hang-headers", unavailable: true, slow: true, errText: "upstream timeout"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			srv.set(tc.mode)
			start := time.Now()
			_, err := engine.SyncNow(ctx, src.ID())
			elapsed := time.Since(start)
			failures++
			if err == nil {
				t.Fatal("sync succeeded")
			}
			t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)
			if got := errors.Is(err, ErrUnavailable); got != tc.unavailable {
				t.Errorf("errors.Is(err, ErrUnavailable) = %v, want %v", got, tc.unavailable)
			}
			if tc.mode == "garbage" && !errors.Is(err, ical.ErrInvalidData) {
				t.Errorf("error %v, want ical.ErrInvalidData", err)
			}
			var ra *RetryAfterError
			switch {
			case tc.retryAfter == 0 && errors.As(err, &ra):
				t.Errorf("a RetryAfterError (%v) without a Retry-After", ra.After)
			case tc.retryAfter != 0 && !errors.As(err, &ra):
				t.Errorf("error %v (%T), want a *RetryAfterError", err, err)
			case tc.retryAfter != 0 && (ra.After < tc.retryAfter-2*time.Second || ra.After > tc.retryAfter):
				t.Errorf("RetryAfterError.After = %v, want %v", ra.After, tc.retryAfter)
			}
			if limit := hangTimeout + hangSlack; elapsed > limit || tc.slow && elapsed < hangTimeout-50*time.Millisecond {
				t.Errorf("the sync failed after %v; want about %v for a hang, at most %v", elapsed, hangTimeout, limit)
			}

			// The cache keeps serving the previous copy.
			if rev, objs := snapshot(); rev != rev0 || !maps.Equal(objs, objs0) {
				t.Errorf("after the failure: revision %d with %d objects, want revision %d with the %d objects as before",
					rev, len(objs), rev0, len(objs0))
			}
			st, gerr := store.GetSource(src.ID())
			if gerr != nil {
				t.Fatal(gerr)
			}
			if st.Failures != failures {
				t.Errorf("Failures = %d, want %d", st.Failures, failures)
			}
			if st.LastError != err.Error() || !strings.Contains(st.LastError, tc.errText) {
				t.Errorf("LastError = %q, want the sync's error (with %q)", st.LastError, tc.errText)
			}
			if !st.LastSuccess.Equal(st0.LastSuccess) {
				t.Errorf("LastSuccess moved from %v to %v by a failure", st0.LastSuccess, st.LastSuccess)
			}
			if !st.LastAttempt.After(st0.LastSuccess) {
				t.Errorf("LastAttempt %v is not after the last success %v", st.LastAttempt, st0.LastSuccess)
			}
		})
	}

	// The feed is back: the sync succeeds, changes nothing and clears the
	// error.
	srv.set("good")
	res, err = engine.SyncNow(ctx, src.ID())
	if err != nil {
		t.Fatalf("sync after recovery: %v", err)
	}
	if res.Put != 0 || res.Deleted != 0 || res.Unchanged != 5 {
		t.Errorf("sync after recovery: %+v, want 5 unchanged", res)
	}
	if rev, _ := snapshot(); rev != rev0 {
		t.Errorf("revision %d after an unchanged feed, want %d", rev, rev0)
	}
	st, err := store.GetSource(src.ID())
	if err != nil {
		t.Fatal(err)
	}
	if st.Failures != 0 || st.LastError != "" || !st.LastSuccess.After(st0.LastSuccess) {
		t.Errorf("state after recovery: failures %d, last error %q, last success %v (before %v)",
			st.Failures, st.LastError, st.LastSuccess, st0.LastSuccess)
	}
}
