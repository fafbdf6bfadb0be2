package gateway

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::1/128")}
	cases := []struct {
		name    string
		peer    string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies configured: header ignored", "127.0.0.1:5000", []string{"203.0.113.9"}, nil, "127.0.0.1"},
		{"untrusted peer: header ignored", "198.51.100.7:5000", []string{"203.0.113.9"}, proxies, "198.51.100.7"},
		{"trusted peer, one hop", "127.0.0.1:5000", []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"client-written prefix is skipped", "127.0.0.1:5000", []string{"1.2.3.4, 203.0.113.9"}, proxies, "203.0.113.9"},
		{"chain of trusted proxies", "127.0.0.1:5000", []string{"203.0.113.9, 10.1.2.3"}, proxies, "203.0.113.9"},
		{"several header lines", "127.0.0.1:5000", []string{"6.6.6.6", "203.0.113.9, 10.1.2.3"}, proxies, "203.0.113.9"},
		{"garbage stops at the last trusted hop", "127.0.0.1:5000", []string{"203.0.113.9, bogus, 10.1.2.3"}, proxies, "10.1.2.3"},
		{"only trusted hops", "127.0.0.1:5000", []string{"10.1.2.3"}, proxies, "10.1.2.3"},
		{"no header", "[::1]:5000", nil, proxies, "::1"},
		{"ipv6 client through ipv6 loopback", "[::1]:5000", []string{"2001:db8::1"}, proxies, "2001:db8::1"},
		{"mapped ipv4", "127.0.0.1:5000", []string{"::ffff:203.0.113.9"}, proxies, "203.0.113.9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.peer
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, c.trusted); got != c.want {
				t.Errorf("clientAddr = %q, want %q", got, c.want)
			}
		})
	}
}

func TestRequestScheme(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:1"
	r.Header.Set("X-Forwarded-Proto", "https")
	if got := requestScheme(r, proxies); got != "https" {
		t.Errorf("trusted proxy saying https: %q", got)
	}
	if got := requestScheme(r, nil); got != "http" {
		t.Errorf("no trusted proxies: %q, want the header ignored", got)
	}
	r.RemoteAddr = "198.51.100.1:1"
	if got := requestScheme(r, proxies); got != "http" {
		t.Errorf("untrusted peer: %q", got)
	}
	r.TLS = &tls.ConnectionState{}
	if got := requestScheme(r, nil); got != "https" {
		t.Errorf("TLS request: %q", got)
	}
}

// wrongLogin sends a PROPFIND with a wrong password for user from the
// client address xff (through the test server on 127.0.0.1).
func wrongLogin(e *env, user, xff string) int {
	req, err := http.NewRequest("PROPFIND", e.srv.URL+"/dav/", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth(user, "wrong")
	req.Header.Set("X-Forwarded-For", xff)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Behind a trusted proxy, failed sign-ins count against the client's
// address, so one client's guessing does not lock out every other client
// of the proxy; without trusted proxies the header is the client's own
// word and is ignored.
func TestFailedLoginsPerForwardedAddress(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	limited := false
	for i := range failureBurst + 5 {
		// A different user each time: only the address limiter can trip.
		if code := wrongLogin(e, fmt.Sprintf("guess%d", i), "203.0.113.9"); code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatalf("no 429 after %d failed sign-ins from one forwarded address", failureBurst+5)
	}
	if code := wrongLogin(e, "someone", "198.51.100.4"); code != http.StatusUnauthorized {
		t.Errorf("another client behind the proxy got %d, want 401 (not limited)", code)
	}
	wantStatus(t, e.do("alice", "PROPFIND", "/dav/", "", "X-Forwarded-For", "198.51.100.4", "Depth", "0"), http.StatusMultiStatus)

	// Untrusted: all the same peer, whatever the header says.
	e2 := newEnv(t)
	limited = false
	for i := range failureBurst + 5 {
		if code := wrongLogin(e2, fmt.Sprintf("guess%d", i), fmt.Sprintf("203.0.113.%d", i)); code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("rotating X-Forwarded-For escaped the address limit without trusted proxies")
	}
}
