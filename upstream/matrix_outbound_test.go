package upstream

// The "Outbound" row of the adversarial matrix (issue 8): what a hostile
// or broken upstream can do to calgate's outbound HTTP client, for both
// kinds of source (.ics feed and CalDAV). None of these faults (redirect
// loops, a redirect from https to http or from a public address to the
// local network, a gzip bomb, a slow drip, TLS errors, huge headers, an
// endless body) can be had from Radicale or a real feed server, so each
// source talks to an in-process fault server on 127.0.0.1 (a "front").
// In its good mode the front serves a real feed, or passes the requests
// on to a real Radicale, so that the source has a cached copy to keep.
// Nothing is sent to a non-loopback address: the "public" origin is an IP
// literal that the test client's dialer maps to the front.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// outboundPublicIP is the "public" origin of the redirect cases: an IP
// literal (so that isLocalHost decides without DNS) that is never
// contacted, since the test client dials the front whatever the address.
const outboundPublicIP = "93.184.216.34"

// outboundFront is an in-process upstream that serves good content, or
// the fault its mode names.
type outboundFront struct {
	*httptest.Server
	good http.Handler
	trap string // URL of a plain server that must never be reached

	target atomic.Value // string: where faultToLocal redirects; set before mode

	mode     atomic.Value // string
	requests atomic.Int64 // requests in a fault mode
	leaked   atomic.Int64 // requests that followed a refused redirect
	written  atomic.Int64 // body bytes written in a fault mode
	served   atomic.Int64 // nanoseconds the last fault request lasted, as the server saw it
}

// Fault modes of outboundFront.
const (
	faultLoopSelf    = "redirect loop A->A"
	faultLoopAB      = "redirect loop A->B->A"
	faultToHTTP      = "https->http redirect"
	faultGzipBomb    = "gzip bomb"
	faultDrip        = "slow drip"
	faultHugeHeaders = "huge headers"
	faultEndless     = "body over the cap, no Content-Length"
	faultToLocal     = "public->local redirect"
	faultNone        = "good" // the TLS cases fail in the handshake
)

// outboundMember is one gzip member that inflates to 1 MiB of iCalendar
// padding lines; concatenated members are one gzip stream (RFC 1952 §2.2)
// for Go's reader, so n of them inflate to n MiB.
var outboundMember = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	line := "X-PAD:" + strings.Repeat("A", 1018) + "\r\n" // 1 KiB
	for range 1024 {
		zw.Write([]byte(line))
	}
	zw.Close()
	return b.Bytes()
})

// gzipBombMiB is how far the gzip bomb would inflate: 4 GiB.
const gzipBombMiB = 4096

