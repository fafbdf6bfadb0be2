package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// HTTPOptions configure the one HTTP client calgate uses for upstreams.
type HTTPOptions struct {
	// Timeout bounds a whole request, body included, so a server that
	// drips its answer cannot hold a sync. Default: 2m.
	Timeout time.Duration
	// MaxRedirects is the longest redirect chain followed. Default: 5.
	MaxRedirects int
	// Resolver looks up upstream host names, both to decide whether a
	// host is local (the redirect and dial checks) and to dial, so that
	// the check and the connection ask the same DNS. Tests point it at
	// their own DNS server. Default (nil): net.DefaultResolver.
	Resolver *net.Resolver
}

// NewHTTPClient returns the client for all upstream requests: bounded in
// time, following at most MaxRedirects redirects, never from https to
// http, and never from a public address to a loopback, private or
// link-local one (a feed on the internet must not be able to point
// calgate at the local network).
//
// The public-to-local rule holds at two points. A redirect is checked by
// host name when it arrives (ErrRedirect). And every connection of a
// request whose chain began at a public host is checked at dial time,
// on the address actually connected to: a public name that resolves to
// a public address when checked and to a local one when dialled (DNS
// rebinding), on the first request or on a redirect, is refused with
// ErrLocalAddress. A chain that began at a local host (localhost, a
// loopback or private address, or a name resolving to one) may go
// anywhere. A request sent through a proxy (HTTP_PROXY, HTTPS_PROXY) is
// dialled to the proxy and not checked at dial time: the proxy resolves
// the name.
func NewHTTPClient(opts HTTPOptions) *http.Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.MaxRedirects <= 0 {
		opts.MaxRedirects = 5
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	g := &guardTransport{resolver: opts.Resolver}
	g.dialer = &net.Dialer{
		Timeout:        10 * time.Second,
		KeepAlive:      30 * time.Second,
		Resolver:       opts.Resolver,
		ControlContext: refuseLocal,
	}
	g.base = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           g.dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: g,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return redirectPolicy(req, via, opts.MaxRedirects, opts.Resolver)
		},
	}
}

// ErrRedirect is wrapped by errors for refused redirects.
var ErrRedirect = errors.New("upstream: redirect refused")

// ErrLocalAddress is wrapped by the error of a request that began at a
// public host and would connect to a loopback, private, link-local or
// unspecified address: a name that resolved to a public address when
// checked resolves to a local one when dialled (DNS rebinding). Like a
// refused redirect, retrying does not help.
var ErrLocalAddress = errors.New("upstream: connection to a local address refused")

// checkRedirect applies the redirect rules, looking names up with
// net.DefaultResolver.
func checkRedirect(req *http.Request, via []*http.Request, max int) error {
	return redirectPolicy(req, via, max, net.DefaultResolver)
}

func redirectPolicy(req *http.Request, via []*http.Request, max int, r *net.Resolver) error {
	if len(via) > max {
		return fmt.Errorf("%w: more than %d redirects", ErrRedirect, max)
	}
	prev := via[len(via)-1]
	if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: from https to %s (%s)", ErrRedirect, req.URL.Scheme, req.URL.Redacted())
	}
	// The chain's origin is decided once, when it is first needed: a
	// second lookup of a rebinding name could call it local.
	var public bool
	if c := chainOf(req); c != nil {
		public = c.public(req.Context())
	} else {
		public = !isLocalHost(req.Context(), r, via[0].URL.Hostname())
	}
	if public && isLocalHost(req.Context(), r, req.URL.Hostname()) {
		return fmt.Errorf("%w: from a public address to a local one (%s)", ErrRedirect, req.URL.Host)
	}
	return nil
}

// guardTransport is the transport of NewHTTPClient: it ties every
// request to its redirect chain, so that the dialer knows where the
// chain began.
type guardTransport struct {
	base     *http.Transport
	dialer   *net.Dialer // base's dialer; ControlContext is refuseLocal
	resolver *net.Resolver
}

// chain is a redirect chain: the host of its first request, and whether
// that host is public, decided by one lookup the first time it is asked.
type chain struct {
	host     string
	resolver *net.Resolver

	once     sync.Once
	isPublic bool // set by once
}

func (c *chain) public(ctx context.Context) bool {
	c.once.Do(func() { c.isPublic = !isLocalHost(ctx, c.resolver, c.host) })
	return c.isPublic
}

