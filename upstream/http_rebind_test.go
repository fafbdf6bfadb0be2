package upstream

// DNS rebinding against the outbound client: a public host name that
// resolves to a public address when calgate checks it and to 127.0.0.1
// when calgate dials it. A real DNS server cannot be made to do this on
// cue, so the names come from a tiny in-process DNS server on 127.0.0.1
// (UDP, A records only), and the client's Resolver asks it. The upstreams
// are httptest servers on 127.0.0.1. The "public" address 93.184.216.34
// is only ever an answer: a tripwire on the client's dialer records every
// address it connects to and refuses any that is not loopback, before a
// packet is sent, and the test asserts it never fired.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rebindPublic is the public answer of the test DNS server; never dialled.
var rebindPublic = netip.MustParseAddr("93.184.216.34")

// rebindDNS is a DNS server on 127.0.0.1 that answers A queries for the
// names in its table (n counts the earlier A queries for that name), no
// records for AAAA, and NXDOMAIN for other names.
type rebindDNS struct {
	addr  string
	names map[string]func(n int) netip.Addr // fully qualified, lower case

	mu      sync.Mutex     // protects queries
	queries map[string]int // A queries by name
}

func startRebindDNS(t *testing.T, names map[string]func(n int) netip.Addr) *rebindDNS {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rebindDNS{addr: pc.LocalAddr().String(), names: names, queries: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			if resp := s.answer(buf[:n]); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return s
}

// answer encodes the reply to query (RFC 1035 §4.1), or nil for a query
// it cannot read.
func (s *rebindDNS) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, strings.ToLower(string(q[i+1:i+1+l])))
		i += 1 + l
	}
	end := i + 1 + 4 // the root label, QTYPE, QCLASS
	if end > len(q) {
		return nil
	}
	name := strings.Join(labels, ".") + "."
	qtype := binary.BigEndian.Uint16(q[end-4 : end-2])

	rcode := uint16(0)
	var a netip.Addr
	if f, ok := s.names[name]; !ok {
		rcode = 3 // NXDOMAIN
	} else if qtype == 1 { // A
		s.mu.Lock()
		a = f(s.queries[name])
		s.queries[name]++
		s.mu.Unlock()
	}
	resp := make([]byte, 12, end+16)
	copy(resp, q[:2])                                                                                // ID
	binary.BigEndian.PutUint16(resp[2:], 0x8000|binary.BigEndian.Uint16(q[2:4])&0x0100|0x0080|rcode) // QR, RD copied, RA
	binary.BigEndian.PutUint16(resp[4:], 1)                                                          // QDCOUNT
	if a.IsValid() {
		binary.BigEndian.PutUint16(resp[6:], 1) // ANCOUNT
	}
	resp = append(resp, q[12:end]...)
	if a.IsValid() {
		ip := a.As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4) // name at 12, A, IN, TTL 0, RDLENGTH 4
		resp = append(resp, ip[:]...)
	}
	return resp
}

// count is the number of A queries for name so far.
func (s *rebindDNS) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[name]
}

// resolver is a Go resolver that asks s.
func (s *rebindDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", s.addr)
	}}
}

// countingServer is an httptest server on 127.0.0.1 that counts the
// connections it accepts.
func countingServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// baseTransport is the *http.Transport under the client of NewHTTPClient,
// for tests that set its TLS configuration, proxy or dialer.
func baseTransport(c *http.Client) *http.Transport {
	return c.Transport.(*guardTransport).base
}