func newOutboundFront(t *testing.T, tlsOn bool, good http.Handler) *outboundFront {
	f := &outboundFront{good: good}
	f.mode.Store(faultNone)
	trap := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.leaked.Add(1)
		http.Error(w, "trap", http.StatusTeapot)
	}))
	f.trap = trap.URL
	// B of the A->B->A loop: sends every request back to the front.
	back := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		http.Redirect(w, r, f.URL+r.URL.Path+"?from=b", http.StatusTemporaryRedirect)
	}))
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := f.mode.Load().(string)
		if mode == faultNone {
			f.good.ServeHTTP(w, r)
			return
		}
		if mode == faultToLocal && !strings.HasPrefix(r.Host, outboundPublicIP+":") {
			// Only the public origin redirects: a request for any other
			// host means that a refused redirect was followed.
			f.leaked.Add(1)
			http.Error(w, "followed", http.StatusTeapot)
			return
		}
		f.requests.Add(1)
		start := time.Now()
		defer func() { f.served.Store(int64(time.Since(start))) }()
		switch mode {
		case faultLoopSelf:
			// 307 keeps the method and body, so PROPFIND and REPORT
			// loop too (a 302 would turn them into GET).
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
		case faultLoopAB:
			http.Redirect(w, r, back.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case faultToLocal:
			http.Redirect(w, r, f.target.Load().(string), http.StatusTemporaryRedirect)
		case faultToHTTP:
			http.Redirect(w, r, f.trap+r.URL.Path, http.StatusTemporaryRedirect)
		case faultGzipBomb:
			w.Header().Set("Content-Type", "text/calendar")
			w.Header().Set("Content-Encoding", "gzip")
			m := outboundMember()
			for range gzipBombMiB {
				n, err := w.Write(m)
				f.written.Add(int64(n))
				if err != nil {
					return
				}
			}
		case faultDrip:
			w.Header().Set("Content-Type", "text/calendar")
			w.WriteHeader(http.StatusOK)
			body := "BEGIN:VCALENDAR\r\n" + strings.Repeat("X", 1000)
			for i := range 600 { // at most a minute
				n, err := io.WriteString(w, body[i:i+1])
				f.written.Add(int64(n))
				if err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		case faultHugeHeaders:
			// 12 MiB of headers, over the transport's 10 MiB limit.
			pad := strings.Repeat("h", 8<<10)
			for i := range 1536 {
				w.Header().Set(fmt.Sprintf("X-Pad-%d", i), pad)
			}
			w.WriteHeader(http.StatusOK)
		case faultEndless:
			// Chunked (no Content-Length), 64 KiB at a time, up to 256 MiB.
			w.Header().Set("Content-Type", "text/calendar")
			chunk := []byte(strings.Repeat("X-PAD:"+strings.Repeat("B", 58)+"\r\n", 1024))
			for range 4096 {
				n, err := w.Write(chunk)
				f.written.Add(int64(n))
				if err != nil {
					return
				}
			}
		default:
			panic("unknown fault " + mode)
		}
	})
	f.Server = httptest.NewUnstartedServer(h)
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	if tlsOn {
		f.StartTLS()
	} else {
		f.Start()
	}
	t.Cleanup(f.Close)
	t.Cleanup(func() { close(done) }) // runs before Close
	return f
}

