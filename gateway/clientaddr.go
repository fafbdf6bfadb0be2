package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr returns the address a request came from. It is the peer's
// address unless the peer is one of the trusted proxies: then it is the
// nearest address in X-Forwarded-For that is not a trusted proxy (the
// rightmost one; everything to its left was written by the client and
// proves nothing). Without trusted proxies X-Forwarded-For is ignored, so
// a client cannot choose the address its failed sign-ins count against.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if len(trusted) == 0 || !isTrusted(peer, trusted) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a := strings.TrimSpace(parts[j])
			if a == "" {
				continue
			}
			ip, err := netip.ParseAddr(a)
			if err != nil {
				// Garbage from the client side of the chain: the last
				// trusted hop is the best address known.
				return peer
			}
			if !isTrusted(ip.String(), trusted) {
				return ip.Unmap().String()
			}
			peer = ip.String()
		}
	}
	return peer
}

// isTrusted reports whether addr lies in one of the prefixes.
func isTrusted(addr string, trusted []netip.Prefix) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// requestScheme is "https" when the request came over TLS, or through a
// trusted proxy that says (X-Forwarded-Proto) the client used HTTPS.
func requestScheme(r *http.Request, trusted []netip.Prefix) string {
	if r.TLS != nil {
		return "https"
	}
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if isTrusted(peer, trusted) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https") {
		return "https"
	}
	return "http"
}