// TestMatrixOutboundDNSRebinding: a request whose host name flips from a
// public address to 127.0.0.1 between the check and the dial is refused
// at dial time, on the first request and on a redirect (reached through a
// proxy, whose own loopback dial is allowed); a source configured on
// local names keeps working, redirects among local hosts included.
func TestMatrixOutboundDNSRebinding(t *testing.T) {
	public := func(int) netip.Addr { return rebindPublic }
	loopback := func(int) netip.Addr { return netip.MustParseAddr("127.0.0.1") }
	flip := func(n int) netip.Addr { // public when checked, loopback after
		if n == 0 {
			return rebindPublic
		}
		return netip.MustParseAddr("127.0.0.1")
	}
	dns := startRebindDNS(t, map[string]func(int) netip.Addr{
		"rebind1.test.": flip, "rebind2.test.": flip,
		"public.test.": public,
		"local.test.":  loopback, "local2.test.": loopback,
	})

	// The local service a rebinding name points at: it must see no
	// connection from a refused request.
	target, targetConns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "local secret")
	}))
	_, port, _ := net.SplitHostPort(target.Listener.Addr().String())

	// The client calgate uses, with the test resolver, no proxy but the
	// one a case sets, and the tripwire.
	var (
		mu     sync.Mutex // protects dialed
		dialed []string
		wild   atomic.Int64 // dials to a non-loopback address
	)
	newClient := func(proxy func(*http.Request) (*url.URL, error)) *http.Client {
		c := NewHTTPClient(HTTPOptions{Timeout: 10 * time.Second, Resolver: dns.resolver()})
		g := c.Transport.(*guardTransport)
		g.base.Proxy = proxy
		guard := g.dialer.ControlContext
		g.dialer.ControlContext = func(ctx context.Context, network, address string, rc syscall.RawConn) error {
			mu.Lock()
			dialed = append(dialed, address)
			mu.Unlock()
			if ap, err := netip.ParseAddrPort(address); err != nil || !ap.Addr().IsLoopback() {
				wild.Add(1)
				return fmt.Errorf("test tripwire: dial of non-loopback %s", address)
			}
			return guard(ctx, network, address, rc)
		}
		return c
	}
	get := func(t *testing.T, c *http.Client, u string) (string, time.Duration, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := c.Do(req)
		d := time.Since(start)
		if err != nil {
			return "", d, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %s", resp.Status)
		}
		return string(body), d, err
	}
	// refused checks a request refused at dial time.
	refused := func(t *testing.T, err error, name string) {
		t.Helper()
		switch {
		case err == nil:
			t.Fatalf("the request reached the local service through %s", name)
		case !errors.Is(err, ErrLocalAddress):
			t.Fatalf("error %v, want ErrLocalAddress", err)
		case errors.Is(err, ErrRedirect):
			t.Errorf("error %v wraps ErrRedirect: the redirect check passed, the dial refused", err)
		case !strings.Contains(err.Error(), name+":"+port+" now resolves to 127.0.0.1"):
			t.Errorf("error %q does not say which name resolved to what", err)
		}
		if n := targetConns.Load(); n != 0 {
			t.Errorf("the local service accepted %d connections", n)
		}
		// Once to decide that the chain began at a public host, once by
		// the dialer: one resolver for both.
		if n := dns.count(name + "."); n != 2 {
			t.Errorf("%s was looked up %d times, want 2 (the check, the dial)", name, n)
		}
		if err := networkError(err, "GET"); errors.Is(err, ErrUnavailable) {
			t.Errorf("networkError = %v: a refused dial is not worth retrying", err)
		}
	}
	var report []string

	t.Run("first request", func(t *testing.T) {
		_, d, err := get(t, newClient(nil), "http://rebind1.test:"+port+"/feed.ics")
		t.Logf("after %v: %v", d, err)
		refused(t, err, "rebind1.test")
		report = append(report, fmt.Sprintf("first request refused at dial in %v", d.Round(time.Microsecond)))
	})

	t.Run("redirect", func(t *testing.T) {
		// public.test is reached through a proxy on 127.0.0.1, which
		// answers for it with a redirect to the rebinding name: the
		// dial of the proxy is allowed, the one of rebind2.test is not.
		var proxyHits atomic.Int64
		proxy, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			proxyHits.Add(1)
			if r.URL.Host != "public.test" {
				http.Error(w, "not a proxy request for public.test: "+r.URL.String(), http.StatusBadGateway)
				return
			}
			http.Redirect(w, r, "http://rebind2.test:"+port+"/feed.ics", http.StatusFound)
		}))
		proxyURL, _ := url.Parse(proxy.URL)
		c := newClient(func(r *http.Request) (*url.URL, error) {
			if r.URL.Hostname() == "public.test" {
				return proxyURL, nil
			}
			return nil, nil
		})
		_, d, err := get(t, c, "http://public.test/feed.ics")
		t.Logf("after %v: %v", d, err)
		if n := proxyHits.Load(); n != 1 {
			t.Errorf("the proxy saw %d requests, want 1", n)
		}
		refused(t, err, "rebind2.test")
		if n := dns.count("public.test."); n != 1 {
			t.Errorf("public.test was looked up %d times, want once (the chain's origin, decided once)", n)
		}
		report = append(report, fmt.Sprintf("redirect through a proxy refused at dial in %v", d.Round(time.Microsecond)))
	})

	t.Run("local source", func(t *testing.T) {
		// Configured on names that always resolve to 127.0.0.1, and on
		// an address: each redirects to another local host.
		local, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://local2.test:"+port+"/feed.ics", http.StatusFound)
		}))
		_, lport, _ := net.SplitHostPort(local.Listener.Addr().String())
		c := newClient(nil)
		for _, u := range []string{"http://local.test:" + lport + "/", "http://127.0.0.1:" + lport + "/"} {
			body, d, err := get(t, c, u)
			if err != nil || body != "local secret" {
				t.Fatalf("GET %s: %q, %v; want the local service's answer", u, body, err)
			}
			report = append(report, fmt.Sprintf("%s -> local2.test ok in %v", u, d.Round(time.Microsecond)))
		}
		c.CloseIdleConnections()
	})

	mu.Lock()
	defer mu.Unlock()
	if n := wild.Load(); n != 0 {
		t.Errorf("%d dials to a non-loopback address (the tripwire refused them): %v", n, dialed)
	}
	for _, a := range dialed {
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Addr() == rebindPublic {
			t.Errorf("the public address was dialled: %v", dialed)
		}
	}
	t.Logf("MATRIX outbound (DNS rebinding): 4 cases: %s; %d dials, all to loopback (%d elsewhere), the local service got %d connections",
		strings.Join(report, "; "), len(dialed), wild.Load(), targetConns.Load())
}