// chainKey is the context key of a request's *chain; dialKey that of the
// *dialCheck of a request dialled directly (not through a proxy).
type (
	chainKey struct{}
	dialKey  struct{}
)

// dialCheck is what the dialer needs to know about a request.
type dialCheck struct {
	chain *chain
	host  string // the host dialled, for the error
}

// chainOf returns the chain of req: its own, or the one of the request
// whose response redirected to it (Client.Do gives redirects the context
// of the first request, not the transport's).
func chainOf(req *http.Request) *chain {
	for r, i := req, 0; r != nil && i < 100; i++ {
		if c, ok := r.Context().Value(chainKey{}).(*chain); ok {
			return c
		}
		if r.Response == nil {
			break
		}
		r = r.Response.Request
	}
	return nil
}

// RoundTrip implements http.RoundTripper.
func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := chainOf(req)
	if c == nil {
		c = &chain{host: req.URL.Hostname(), resolver: g.resolver}
	}
	ctx := context.WithValue(req.Context(), chainKey{}, c)
	proxied := false
	if g.base.Proxy != nil {
		u, err := g.base.Proxy(req)
		proxied = err == nil && u != nil
	}
	if !proxied {
		ctx = context.WithValue(ctx, dialKey{}, &dialCheck{chain: c, host: req.URL.Host})
	}
	resp, err := g.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		waitClientTimeout(req)
		return nil, err
	}
	resp.Body = timeoutBody{resp.Body, req}
	return resp, nil
}

// waitClientTimeout keeps http.Client's "Client.Timeout" in errors. The
// client sends requests to a RoundTripper it does not know (this one)
// through its legacy timeout path, where a timer first marks that
// Client.Timeout expired and then closes req.Cancel, while the request's
// context expires at the same instant and usually fails the request
// first, before the mark. An error at that deadline waits (briefly) for
// the mark.
func waitClientTimeout(req *http.Request) {
	//lint:ignore SA1019 req.Cancel is how http.Client's legacy path signals its timeout
	cancel := req.Cancel
	if cancel == nil || !errors.Is(req.Context().Err(), context.DeadlineExceeded) {
		return
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-cancel:
	case <-t.C:
	}
}

// timeoutBody is a response body whose read errors wait for
// waitClientTimeout.
type timeoutBody struct {
	io.ReadCloser
	req *http.Request
}

func (b timeoutBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		waitClientTimeout(b.req)
	}
	return n, err
}

// CloseIdleConnections implements the optional interface that
// http.Client.CloseIdleConnections uses.
func (g *guardTransport) CloseIdleConnections() { g.base.CloseIdleConnections() }

// dial decides whether the chain began at a public host (one lookup, the
// check) before the dialer resolves the address it connects to (a second
// one, seen by refuseLocal).
func (g *guardTransport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := ctx.Value(dialKey{}).(*dialCheck); ok {
		d.chain.public(ctx)
	}
	return g.dialer.DialContext(ctx, network, addr)
}

// refuseLocal is the dialer's ControlContext: it sees each address
// actually connected to, and refuses a local one for a request whose
// chain began at a public host.
func refuseLocal(ctx context.Context, _, address string, _ syscall.RawConn) error {
	d, ok := ctx.Value(dialKey{}).(*dialCheck)
	if !ok {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !isLocalAddr(ap.Addr()) || !d.chain.public(ctx) {
		return nil
	}
	return fmt.Errorf("%w: %s now resolves to %s, but the request began at %s, which resolved to a public address "+
		"(DNS rebinding?); configure a source on the local network by a name or address that always resolves there",
		ErrLocalAddress, d.host, ap.Addr(), d.chain.host)
}

// isLocalHost reports whether host is, or resolves (with r) to, a
// loopback, private, link-local or unspecified address. A name that does
// not resolve is not local.
func isLocalHost(ctx context.Context, r *net.Resolver, host string) bool {
	if host == "localhost" {
		return true
	}
	addrs := []netip.Addr{}
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a)
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ips, err := r.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return false
		}
		addrs = ips
	}
	for _, a := range addrs {
		if isLocalAddr(a) {
			return true
		}
	}
	return false
}

// isLocalAddr reports whether a is a loopback, private, link-local or
// unspecified address.
func isLocalAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsLinkLocalMulticast()
}
