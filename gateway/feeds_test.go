package gateway

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// feedEnv is a gateway with feeds over alice's personal calendar, with
// every request logged at debug level into logs.
func feedEnv(t *testing.T, feeds int, tokensPer int) (*env, [][]string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	tokens := make([][]string, feeds)
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for i := range feeds {
			for range tokensPer {
				tokens[i] = append(tokens[i], token(t))
			}
			o.Feeds = append(o.Feeds, Feed{
				Spec:   feed.Spec{Name: fmt.Sprintf("feed%d", i), Members: []feed.Member{{User: "alice", Cal: "personal"}}},
				Tokens: tokens[i],
			})
		}
	})
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/a.ics", event("a", "Alpha", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	return e, tokens, logs
}

func getFeed(t *testing.T, e *env, path string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// The default transport would ask for gzip and decompress by itself.
	tr := &http.Transport{DisableCompression: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestFeedTokens(t *testing.T) {
	e, tokens, logs := feedEnv(t, 5, 5)
	notFound := readAll(t, getFeed(t, e, "/feeds/nope.ics?token="+tokens[0][0]))
	for f := range 5 {
		for g := range 5 {
			for _, tok := range tokens[g] {
				for _, path := range []string{
					fmt.Sprintf("/feeds/feed%d.ics?token=%s", f, tok),
					fmt.Sprintf("/feeds/%s/feed%d.ics", tok, f),
				} {
					resp := getFeed(t, e, path)
					body := readAll(t, resp)
					switch {
					case f == g && resp.StatusCode != http.StatusOK:
						t.Fatalf("feed %d with its own token: %d", f, resp.StatusCode)
					case f != g && (resp.StatusCode != http.StatusNotFound || body != notFound):
						t.Fatalf("feed %d with feed %d's token: %d (body differs from an unknown feed: %v)", f, g, resp.StatusCode, body != notFound)
					}
				}
			}
		}
	}
	for i := range 1000 {
		tok := token(t)
		resp := getFeed(t, e, fmt.Sprintf("/feeds/feed%d.ics?token=%s", i%5, tok))
		if body := readAll(t, resp); resp.StatusCode != http.StatusNotFound || body != notFound {
			t.Fatalf("random token %d: %d", i, resp.StatusCode)
		}
	}
	for _, path := range []string{"/feeds/feed0.ics", "/feeds/feed0.ics?token=", "/feeds//feed0.ics"} {
		if resp := getFeed(t, e, path); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "/feeds/") {
		t.Fatal("feed requests were not logged at all; the check below would be empty")
	}
	for _, ts := range tokens {
		for _, tok := range ts {
			if strings.Contains(out, tok) {
				t.Fatalf("token %s appears in the log", tok)
			}
		}
	}
}

func TestFeedCachingHeaders(t *testing.T) {
	e, tokens, _ := feedEnv(t, 1, 1)
	path := "/feeds/feed0.ics?token=" + tokens[0][0]
	resp := getFeed(t, e, path)
	wantStatus(t, resp, http.StatusOK)
	body := readAll(t, resp)
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if resp.Header.Get("Content-Type") != "text/calendar; charset=utf-8" || !strings.HasPrefix(etag, `"`) || lastMod == "" {
		t.Fatalf("headers: %v", resp.Header)
	}
	if !strings.Contains(body, "SUMMARY:Alpha") || !strings.Contains(body, "\r\n") {
		t.Fatalf("feed body:\n%s", body)
	}
	wantStatus(t, getFeed(t, e, path, "If-None-Match", etag), http.StatusNotModified)
	wantStatus(t, getFeed(t, e, path, "If-Modified-Since", lastMod), http.StatusNotModified)

	// gzip: its own ETag, and the same bytes once decompressed.
	gz := getFeed(t, e, path, "Accept-Encoding", "gzip")
	wantStatus(t, gz, http.StatusOK)
	if gz.Header.Get("Content-Encoding") != "gzip" || gz.Header.Get("ETag") == etag {
		t.Fatalf("gzip headers: %v", gz.Header)
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); string(plain) != body {
		t.Fatal("gzip body differs from the plain one")
	}
	wantStatus(t, getFeed(t, e, path, "Accept-Encoding", "gzip", "If-None-Match", gz.Header.Get("ETag")), http.StatusNotModified)

	// HEAD: headers, no body.
	req, _ := http.NewRequest("HEAD", e.srv.URL+path, nil)
	head, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.Header.Get("ETag") != etag {
		t.Fatalf("HEAD: %d %v", head.StatusCode, head.Header)
	}

	// A write to a member changes the ETag; one elsewhere does not.
	wantStatus(t, e.do("bob", "PUT", "/dav/calendars/bob/personal/b.ics", event("b", "Bob", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	if again := getFeed(t, e, path, "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
		t.Fatalf("an unrelated write changed the feed: %d", again.StatusCode)
	}
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/c.ics", event("c", "Gamma", "20240102T100000Z", "20240102T110000Z"), ct, icsType), http.StatusCreated)
	changed := getFeed(t, e, path, "If-None-Match", etag)
	wantStatus(t, changed, http.StatusOK)
	if changed.Header.Get("ETag") == etag || !strings.Contains(readAll(t, changed), "SUMMARY:Gamma") {
		t.Fatal("a member write did not change the feed")
	}
	// Methods other than GET and HEAD.
	req, _ = http.NewRequest("PUT", e.srv.URL+path, strings.NewReader("x"))
	put, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	put.Body.Close()
	if put.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT on a feed: %d", put.StatusCode)
	}
}

// TestFeedWithCurl checks ETag/304, gzip and HEAD with a real HTTP client.
func TestFeedWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is missing: apt-get install curl")
		}
		t.Skip("curl is missing")
	}
	e, tokens, _ := feedEnv(t, 1, 1)
	url := e.srv.URL + "/feeds/" + tokens[0][0] + "/feed0.ics"
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	headers := run("-D", "-", "-o", os.DevNull, url)
	etag := ""
	for _, l := range strings.Split(headers, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "etag") {
			etag = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(headers, "HTTP/1.1 200") || etag == "" {
		t.Fatalf("curl GET headers:\n%s", headers)
	}
	if code := run("-o", os.DevNull, "-w", "%{http_code}", "-H", "If-None-Match: "+etag, url); code != "304" {
		t.Fatalf("curl conditional GET: %s", code)
	}
	if body := run("--compressed", url); !strings.Contains(body, "BEGIN:VCALENDAR") {
		t.Fatalf("curl --compressed body:\n%s", body)
	}
	if enc := run("-H", "Accept-Encoding: gzip", "-o", os.DevNull, "-w", "%{content_type} %{size_download}", url); !strings.HasPrefix(enc, "text/calendar") {
		t.Fatalf("curl gzip: %s", enc)
	}
	if head := run("-I", url); !strings.HasPrefix(head, "HTTP/1.1 200") || !strings.Contains(strings.ToLower(head), "etag:") {
		t.Fatalf("curl HEAD:\n%s", head)
	}
}

// TestFeedIncremental checks a windowed busy feed over two members
// through a series of changes: every rebuild has feed.Render's bytes for
// the window of the day's first rendering, the window moves with the
// day, the gzip encoding is made only when asked for and is of the
// current rendering, and a 304 renders nothing.
func TestFeedIncremental(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Date(2024, 1, 10, 8, 0, 0, 0, time.UTC)
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	setNow := func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		now = t
	}
	var renders []bool
	tok := "0123456789abcdef0123456789abcdef"
	spec := feed.Spec{Name: "busy", Busy: true, Past: 24 * time.Hour, Future: 48 * time.Hour,
		Members: []feed.Member{{User: "alice", Cal: "personal"}, {User: "alice", Cal: "work", Prefix: "[W] "}}}
	e := newEnv(t, func(o *Options) {
		o.Now = clock
		o.Feeds = []Feed{{Spec: spec, Tokens: []string{tok}}}
		o.OnFeed = func(_ string, _ int, rendered bool) {
			mu.Lock()
			defer mu.Unlock()
			renders = append(renders, rendered)
		}
	})
	if _, err := e.store.CreateCalendar(cache.Calendar{User: "alice", ID: "work", Components: []string{"VEVENT"}}); err != nil {
		t.Fatal(err)
	}
	lastRendered := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return renders[len(renders)-1]
	}
	fs := e.h.feeds["busy"]
	gzipMade := func() bool {
		fs.mu.Lock()
		rd := fs.cur
		fs.mu.Unlock()
		return rd.gz.made()
	}
	path := "/feeds/busy.ics?token=" + tok
	// day i, hour h as an iCalendar UTC time
	at := func(day, hour int) string {
		return time.Date(2024, 1, day, hour, 0, 0, 0, time.UTC).Format("20060102T150405Z")
	}
	check := func(anchor time.Time) (string, []byte) {
		t.Helper()
		resp := getFeed(t, e, path)
		wantStatus(t, resp, http.StatusOK)
		body := []byte(readAll(t, resp))
		want, err := feed.Render(e.store, nil, spec, anchor)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("feed differs from feed.Render at %s:\n%s\nwant:\n%s", anchor, body, want)
		}
		return resp.Header.Get("ETag"), body
	}
	put := func(cal, name, uid, summary, start, end string) {
		t.Helper()
		resp := e.do("alice", "PUT", "/dav/calendars/alice/"+cal+"/"+name, event(uid, summary, start, end), ct, icsType)
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PUT %s: %d", name, resp.StatusCode)
		}
	}
	for i := range 6 {
		put("personal", fmt.Sprintf("p%d.ics", i), fmt.Sprint("p", i), "Private", at(9+i, 10), at(9+i, 11))
		put("work", fmt.Sprintf("w%d.ics", i), fmt.Sprint("w", i), "Work", at(8+i, 23), at(9+i, 1))
	}
	morning := now
	etag, _ := check(morning)
	if gzipMade() {
		t.Fatal("a plain GET made the gzip encoding")
	}
	if wantStatus(t, getFeed(t, e, path, "If-None-Match", etag), http.StatusNotModified); lastRendered() {
		t.Fatal("a 304 rendered the feed")
	}

	// Later the same day: a change is rendered with the morning's window.
	setNow(morning.Add(10 * time.Hour))
	put("work", "w2.ics", "w2", "Moved", at(12, 17), at(12, 18))
	put("personal", "w1.ics", "w1", "Copy", at(11, 17), at(11, 18)) // the UID of a work event
	etag2, body := check(morning)
	if etag2 == etag || !lastRendered() {
		t.Fatalf("a change was not rendered (ETag %s)", etag2)
	}
	gz := getFeed(t, e, path, "Accept-Encoding", "gzip")
	wantStatus(t, gz, http.StatusOK)
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, body) {
		t.Fatal("the gzip body is not the current rendering")
	}
	if lastRendered() || !gzipMade() {
		t.Fatal("a gzip GET of an unchanged feed rendered it, or did not keep its encoding")
	}
	if e.do("alice", "DELETE", "/dav/calendars/alice/personal/p1.ics", "").StatusCode != http.StatusNoContent {
		t.Fatal("DELETE failed")
	}
	check(morning)

	// The next day, the window moves.
	setNow(morning.Add(26 * time.Hour))
	check(morning.Add(26 * time.Hour))
	setNow(morning.Add(30 * time.Hour))
	put("personal", "late.ics", "late", "Late", at(13, 9), at(13, 10))
	check(morning.Add(26 * time.Hour))
}
