package gateway

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

// Feed is a merged .ics feed published at /feeds/{name}.ics.
type Feed struct {
	Spec feed.Spec
	// Tokens are the access tokens, one per subscriber, so that one can
	// be revoked alone. A request must carry one of them, in ?token= or as
	// /feeds/{token}/{name}.ics.
	Tokens []string
}

// feedServer serves one feed. Its rendering is cached and rebuilt only
// when a member calendar changed or the window moved to another day, so a
// GET is a copy of bytes in memory and a conditional GET a comparison of
// headers (feed.Version: one GetCalendar per member). A rebuild goes
// through a feed.Renderer, which reads and transforms again only the
// objects that changed. The gzip encoding of a rendering is made when the
// first request that accepts it arrives (gzipLevel), once per rendering.
//
// The window moves once a day: every rendering of a UTC day uses the time
// of the day's first rendering as its now, so that the objects whose
// window decision needs expansion are expanded once a day rather than
// after every change, and the renderings of one day agree on the window.
type feedServer struct {
	spec   feed.Spec
	tokens [][sha256.Size]byte // hashes: compared in constant time, never logged
	r      feed.Renderer       // safe for concurrent use

	mu        sync.Mutex // protects the fields below and serialises rebuilds
	cur       *rendering
	anchor    time.Time // the window's now for renderings of anchorDay
	anchorDay string
}

// rendering is one built version of a feed. Its fields are read only once
// it is published in feedServer.cur; gz makes the gzip encoding once.
type rendering struct {
	key      string // feed.Version + window day
	body     []byte
	etag     string // strong, from feed.Rendering.Sum
	modified time.Time
	gz       lazyGzip
}

// gzipLevel is the compression of feeds and collection GETs; the encoding
// is made by the first request that asks for it, once per rendering.
// Measured on a 2-core machine, for 9 MB of iCalendar text:
// gzip.BestSpeed takes 10 ms (the benchmarks' repetitive events), 40 ms
// (the shared fixture corpus) or 80 ms (random prose), where
// gzip.DefaultCompression takes 20, 105 or 350 ms and BestCompression 50,
// 300 or 400 ms; BestSpeed's output is 15-40% larger than Default's.
// Subscribers poll and mostly get 304, and the first request after a
// change waits for the compression, so the cheap level wins.
const gzipLevel = gzip.BestSpeed

// lazyGzip is the gzip encoding of one body, made on first use.
type lazyGzip struct {
	mu sync.Mutex // protects b; held while compressing
	b  []byte
}

// bytes returns the gzip encoding of body (always the same body),
// compressing it on the first call; concurrent callers wait for it.
func (z *lazyGzip) bytes(body []byte) []byte {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.b == nil {
		var buf bytes.Buffer
		buf.Grow(len(body)/4 + 64)
		zw, _ := gzip.NewWriterLevel(&buf, gzipLevel)
		zw.Write(body) // a bytes.Buffer does not fail
		zw.Close()
		z.b = buf.Bytes()
	}
	return z.b
}

// made reports whether the encoding was made.
func (z *lazyGzip) made() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.b != nil
}

func newFeedServer(f Feed) *feedServer {
	fs := &feedServer{spec: f.Spec}
	for _, t := range f.Tokens {
		fs.tokens = append(fs.tokens, sha256.Sum256([]byte(t)))
	}
	return fs
}

// feedsPrefix is where feeds are served.
const feedsPrefix = "/feeds/"

// dummyToken is compared against when no feed matches, so that a request
// for a feed that does not exist takes as long as one with a wrong token.
var dummyToken = sha256.Sum256([]byte("calgate: no such feed"))

// serveFeed answers GET and HEAD of /feeds/{name}.ics?token=T and
// /feeds/{T}/{name}.ics. A wrong or missing token is the same 404 as a
// feed that does not exist.
func (h *Handler) serveFeed(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, feedsPrefix)
	token := r.URL.Query().Get("token")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		token, rest = rest[:i], rest[i+1:]
	}
	name, ok := strings.CutSuffix(rest, ".ics")
	fs := h.feeds[name]
	if !ok || strings.Contains(name, "/") {
		fs = nil
	}
	if !fs.allows(token) {
		h.writeError(w, r, errNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		err := errf(http.StatusMethodNotAllowed, "a feed can only be read")
		h.writeError(w, r, err)
		h.reportFeed(name, errStatus(err), false)
		return
	}
	rd, rendered, err := fs.current(h)
	if err != nil {
		h.writeError(w, r, err)
		h.reportFeed(name, errStatus(err), rendered)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/calendar; charset=utf-8")
	hd.Set("Vary", "Accept-Encoding")
	hd.Set("Cache-Control", "private, no-cache")
	etag, body := rd.etag, func() []byte { return rd.body }
	if acceptsGzip(r) {
		// A strong ETag names one representation: the gzip one has its own.
		etag, body = strings.TrimSuffix(rd.etag, `"`)+`-gz"`, func() []byte { return rd.gz.bytes(rd.body) }
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("ETag", etag)
	status := serveBytes(w, r, body, etag, rd.modified)
	h.reportFeed(name, status, rendered)
}

// reportFeed tells Options.OnFeed, if set, how a request for a feed was
// answered.
func (h *Handler) reportFeed(name string, status int, rendered bool) {
	if h.onFeed != nil {
		h.onFeed(name, status, rendered)
	}
}

// errStatus is the status writeError sends for err.
func errStatus(err error) int {
	var de *davError
	if errors.As(err, &de) {
		return de.status
	}
	return http.StatusInternalServerError
}

// serveBytes answers a GET or HEAD with body(), or 304 when the request's
// If-None-Match (or, without it, If-Modified-Since) matches (RFC 9110
// §13.1), without calling body. The body goes out in one write; feeds
// need no ranges. It returns the status sent.
func serveBytes(w http.ResponseWriter, r *http.Request, body func() []byte, etag string, modified time.Time) int {
	hd := w.Header()
	hd.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagListMatches(inm, etag) {
			w.WriteHeader(http.StatusNotModified)
			return http.StatusNotModified
		}
	} else if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !modified.Truncate(time.Second).After(ims) {
		w.WriteHeader(http.StatusNotModified)
		return http.StatusNotModified
	}
	b := body()
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
	return http.StatusOK
}

// etagListMatches reports whether an If-None-Match value names etag
// (weak comparison, as If-None-Match uses) or is "*".
func etagListMatches(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == strings.TrimPrefix(etag, "W/") {
			return true
		}
	}
	return false
}