// rootCAs returns a TLS configuration that trusts the front's
// certificate (nil for a plain front).
func (f *outboundFront) rootCAs() *tls.Config {
	if f.TLS == nil {
		return nil
	}
	return &tls.Config{RootCAs: f.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
}

// manualSource keeps the engine's own loop away from a fault source: a
// Sync from the loop (whose context lacks manualKey) does nothing and
// touches no state, so that each figure below belongs to one sync, the
// one the test asks for with SyncNow. The source still sits in the same
// engine as the healthy ones.
type manualSource struct{ Source }

type manualKey struct{}

func (m manualSource) Sync(ctx context.Context) (Result, error) {
	if ctx.Value(manualKey{}) == nil {
		return Result{NotModified: true}, nil
	}
	return m.Source.Sync(ctx)
}

// outboundCase is one fault, tried against both kinds of source.
type outboundCase struct {
	name  string
	mode  string
	tls   bool   // the front speaks https
	host  string // host of the source URL ("" = the front's 127.0.0.1)
	trust bool   // the client trusts the front's certificate
	// target of the public->local redirect ("" = none)
	target  string
	timeout time.Duration // the client's Timeout; default 10s
	// want are substrings of the error, redirect whether it must wrap
	// ErrRedirect (and not ErrUnavailable).
	want     []string
	redirect bool
	// maxRequests bounds the requests the fault server sees (0: no check).
	maxRequests int64
	// memory: the sync's allocations are measured and bounded.
	memory bool
}

func outboundCases() []outboundCase {
	const maxRedirects = 5 // NewHTTPClient's default
	cases := []outboundCase{
		{name: "redirect loop A-A", mode: faultLoopSelf, want: []string{"more than 5 redirects"}, redirect: true, maxRequests: maxRedirects + 1},
		{name: "redirect loop A-B-A", mode: faultLoopAB, want: []string{"more than 5 redirects"}, redirect: true, maxRequests: maxRedirects + 1},
		{name: "https to http", mode: faultToHTTP, tls: true, trust: true, want: []string{"from https to http"}, redirect: true, maxRequests: 1},
		{name: "gzip bomb", mode: faultGzipBomb, want: []string{"larger than 1048576 bytes"}, memory: true, maxRequests: 1},
		{name: "slow drip", mode: faultDrip, timeout: time.Second, want: []string{"upstream timeout"}, maxRequests: 1},
		{name: "TLS untrusted", mode: faultNone, tls: true, want: []string{"certificate signed by unknown authority"}},
		{name: "TLS wrong host", mode: faultNone, tls: true, trust: true, host: "localhost", want: []string{"certificate is valid for", "not localhost"}},
		{name: "huge headers", mode: faultHugeHeaders, want: []string{"server response headers exceeded"}, maxRequests: 1},
		{name: "endless body", mode: faultEndless, want: []string{"larger than 1048576 bytes"}, memory: true, maxRequests: 1},
	}
	for _, target := range []string{
		"http://127.0.0.1:9/admin", "http://localhost:9/", "http://[::1]:9/", "http://10.0.0.1/",
		"http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:9/",
	} {
		cases = append(cases, outboundCase{name: "public to " + target, mode: faultToLocal, host: outboundPublicIP, target: target,
			want: []string{"from a public address to a local one"}, redirect: true, maxRequests: 1})
	}
	return cases
}

// outboundKind builds sources of one kind against a front.
type outboundKind struct {
	name string
	// good is the front's good handler; path the source's path on it.
	good func(t *testing.T) (http.Handler, string)
	new  func(id, cal, rawURL string, client *http.Client) Source
}

// TestMatrixOutbound runs every outbound fault against an .ics source and
// a CalDAV source that have a cached copy, with healthy sources of both
// kinds syncing in the same started engine. Each fault must end the sync
// with a clear error, within its bound (redirects, bytes, time, memory),
// leave the cached copy and the last success as they were, record the
// error on the source, and not stop the healthy sources.
func TestMatrixOutbound(t *testing.T) {
	store := openStore(t)
	var (
		mu      sync.Mutex
		ok      = map[string]int{} // successful syncs by source
		took    = map[string]time.Duration{}
		healthy []string
	)
	engine := NewEngine(EngineOptions{Store: store, OnSync: func(id string, _ Result, err error, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			ok[id]++
		}
		took[id] = d
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	engine.Start(ctx)
	t.Cleanup(engine.Stop)

	addHealthy := func(t *testing.T, src Source, cal string, interval time.Duration) {
		if _, err := store.CreateCalendar(cache.Calendar{User: "alice", ID: cal, Kind: kindOf(src), Source: src.ID()}); err != nil {
			t.Fatal(err)
		}
		engine.Add(src, "alice", cal, interval)
		mu.Lock()
		healthy = append(healthy, src.ID())
		mu.Unlock()
	}
	healthyCounts := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		m := map[string]int{}
		for _, id := range healthy {
			m[id] = ok[id]
		}
		return m
	}
	// waitHealthy waits (bounded) until every healthy source has synced
	// successfully since before.
	waitHealthy := func(t *testing.T, before map[string]int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			now := healthyCounts()
			var behind []string
			for id, n := range before {
				if now[id] <= n {
					behind = append(behind, id)
				}
			}
			if len(behind) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("healthy sources %v did not sync within 30s of the fault", behind)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The healthy .ics source: a real feed server (ics_test.go).
	feedSrv := newICSFeedServer(t, testFeed(3))
	addHealthy(t, NewICS(ICSOptions{ID: "healthy-ics", User: "alice", Calendar: "healthy-ics", URL: feedSrv.URL,
		Client: NewHTTPClient(HTTPOptions{Timeout: 10 * time.Second}), Store: store}), "healthy-ics", 100*time.Millisecond)

	icsKind := outboundKind{
		name: "ics",
		good: func(t *testing.T) (http.Handler, string) {
			feed := testFeed(4)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
				w.Write(feed)
			}), "/feed.ics"
		},
		new: func(id, cal, rawURL string, client *http.Client) Source {
			return NewICS(ICSOptions{ID: id, User: "alice", Calendar: cal, URL: rawURL, Client: client, Store: store, MaxBytes: 1 << 20})
		},
	}
	t.Run("ics", func(t *testing.T) { runOutbound(t, ctx, engine, store, icsKind, healthyCounts, waitHealthy, took, &mu) })

	t.Run("caldav", func(t *testing.T) {
		srv := startDAVServer(t, "radicale")
		hcoll := srv.NewCalendar("healthy")
		srv.Put(hcoll+"h.ics", davEvent("healthy@test", "healthy"))
		addHealthy(t, NewCalDAV(CalDAVOptions{ID: "healthy-caldav", User: "alice", Calendar: "healthy-caldav", URL: hcoll,
			Username: srv.Username, Password: srv.Password, Client: NewHTTPClient(HTTPOptions{Timeout: 10 * time.Second}), Store: store}),
			"healthy-caldav", 200*time.Millisecond)
		t.Cleanup(func() { engine.Remove("healthy-caldav") }) // before Radicale stops
		rad, err := url.Parse(srv.Base)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		kind := outboundKind{
			name: "caldav",
			good: func(t *testing.T) (http.Handler, string) {
				n++
				coll := srv.NewCalendar(fmt.Sprintf("out%d", n))
				for i := range 3 {
					srv.Put(fmt.Sprintf("%se%d.ics", coll, i), davEvent(fmt.Sprintf("out%d-%d@test", n, i), "cached"))
				}
				u, _ := url.Parse(coll)
				return httputil.NewSingleHostReverseProxy(rad), u.Path
			},
			new: func(id, cal, rawURL string, client *http.Client) Source {
				return NewCalDAV(CalDAVOptions{ID: id, User: "alice", Calendar: cal, URL: rawURL, Username: srv.Username,
					Password: srv.Password, Client: client, Store: store, MaxBytes: 1 << 20})
			},
		}
		runOutbound(t, ctx, engine, store, kind, healthyCounts, waitHealthy, took, &mu)
	})
}

func kindOf(src Source) string {
	if _, ok := src.(*CalDAVSource); ok {
		return "caldav"
	}
	return "ics"
}

// calendarSnapshot is the revision of a calendar and its objects (name ->
// ETag and bytes).
func calendarSnapshot(t *testing.T, store *cache.Store, user, cal string) (uint64, map[string]string) {
	t.Helper()
	c, err := store.GetCalendar(user, cal)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := store.ListObjects(user, cal)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(objs))
	for _, o := range objs {
		m[o.Name] = o.ETag + " " + string(o.Data)
	}
	return c.Revision, m
}

