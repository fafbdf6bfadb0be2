package gateway

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

// getRaw sends a GET (or HEAD) as alice without the transport's own gzip
// handling.
func getRaw(t *testing.T, e *env, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", testPassword)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cachedCollection reports whether h's collection cache holds user/cal.
func cachedCollection(h *Handler, user, cal string) bool {
	c := h.collections()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cals[[2]string{user, cal}] != nil
}

// wantRendered checks that a collection GET body is what feed.Render
// makes of the calendar now.
func wantRendered(t *testing.T, e *env, spec feed.Spec, got []byte) {
	t.Helper()
	want, err := feed.Render(e.store, nil, spec, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("collection GET differs from feed.Render:\n%s\nwant:\n%s", got, want)
	}
}

func TestCollectionGet(t *testing.T) {
	e := newEnv(t)
	const path = "/dav/calendars/alice/personal/"
	spec := CalendarSpec("alice", "personal")
	spec.Title = "Personal"
	for i := range 20 {
		wantStatus(t, e.do("alice", "PUT", fmt.Sprintf("%se%d.ics", path, i), event(fmt.Sprint("e", i), fmt.Sprint("Event ", i),
			"20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	}
	cal, err := e.store.GetCalendar("alice", "personal")
	if err != nil {
		t.Fatal(err)
	}
	etag := `"` + ctag(&cal) + `"`

	// Conditional GETs are answered before anything is rendered.
	for _, hdr := range [][]string{
		{"If-None-Match", etag},
		{"If-None-Match", `"other", W/` + etag},
		{"If-None-Match", "*"},
		{"If-Modified-Since", cal.Modified.Add(time.Second).UTC().Format(http.TimeFormat)},
	} {
		resp, body := getRaw(t, e, "GET", path, hdr...)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
			t.Fatalf("%v: %d, ETag %q, %d bytes", hdr, resp.StatusCode, resp.Header.Get("ETag"), len(body))
		}
	}
	for _, hdr := range [][]string{
		{"If-Match", `"other"`},
		{"If-Match", "W/" + etag},
		{"If-Unmodified-Since", cal.Modified.Add(-time.Hour).UTC().Format(http.TimeFormat)},
	} {
		if resp, _ := getRaw(t, e, "GET", path, hdr...); resp.StatusCode != http.StatusPreconditionFailed {
			t.Fatalf("%v: %d, want 412", hdr, resp.StatusCode)
		}
	}
	if cachedCollection(e.h, "alice", "personal") {
		t.Fatal("a conditional GET rendered the collection")
	}

	resp, body := getRaw(t, e, "GET", path, "If-None-Match", `"stale"`, "If-Match", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != etag || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("GET: %d, ETag %q (ctag %s), encoding %q", resp.StatusCode, resp.Header.Get("ETag"), etag, resp.Header.Get("Content-Encoding"))
	}
	wantRendered(t, e, spec, body)
	if !cachedCollection(e.h, "alice", "personal") {
		t.Fatal("the rendering was not cached")
	}

	// gzip: the same ETag (the ctag clients compare) and the same bytes.
	resp, gz := getRaw(t, e, "GET", path, "Accept-Encoding", "gzip")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("ETag") != etag ||
		resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip GET: %d, encoding %q, ETag %q, Vary %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"), resp.Header.Get("Vary"))
	}
	if !bytes.Equal(gunzip(t, gz), body) {
		t.Fatal("the gzip body differs")
	}
	head, _ := getRaw(t, e, "HEAD", path, "Accept-Encoding", "gzip")
	if head.StatusCode != http.StatusOK || head.ContentLength != int64(len(gz)) {
		t.Fatalf("HEAD with gzip: %d, Content-Length %d, want %d", head.StatusCode, head.ContentLength, len(gz))
	}
	if resp, _ := getRaw(t, e, "GET", path, "Accept-Encoding", "gzip", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("gzip conditional GET: %d", resp.StatusCode)
	}
	// Ranges still work on the plain body.
	resp, part := getRaw(t, e, "GET", path, "Range", "bytes=0-14")
	if resp.StatusCode != http.StatusPartialContent || string(part) != "BEGIN:VCALENDAR" {
		t.Fatalf("range: %d %q", resp.StatusCode, part)
	}

	// A change shows at once, with a new ETag; the old one no longer
	// gives 304.
	wantStatus(t, e.do("alice", "PUT", path+"e3.ics", event("e3", "Changed", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusNoContent)
	wantStatus(t, e.do("alice", "DELETE", path+"e4.ics", ""), http.StatusNoContent)
	resp, body = getRaw(t, e, "GET", path, "If-None-Match", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag || !bytes.Contains(body, []byte("SUMMARY:Changed")) || bytes.Contains(body, []byte("UID:e4\r\n")) {
		t.Fatalf("after a change: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	wantRendered(t, e, spec, body)
	resp, gz = getRaw(t, e, "GET", path, "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(gunzip(t, gz), body) {
		t.Fatal("the gzip body is of an older rendering")
	}

	// A new displayname changes the title, although not the ctag.
	patch := `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Private, mine</d:displayname></d:prop></d:set></d:propertyupdate>`
	wantStatus(t, e.do("alice", "PROPPATCH", path, patch, ct, xmlType), http.StatusMultiStatus)
	_, body = getRaw(t, e, "GET", path)
	spec.Title = "Private, mine"
	wantRendered(t, e, spec, body)
}

func TestCollectionGetMerged(t *testing.T) {
	e := newEnv(t)
	for _, c := range []cache.Calendar{
		{User: "alice", ID: "work", Components: []string{"VEVENT"}},
		{User: "alice", ID: "all", DisplayName: "Everything", Kind: kindMerged, Members: []string{"personal", "work"}},
	} {
		if _, err := e.store.CreateCalendar(c); err != nil {
			t.Fatal(err)
		}
	}
	put := func(cal, name, uid, summary string, status int) {
		t.Helper()
		wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/"+cal+"/"+name, event(uid, summary, "20240101T100000Z", "20240101T110000Z"), ct, icsType), status)
	}
	put("personal", "p.ics", "p", "Personal", http.StatusCreated)
	put("work", "w.ics", "w", "Work", http.StatusCreated)
	put("work", "dup.ics", "dup", "Work copy", http.StatusCreated)
	spec := feed.Spec{Name: "all", Title: "Everything", Members: []feed.Member{{User: "alice", Cal: "personal"}, {User: "alice", Cal: "work"}}}
	const path = "/dav/calendars/alice/all/"
	resp, body := getRaw(t, e, "GET", path)
	wantStatus(t, resp, http.StatusOK)
	wantRendered(t, e, spec, body)
	etag := resp.Header.Get("ETag")
	if r, _ := getRaw(t, e, "GET", path, "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Fatalf("merged conditional GET: %d", r.StatusCode)
	}
	// A change in a member is a new rendering.
	put("personal", "dup.ics", "dup", "Personal copy", http.StatusCreated)
	resp, body = getRaw(t, e, "GET", path, "If-None-Match", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag {
		t.Fatalf("after a member changed: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	wantRendered(t, e, spec, body)
}

// TestCollectionCacheBound reads more calendars than the cache keeps:
// the least recently read ones are dropped, the bound holds.
func TestCollectionCacheBound(t *testing.T) {
	e := newEnv(t)
	n := collectionCacheCalendars + 3
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		if _, err := e.store.CreateCalendar(cache.Calendar{User: "alice", ID: id, Components: []string{"VEVENT"}}); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/"+id+"/a.ics", event("a"+id, id, "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	}
	for i := range n {
		resp, body := getRaw(t, e, "GET", fmt.Sprintf("/dav/calendars/alice/c%d/", i))
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, fmt.Appendf(nil, "SUMMARY:c%d\r\n", i)) {
			t.Fatalf("c%d: %d", i, resp.StatusCode)
		}
		if i == 0 {
			getRaw(t, e, "GET", "/dav/calendars/alice/c0/", "Accept-Encoding", "gzip")
		}
	}
	c := e.h.collections()
	c.mu.Lock()
	kept, size := len(c.cals), c.bytes
	var sum int64
	for _, col := range c.cals {
		sum += col.size
	}
	c.mu.Unlock()
	if kept != collectionCacheCalendars || size != sum || size <= 0 || size > collectionCacheBytes {
		t.Fatalf("cache: %d calendars, %d bytes (sum %d)", kept, size, sum)
	}
	for i := range n {
		if want := i >= n-collectionCacheCalendars; cachedCollection(e.h, "alice", fmt.Sprintf("c%d", i)) != want {
			t.Errorf("c%d cached: %v, want %v", i, !want, want)
		}
	}
	// A deleted calendar is a 404, not its old rendering.
	if err := e.store.DeleteCalendar("alice", fmt.Sprintf("c%d", n-1)); err != nil {
		t.Fatal(err)
	}
	if resp, _ := getRaw(t, e, "GET", fmt.Sprintf("/dav/calendars/alice/c%d/", n-1)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted calendar: %d", resp.StatusCode)
	}
	if cachedCollection(e.h, "alice", fmt.Sprintf("c%d", n-1)) {
		t.Fatal("a deleted calendar stays in the cache")
	}
}

// TestCollectionGetConcurrent reads a calendar while it changes; run
// with -race. The last reading is the calendar's final state.
func TestCollectionGetConcurrent(t *testing.T) {
	e := newEnv(t)
	const path = "/dav/calendars/alice/personal/"
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				enc := ""
				if g%2 == 1 {
					enc = "gzip"
				}
				resp, _ := getRaw(t, e, "GET", path, "Accept-Encoding", enc)
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET: %d", resp.StatusCode)
				}
			}
		}()
	}
	for i := range 30 {
		status := http.StatusCreated
		if i >= 7 {
			status = http.StatusNoContent
		}
		wantStatus(t, e.do("alice", "PUT", fmt.Sprintf("%sx%d.ics", path, i%7), event(fmt.Sprint("x", i%7), fmt.Sprint("Version ", i), "20240101T100000Z", "20240101T110000Z"), ct, icsType), status)
	}
	wg.Wait()
	_, body := getRaw(t, e, "GET", path)
	spec := CalendarSpec("alice", "personal")
	spec.Title = "Personal"
	wantRendered(t, e, spec, body)
}
