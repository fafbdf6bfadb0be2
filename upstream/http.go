package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// HTTPOptions configure the one HTTP client calgate uses for upstreams.
type HTTPOptions struct {
	// Timeout bounds a whole request, body included, so a server that
	// drips its answer cannot hold a sync. Default: 2m.
	Timeout time.Duration
	// MaxRedirects is the longest redirect chain followed. Default: 5.
	MaxRedirects int
}

// NewHTTPClient returns the client for all upstream requests: bounded in
// time, following at most MaxRedirects redirects, never from https to
// http, and never from a public address to a loopback, private or
// link-local one (a feed on the internet must not be able to point
// calgate at the local network).
func NewHTTPClient(opts HTTPOptions) *http.Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.MaxRedirects <= 0 {
		opts.MaxRedirects = 5
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return checkRedirect(req, via, opts.MaxRedirects)
		},
	}
}

// ErrRedirect is wrapped by errors for refused redirects.
var ErrRedirect = errors.New("upstream: redirect refused")

func checkRedirect(req *http.Request, via []*http.Request, max int) error {
	if len(via) > max {
		return fmt.Errorf("%w: more than %d redirects", ErrRedirect, max)
	}
	prev := via[len(via)-1]
	if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: from https to %s (%s)", ErrRedirect, req.URL.Scheme, req.URL.Redacted())
	}
	if !isLocalHost(req.Context(), via[0].URL.Hostname()) && isLocalHost(req.Context(), req.URL.Hostname()) {
		return fmt.Errorf("%w: from a public address to a local one (%s)", ErrRedirect, req.URL.Host)
	}
	return nil
}

// isLocalHost reports whether host is, or resolves to, a loopback,
// private, link-local or unspecified address.
func isLocalHost(ctx context.Context, host string) bool {
	if host == "localhost" {
		return true
	}
	addrs := []netip.Addr{}
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a)
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return false
		}
		addrs = ips
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsLinkLocalMulticast() {
			return true
		}
	}
	return false
}