func runOutbound(t *testing.T, ctx context.Context, engine *Engine, store *cache.Store, kind outboundKind,
	healthyCounts func() map[string]int, waitHealthy func(*testing.T, map[string]int), took map[string]time.Duration, mu *sync.Mutex) {
	var maxTook time.Duration
	tried := 0
	for i, tc := range outboundCases() {
		t.Run(tc.name, func(t *testing.T) {
			good, path := kind.good(t)
			front := newOutboundFront(t, tc.tls, good)
			id := fmt.Sprintf("out-%s-%d", kind.name, i)
			cal := id
			if _, err := store.CreateCalendar(cache.Calendar{User: "alice", ID: cal, Kind: kind.name, Source: id}); err != nil {
				t.Fatal(err)
			}

			// The cached copy, through the front in its good mode.
			seedClient := NewHTTPClient(HTTPOptions{Timeout: 10 * time.Second})
			baseTransport(seedClient).TLSClientConfig = front.rootCAs()
			res, err := kind.new(id, cal, front.URL+path, seedClient).Sync(ctx)
			if err != nil || res.Put == 0 {
				t.Fatalf("seeding sync: %+v, %v", res, err)
			}
			rev0, objs0 := calendarSnapshot(t, store, "alice", cal)
			st0, err := store.GetSource(id)
			if err != nil {
				t.Fatal(err)
			}

			// The source under test: its URL, client and the fault.
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			client := NewHTTPClient(HTTPOptions{Timeout: timeout})
			tr := baseTransport(client)
			if tc.trust {
				tr.TLSClientConfig = front.rootCAs()
			}
			srcURL := front.URL + path
			if tc.host != "" {
				u, _ := url.Parse(srcURL)
				u.Host = net.JoinHostPort(tc.host, u.Port())
				srcURL = u.String()
				// Whatever the address, connect to the front: no
				// traffic leaves the loopback interface.
				addr := front.Listener.Addr().String()
				tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				}
			}
			front.target.Store(tc.target)
			front.mode.Store(tc.mode)
			engine.Add(manualSource{kind.new(id, cal, srcURL, client)}, "alice", cal, time.Hour)
			defer engine.Remove(id)

			before := healthyCounts()
			var m0, m1 runtime.MemStats
			if tc.memory {
				runtime.GC()
				runtime.ReadMemStats(&m0)
			}
			start := time.Now()
			_, err = engine.SyncNow(context.WithValue(ctx, manualKey{}, true), id)
			elapsed := time.Since(start)
			if tc.memory {
				runtime.ReadMemStats(&m1)
			}
			tried++
			mu.Lock()
			d := took[id]
			mu.Unlock()
			maxTook = max(maxTook, d)
			if err == nil {
				t.Fatalf("the sync succeeded through the fault")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.redirect && (!errors.Is(err, ErrRedirect) || errors.Is(err, ErrUnavailable)) {
				t.Errorf("error %v: want ErrRedirect and not ErrUnavailable (retrying does not help)", err)
			}
			// Bounds: a hang is the failure here, so the bound is wide
			// (10 times the client timeout).
			if limit := 10 * timeout; elapsed > limit {
				t.Errorf("the sync took %v, more than %v", elapsed, limit)
			}
			if n := front.requests.Load(); tc.maxRequests > 0 && n > tc.maxRequests {
				t.Errorf("the fault server saw %d requests, want at most %d", n, tc.maxRequests)
			}
			if n := front.leaked.Load(); n != 0 {
				t.Errorf("a refused redirect was followed: %d requests reached its target", n)
			}
			line := fmt.Sprintf("MATRIX outbound: %s/%s: refused in %v (sync %v), %d requests", kind.name, tc.name,
				elapsed.Round(10*time.Microsecond), d.Round(10*time.Microsecond), front.requests.Load())
			if tc.memory || tc.mode == faultDrip {
				alloc := m1.TotalAlloc - m0.TotalAlloc
				line += fmt.Sprintf(", %d body bytes sent by the server", front.written.Load())
				if tc.memory {
					line += fmt.Sprintf(", %.1f MiB allocated during the sync", float64(alloc)/(1<<20))
					// Uncapped, the bomb would be 4 GiB and the endless
					// body 256 MiB; the cap is 1 MiB.
					if alloc > 64<<20 {
						t.Errorf("the sync allocated %d bytes, want the 1 MiB cap to bound it", alloc)
					}
				}
				if tc.mode == faultDrip {
					// The handler returns when it notices the client is gone.
					for range 100 {
						if front.served.Load() != 0 {
							break
						}
						time.Sleep(50 * time.Millisecond)
					}
					line += fmt.Sprintf(", the server saw the request end after %v (timeout %v)",
						time.Duration(front.served.Load()).Round(time.Millisecond), timeout)
				}
			}
			t.Log(line + ": " + err.Error())

			// The cached copy is kept; the error is on the source.
			if rev, objs := calendarSnapshot(t, store, "alice", cal); rev != rev0 || !maps.Equal(objs, objs0) {
				t.Errorf("after the fault: revision %d with %d objects, want revision %d with the same %d objects",
					rev, len(objs), rev0, len(objs0))
			}
			st, err2 := store.GetSource(id)
			if err2 != nil {
				t.Fatal(err2)
			}
			if st.LastError != err.Error() || st.Failures != 1 || !st.LastSuccess.Equal(st0.LastSuccess) {
				t.Errorf("source state: last error %q, failures %d, last success %v (was %v); want the sync's error, 1, unchanged",
					st.LastError, st.Failures, st.LastSuccess, st0.LastSuccess)
			}
			if strings.Contains(st.LastError, "secret") {
				t.Errorf("the recorded error shows the password: %q", st.LastError)
			}
			// calgate keeps serving: every healthy source syncs again.
			waitHealthy(t, before)
		})
	}
	names := slices.Sorted(maps.Keys(healthyCounts()))
	counts := healthyCounts()
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, counts[n]))
	}
	t.Logf("MATRIX outbound: %s: %d cases tried, max sync %v; healthy syncs so far: %s", kind.name, tried,
		maxTook.Round(time.Millisecond), strings.Join(parts, ", "))
}
