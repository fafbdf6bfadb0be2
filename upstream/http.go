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
	// Timeout bounds a whole request, its redirects and its body
	// included, so a server that drips its answer cannot hold a sync;
	// past it, errors are a *TimeoutError. Default: 2m.
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
	g := &guardTransport{resolver: opts.Resolver, timeout: opts.Timeout}
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
		Transport: g, // which applies opts.Timeout to each redirect chain
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
	timeout  time.Duration // HTTPOptions.Timeout
}

// chain is a redirect chain: the host of its first request, and whether
// that host is public, decided by one lookup the first time it is asked.
type chain struct {
	host     string
	resolver *net.Resolver
	deadline time.Time // of the whole chain: its start plus HTTPOptions.Timeout

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
		c = &chain{host: req.URL.Hostname(), resolver: g.resolver, deadline: time.Now().Add(g.timeout)}
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
	// The chain's deadline bounds every hop, body included: the client's
	// own Timeout is not used, since http.Client times a RoundTripper it
	// does not know (this one) with a timer racing the context, and the
	// error then rarely says that the time was up.
	ctx, cancel := context.WithDeadline(ctx, c.deadline)
	resp, err := g.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		err = g.timedOut(ctx, c.deadline, err)
		cancel()
		return nil, err
	}
	resp.Body = &deadlineBody{ReadCloser: resp.Body, ctx: ctx, deadline: c.deadline, cancel: cancel, g: g}
	return resp, nil
}

// timedOut returns err, or a *TimeoutError for err if ctx expired at the
// chain's deadline (not at an earlier one of the caller's).
func (g *guardTransport) timedOut(ctx context.Context, deadline time.Time, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !time.Now().Before(deadline) {
		return &TimeoutError{Limit: g.timeout, Err: err}
	}
	return err
}

// TimeoutError is the error of a request (a redirect chain, body
// included) that took longer than HTTPOptions.Timeout. It is a net.Error
// whose Timeout method reports true.
type TimeoutError struct {
	Limit time.Duration // HTTPOptions.Timeout
	Err   error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("no complete answer within the upstream timeout of %v: %v", e.Limit, e.Err)
}

// Unwrap returns the underlying error.
func (e *TimeoutError) Unwrap() error { return e.Err }

// Temporary implements net.Error; a timeout may pass.
func (e *TimeoutError) Temporary() bool { return true }

// Timeout implements net.Error.
func (e *TimeoutError) Timeout() bool { return true }

// deadlineBody is a response body read under its hop's deadline; closing
// it releases the hop's context.
type deadlineBody struct {
	io.ReadCloser
	ctx      context.Context
	deadline time.Time // the chain's
	cancel   context.CancelFunc
	g        *guardTransport
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.g.timedOut(b.ctx, b.deadline, err)
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
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
