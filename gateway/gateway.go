// Package gateway is calgate's HTTP surface: its own CalDAV server
// (RFC 4918 WebDAV, RFC 4791 CalDAV, RFC 6578 sync-collection) answering
// every request from the cache store, plus HTTP Basic authentication.
//
// go-webdav's server is deliberately not used: calgate needs MKCALENDAR,
// PROPPATCH, getctag, sync-collection and byte-exact serving of stored
// objects, which it does not provide.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// User is an account that may sign in and owns calendars.
type User struct {
	Name         string
	PasswordHash string // bcrypt
}

// Options configure a Handler. Store and Users are required.
type Options struct {
	Store *cache.Store
	Users []User
	// Logger receives one line per request at debug level. Nil means silent.
	Logger *slog.Logger
	// MaxResourceSize caps a calendar object and any request body, in
	// bytes. Default: 10 MiB.
	MaxResourceSize int64
	// AuthCacheTTL is how long a verified password is remembered so that
	// not every request pays a bcrypt comparison. Default: 5m.
	AuthCacheTTL time.Duration
	// OnChange, if set, is called after a write to a calendar committed.
	OnChange func(user, calendar string)
	// Feeds are the merged .ics feeds served under /feeds/.
	Feeds []Feed
	// Now returns the current time (the feeds' windows). Default: time.Now.
	Now func() time.Time
	// BaseURL is the public URL of the server (e.g.
	// "https://cal.example.org/"), used for the links the status page
	// shows. Empty means derived from each request.
	BaseURL string
	// OnFeed, if set, is called after every feed request that reached a
	// feed (a valid token): status is the HTTP status sent (200, 304,
	// ...), rendered tells whether the request rebuilt the rendering.
	OnFeed func(feed string, status int, rendered bool)
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client address (failed sign-ins are limited per address, and
	// the request log shows it). Empty means the header is ignored.
	TrustedProxies []netip.Prefix
}

// DefaultMaxResourceSize is the default for Options.MaxResourceSize.
const DefaultMaxResourceSize = 10 << 20

var _ http.Handler = (*Handler)(nil)

// Handler is calgate's CalDAV server. It serves /.well-known/caldav,
// everything under /dav/, the feeds under /feeds/ and the status page at
// / (with its forms under /status/).
type Handler struct {
	store   *cache.Store
	log     *slog.Logger
	maxSize int64
	auth    *authenticator
	zones   *ical.Zones
	parsed  *parsedCache // parses of stored objects, by ETag
	// collectionCache holds renderings of calendar collections for GET.
	collectionCache *collectionCache
	onChange        func(user, calendar string)
	merged          mergedCache // de-duplicated listing of each merged calendar
	// maxInstances caps the instances one object expands to in a request.
	maxInstances int
	feeds        map[string]*feedServer // read only after New
	now          func() time.Time
	baseURL      string
	onFeed       func(feed string, status int, rendered bool)
	// statusFeeds are the feeds with their raw tokens, for the status
	// page's links; read only after New.
	statusFeeds []statusFeed
	// csrfKey signs the status page's forms; made in New, read only.
	csrfKey []byte
}

// New returns a Handler for opts.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil {
		return nil, errors.New("gateway: Options.Store is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxResourceSize <= 0 {
		opts.MaxResourceSize = DefaultMaxResourceSize
	}
	if opts.AuthCacheTTL <= 0 {
		opts.AuthCacheTTL = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	feeds := make(map[string]*feedServer, len(opts.Feeds))
	for _, f := range opts.Feeds {
		if f.Spec.Name == "" || strings.ContainsAny(f.Spec.Name, "/?#") {
			return nil, fmt.Errorf("gateway: invalid feed name %q", f.Spec.Name)
		}
		if feeds[f.Spec.Name] != nil {
			return nil, fmt.Errorf("gateway: feed %q listed twice", f.Spec.Name)
		}
		if len(f.Tokens) == 0 {
			return nil, fmt.Errorf("gateway: feed %q has no token", f.Spec.Name)
		}
		feeds[f.Spec.Name] = newFeedServer(f)
	}
	seen := make(map[string]bool)
	for _, u := range opts.Users {
		if u.Name == "" || !validSegment(u.Name) || strings.Contains(u.Name, "/") {
			return nil, fmt.Errorf("gateway: invalid user name %q", u.Name)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("gateway: user %q listed twice", u.Name)
		}
		seen[u.Name] = true
	}
	auth := newAuthenticator(opts.Users, opts.AuthCacheTTL)
	auth.trusted = append([]netip.Prefix(nil), opts.TrustedProxies...)
	return &Handler{
		store:           opts.Store,
		log:             opts.Logger,
		maxSize:         opts.MaxResourceSize,
		auth:            auth,
		zones:           new(ical.Zones),
		parsed:          newParsedCache(parsedBudget),
		collectionCache: newCollectionCache(),
		onChange:        opts.OnChange,

		maxInstances: ical.DefaultMaxInstances,
		feeds:        feeds,
		now:          opts.Now,
		baseURL:      opts.BaseURL,
		onFeed:       opts.OnFeed,
		statusFeeds:  newStatusFeeds(opts.Feeds),
		csrfKey:      newCSRFKey(),
	}, nil
}

// request is one authenticated DAV request.
type request struct {
	*http.Request
	user string
	t    target
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	user := h.serve(sw, r)
	h.log.Debug("request", "method", r.Method, "path", h.logPath(r.URL.Path), "user", user,
		"addr", clientAddr(r, h.auth.trusted),
		"status", sw.status, "bytes", sw.n, "duration", time.Since(start))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) string {
	if isStatusRequest(r) {
		return h.serveStatus(w, r)
	}
	w.Header().Set("DAV", "1, 3, calendar-access, extended-mkcol")
	if strings.EqualFold(strings.TrimSuffix(r.URL.Path, "/"), "/.well-known/caldav") {
		http.Redirect(w, r, davPrefix, http.StatusMovedPermanently)
		return ""
	}
	if strings.HasPrefix(r.URL.Path, feedsPrefix) {
		h.serveFeed(w, r)
		return ""
	}
	t, ok := requestTarget(r)
	if !ok {
		if strings.HasPrefix(r.URL.Path, "/dav") {
			h.writeError(w, r, errf(http.StatusBadRequest, "malformed path"))
		} else {
			h.writeError(w, r, errNotFound)
		}
		return ""
	}
	if r.Method == http.MethodOptions {
		h.options(w, r, t)
		return ""
	}
	user, err := h.auth.authenticate(r)
	if err != nil {
		h.writeError(w, r, err)
		return ""
	}
	// Another user's principal, home, calendars and objects look exactly
	// like resources that do not exist.
	if t.user != "" && t.user != user {
		h.writeError(w, r, errNotFound)
		return user
	}
	req := &request{Request: r, user: user, t: t}
	switch r.Method {
	case "PROPFIND":
		err = h.propfind(w, req)
	case "PROPPATCH":
		err = h.proppatch(w, req)
	case "MKCALENDAR":
		err = h.mkcalendar(w, req, false)
	case "MKCOL":
		err = h.mkcalendar(w, req, true)
	case "REPORT":
		err = h.report(w, req)
	case http.MethodGet, http.MethodHead:
		err = h.get(w, req)
	case http.MethodPut:
		err = h.put(w, req)
	case http.MethodDelete:
		err = h.delete(w, req)
	case "MOVE":
		err = h.moveCopy(w, req, false)
	case "COPY":
		err = h.moveCopy(w, req, true)
	default:
		err = errf(http.StatusMethodNotAllowed, "method %s is not supported here", r.Method)
	}
	if err != nil {
		h.writeError(w, r, err)
	}
	return user
}

// resolveQuiet parses the request path for error responses.
func (h *Handler) resolveQuiet(r *http.Request) target {
	t, _ := requestTarget(r)
	return t
}

func (h *Handler) options(w http.ResponseWriter, r *http.Request, t target) {
	allow := allowFor(t)
	if r.URL.Path == statusPath {
		allow = rootAllow
	}
	w.Header().Set("Allow", allow)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// changed reports a committed write to whoever listens.
func (h *Handler) changed(user, cal string) {
	if h.onChange != nil {
		h.onChange(user, cal)
	}
}

// statusWriter records the status and size of a response for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
