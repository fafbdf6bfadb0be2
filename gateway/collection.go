package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

// GET of a calendar collection (DESIGN.md §2) returns the whole calendar
// as one iCalendar stream: the calendar's own feed (CalendarSpec, titled
// with its displayname), and for a merged calendar the feed of its
// members.
//
// Its ETag is the calendar's getctag (epoch and revision; for a merged
// calendar its members' vector), so a conditional GET (If-None-Match,
// If-Modified-Since, If-Match, If-Unmodified-Since) is answered from the
// calendar records alone, before anything is rendered. The ETag is the
// same for the gzip encoding, which is sent when the request accepts it
// (with Vary: Accept-Encoding, and without ranges), because clients
// compare it with the getctag they read.
//
// Renderings are cached per calendar, for the calendar's ctag and title,
// in a collectionCache: a GET after a change renders again through the
// calendar's feed.Renderer, which reads and transforms only the objects
// that changed. The gzip encoding is made once per rendering, by the
// first request that asks for it.

// The memory bound of the collection cache: at most
// collectionCacheCalendars calendars, and at most collectionCacheBytes in
// all (a renderer's Size, which includes its last rendering, plus the
// gzip encoding). The least recently read calendar goes first; a
// calendar that alone exceeds the budget is rendered for its request and
// not kept. A calendar of 10,000 events of 1 KB takes about 12 MB.
const (
	collectionCacheCalendars = 8
	collectionCacheBytes     = 128 << 20
)

// collectionCache holds the renderings of the calendar collections read
// recently.
type collectionCache struct {
	mu    sync.Mutex                // protects the fields below
	cals  map[[2]string]*collection // (user, calendar) -> its renderings
	bytes int64                     // the sum of the collections' size
	clock uint64                    // ticks at every use, for the LRU order
}

// collection is the cached rendering of one calendar collection.
type collection struct {
	key [2]string
	r   feed.Renderer // safe for concurrent use

	mu  sync.Mutex // serialises renderings; protects cur
	cur *collectionRendering

	// guarded by collectionCache.mu
	used uint64 // the clock at the last use
	size int64  // bytes accounted for it
}

// collectionRendering is one rendering of a calendar collection; read
// only once published in collection.cur.
type collectionRendering struct {
	key  string // the ctag and title it was made for
	body []byte
	gz   lazyGzip
}

func newCollectionCache() *collectionCache {
	return &collectionCache{cals: make(map[[2]string]*collection)}
}

// collections returns h's collection cache.
func (h *Handler) collections() *collectionCache { return h.collectionCache }

// getCollection answers GET and HEAD of a calendar collection.
func (h *Handler) getCollection(w http.ResponseWriter, req *request) error {
	cal, err := h.store.GetCalendar(req.user, req.t.cal)
	if errors.Is(err, cache.ErrNotFound) {
		h.collections().forget(req.user, req.t.cal)
	}
	if err != nil {
		return storeErr(err)
	}
	etag, modified := ctag(&cal), cal.Modified
	spec := CalendarSpec(req.user, cal.ID)
	if cal.Kind == kindMerged {
		v, err := h.loadMembers(cal)
		if err != nil {
			return storeErr(err)
		}
		etag, modified = v.ctag(), v.modified()
		spec.Members = nil
		for _, m := range cal.Members {
			spec.Members = append(spec.Members, feed.Member{User: req.user, Cal: m})
		}
	}
	spec.Title = CalendarTitle(&cal)
	hd := w.Header()
	hd.Set("ETag", `"`+etag+`"`)
	hd.Set("Content-Type", "text/calendar; charset=utf-8")
	hd.Set("Content-Disposition", fmt.Sprintf("inline; filename=%q", cal.ID+".ics"))
	hd.Set("Vary", "Accept-Encoding")
	switch precondition(req.Request, `"`+etag+`"`, modified) {
	case http.StatusNotModified:
		// As http.ServeContent: no Last-Modified beside an ETag.
		delete(hd, "Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return nil
	case http.StatusPreconditionFailed:
		setLastModified(hd, modified)
		w.WriteHeader(http.StatusPreconditionFailed)
		return nil
	}
	rd, err := h.collections().rendering(h, req.user, cal.ID, etag, spec)
	if err != nil {
		return storeErr(err)
	}
	body := rd.body
	switch {
	case acceptsGzip(req.Request):
		body = rd.gz.bytes(rd.body)
		h.collections().grow(req.user, cal.ID, rd, int64(len(body)))
		hd.Set("Content-Encoding", "gzip")
	case req.Header.Get("Range") != "":
		http.ServeContent(w, req.Request, "", modified, bytes.NewReader(body))
		return nil
	default:
		hd.Set("Accept-Ranges", "bytes") // as http.ServeContent
	}
	// The body goes out in one write (http.ServeContent copies it in
	// small pieces).
	setLastModified(hd, modified)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		w.Write(body)
	}
	return nil
}