// allows reports whether token opens the feed (nil fs: no feed). Every
// token is compared, in constant time, whatever matches.
func (fs *feedServer) allows(token string) bool {
	got := sha256.Sum256([]byte(token))
	if fs == nil {
		subtle.ConstantTimeCompare(got[:], dummyToken[:])
		return false
	}
	ok := 0
	for _, t := range fs.tokens {
		ok |= subtle.ConstantTimeCompare(got[:], t[:])
	}
	return ok == 1 && token != ""
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && !strings.Contains(strings.ReplaceAll(q, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// current returns the rendering for the feed's present state, building it
// if a member changed or the window moved; rendered tells whether this
// call built it.
func (fs *feedServer) current(h *Handler) (rd *rendering, rendered bool, err error) {
	version, err := feed.Version(h.store, fs.spec)
	if err != nil {
		return nil, false, err
	}
	now := h.now()
	key, day := version, ""
	windowed := fs.spec.Past != 0 || fs.spec.Future != 0
	if windowed {
		day = now.UTC().Format("2006-01-02")
		key += "@" + day // the window moves daily
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.cur != nil && fs.cur.key == key {
		return fs.cur, false, nil
	}
	at := now
	if windowed {
		if fs.anchorDay != day {
			fs.anchor, fs.anchorDay = now, day
		}
		at = fs.anchor
	}
	out, err := fs.r.Render(h.store, h.zones, fs.spec, at)
	if err != nil {
		return nil, false, err
	}
	rd = &rendering{key: key, body: out.Body, etag: `"` + hex.EncodeToString(out.Sum[:16]) + `"`, modified: now.UTC().Truncate(time.Second)}
	if fs.cur != nil && fs.cur.etag == rd.etag {
		rd.modified = fs.cur.modified // same bytes: same Last-Modified
	}
	fs.cur = rd
	return rd, true, nil
}

// logPath is a request path as the request log shows it. A client may
// put a token anywhere under /feeds/, so there only the name of a
// configured feed is kept ("/feeds/[token]/NAME.ics" or
// "/feeds/NAME.ics") and anything else is hidden; elsewhere (a
// mistyped feed URL) a segment that is a token is hidden.
func (h *Handler) logPath(p string) string {
	rest, ok := strings.CutPrefix(p, feedsPrefix)
	if !ok {
		if len(h.feeds) == 0 {
			return p
		}
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if h.isToken(strings.TrimSuffix(s, ".ics")) {
				segs[i] = "[token]"
			}
		}
		return strings.Join(segs, "/")
	}
	i := strings.LastIndexByte(rest, '/')
	last := rest[i+1:]
	if name, ok := strings.CutSuffix(last, ".ics"); !ok || h.feeds[name] == nil {
		return feedsPrefix + "[redacted]"
	}
	if i >= 0 {
		return feedsPrefix + "[token]/" + last
	}
	return feedsPrefix + last
}

// isToken reports whether s is a token of one of the feeds.
func (h *Handler) isToken(s string) bool {
	if s == "" || len(h.feeds) == 0 {
		return false
	}
	sum := sha256.Sum256([]byte(s))
	for _, fs := range h.feeds {
		if slices.Contains(fs.tokens, sum) {
			return true
		}
	}
	return false
}

// CalendarSpec is the feed of one whole calendar, as GET of the calendar
// collection serves it (and `calgate export USER/CALENDAR` writes it).
func CalendarSpec(user, cal string) feed.Spec {
	return feed.Spec{Name: cal, Members: []feed.Member{{User: user, Cal: cal}}}
}

// CalendarTitle is the X-WR-CALNAME of a calendar's own feed.
func CalendarTitle(c *cache.Calendar) string {
	if c.DisplayName != "" {
		return c.DisplayName
	}
	return c.ID
}