// setLastModified sets Last-Modified as http.ServeContent does.
func setLastModified(hd http.Header, modified time.Time) {
	if !modified.IsZero() && !modified.Equal(time.Unix(0, 0)) {
		hd.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	}
}

// precondition evaluates the conditional headers of a GET or HEAD as
// http.ServeContent does (RFC 9110 §13.2.2), without a body: it returns
// 412 or 304 when the request stops there, and 0 when it gets the
// representation. etag is quoted.
func precondition(r *http.Request, etag string, modified time.Time) int {
	zero := modified.IsZero() || modified.Equal(time.Unix(0, 0))
	if im := r.Header.Get("If-Match"); im != "" {
		if !strongListMatches(im, etag) {
			return http.StatusPreconditionFailed
		}
	} else if t, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && !zero && modified.Truncate(time.Second).After(t) {
		return http.StatusPreconditionFailed
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagListMatches(inm, etag) {
			return http.StatusNotModified
		}
	} else if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !zero && !modified.Truncate(time.Second).After(t) {
		return http.StatusNotModified
	}
	return 0
}

// strongListMatches reports whether an If-Match value names etag with
// the strong comparison, or is "*".
func strongListMatches(list, etag string) bool {
	for _, t := range splitETags(list) {
		if t == "*" || t == etag && !isWeak(t) {
			return true
		}
	}
	return false
}

func isWeak(etag string) bool { return len(etag) >= 2 && etag[:2] == "W/" }

// splitETags splits a list of entity tags at the commas outside quotes.
func splitETags(list string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i <= len(list); i++ {
		if i == len(list) || list[i] == ',' && !quoted {
			if t := trimSpace(list[start:i]); t != "" {
				out = append(out, t)
			}
			start = i + 1
			continue
		}
		if list[i] == '"' {
			quoted = !quoted
		}
	}
	return out
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// rendering returns the rendering of calendar user/cal for version (its
// ctag) and spec, building it if the cached one is for another version
// or title.
func (c *collectionCache) rendering(h *Handler, user, cal, version string, spec feed.Spec) (*collectionRendering, error) {
	col := c.use(user, cal)
	key := version + "\x00" + spec.Title
	col.mu.Lock()
	if rd := col.cur; rd != nil && rd.key == key {
		col.mu.Unlock()
		return rd, nil
	}
	out, err := col.r.Render(h.store, h.zones, spec, h.now())
	if err != nil {
		col.mu.Unlock()
		c.drop(col)
		return nil, err
	}
	rd := &collectionRendering{key: key, body: out.Body}
	col.cur = rd
	size := col.r.Size()
	col.mu.Unlock()
	c.account(col, size)
	return rd, nil
}

// use returns the collection of user/cal, making it if needed, and marks
// it used.
func (c *collectionCache) use(user, cal string) *collection {
	k := [2]string{user, cal}
	c.mu.Lock()
	defer c.mu.Unlock()
	col := c.cals[k]
	if col == nil {
		col = &collection{key: k}
		c.cals[k] = col
	}
	c.clock++
	col.used = c.clock
	return col
}

// grow adds n bytes (a gzip encoding made) to the size of user/cal if
// rd is still its rendering.
func (c *collectionCache) grow(user, cal string, rd *collectionRendering, n int64) {
	c.mu.Lock()
	col := c.cals[[2]string{user, cal}]
	c.mu.Unlock()
	if col == nil {
		return
	}
	col.mu.Lock()
	size := col.r.Size()
	if col.cur == rd {
		size += n
	}
	col.mu.Unlock()
	c.account(col, size)
}

// drop removes col from the cache.
func (c *collectionCache) drop(col *collection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cals[col.key] == col {
		delete(c.cals, col.key)
		c.bytes -= col.size
	}
}

// forget removes calendar user/cal from the cache.
func (c *collectionCache) forget(user, cal string) {
	c.mu.Lock()
	col := c.cals[[2]string{user, cal}]
	c.mu.Unlock()
	if col != nil {
		c.drop(col)
	}
}

// account sets the size of col and evicts the least recently used
// collections until the cache is within its bounds.
func (c *collectionCache) account(col *collection, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cals[col.key] != col {
		return // evicted meanwhile
	}
	c.bytes += size - col.size
	col.size = size
	for c.bytes > collectionCacheBytes || len(c.cals) > collectionCacheCalendars {
		var lru *collection
		for _, x := range c.cals {
			if lru == nil || x.used < lru.used {
				lru = x
			}
		}
		delete(c.cals, lru.key)
		c.bytes -= lru.size
	}
}
