package upstream

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/calgate/calgate/internal/fixtures"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// icsFixtureDir is the shared iCalendar corpus.
func icsFixtureDir(t *testing.T) string { return fixtures.Dir(t) }

// icsFeedServer is a real HTTP server on 127.0.0.1 that serves one feed
// with a strong ETag and Last-Modified through http.ServeContent, which
// answers If-None-Match and If-Modified-Since with 304.
type icsFeedServer struct {
	*httptest.Server

	mu          sync.Mutex // protects the fields below
	body        []byte
	modified    time.Time
	status      int // non-zero: answer this status (with an HTML body) instead
	retryAfter  string
	contentType string
	requests    int
	conditional int // requests with If-None-Match or If-Modified-Since
	notModified int // 304 answers
}

func newICSFeedServer(t *testing.T, body []byte) *icsFeedServer {
	s := &icsFeedServer{body: body, modified: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), contentType: "text/calendar; charset=utf-8"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *icsFeedServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, mod, status, ra, ct := s.body, s.modified, s.status, s.retryAfter, s.contentType
	s.requests++
	if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
		s.conditional++
	}
	s.mu.Unlock()
	if status != 0 {
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		http.Error(w, "<html><body>trouble</body></html>", status)
		return
	}
	sum := sha256.Sum256(body)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	w.Header().Set("Content-Type", ct)
	rec := &statusRecorder{ResponseWriter: w}
	http.ServeContent(rec, r, "feed.ics", mod, bytes.NewReader(body))
	if rec.code == http.StatusNotModified {
		s.mu.Lock()
		s.notModified++
		s.mu.Unlock()
	}
}

// set replaces the feed, one second later than the last version.
func (s *icsFeedServer) set(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
	s.modified = s.modified.Add(time.Second)
	s.status = 0
}

func (s *icsFeedServer) fail(status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.retryAfter = status, retryAfter
}

func (s *icsFeedServer) counts() (requests, conditional, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.conditional, s.notModified
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// icsEnv is a real store with one calendar of Kind "ics" and a source.
type icsEnv struct {
	store *cache.Store
	src   *ICSSource
}

func newICSEnv(t *testing.T, feedURL string, maxBytes int64) *icsEnv {
	t.Helper()
	store, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateCalendar(cache.Calendar{User: "alice", ID: "feed", Kind: "ics", Source: "feed-src"}); err != nil {
		t.Fatal(err)
	}
	src := NewICS(ICSOptions{
		ID: "feed-src", User: "alice", Calendar: "feed", URL: feedURL,
		Client:   NewHTTPClient(HTTPOptions{Timeout: 30 * time.Second}),
		Store:    store,
		MaxBytes: maxBytes,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	return &icsEnv{store: store, src: src}
}

func (e *icsEnv) revision(t *testing.T) uint64 {
	t.Helper()
	c, err := e.store.GetCalendar("alice", "feed")
	if err != nil {
		t.Fatal(err)
	}
	return c.Revision
}

func (e *icsEnv) objects(t *testing.T) map[string]cache.Object {
	t.Helper()
	objs, err := e.store.SelectObjects("alice", "feed", func(cache.Object) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]cache.Object, len(objs))
	for _, o := range objs {
		m[o.UID] = o
	}
	return m
}

var icsUIDLine = regexp.MustCompile(`(?m)^UID:(.*?)\r?$`)

// icsUIDs returns the distinct UIDs of a feed.
func icsUIDs(data []byte) map[string]bool {
	m := make(map[string]bool)
	for _, sm := range icsUIDLine.FindAllSubmatch(data, -1) {
		m[string(sm[1])] = true
	}
	return m
}

func TestICSSyncConditionalAndDiff(t *testing.T) {
	feed, err := os.ReadFile(filepath.Join(icsFixtureDir(t), "feeds", "google-public-holidays.ics"))
	if err != nil {
		t.Fatal(err)
	}
	uids := icsUIDs(feed)
	n := len(uids)
	if n < 100 {
		t.Fatalf("only %d UIDs in the fixture", n)
	}
	srv := newICSFeedServer(t, feed)
	env := newICSEnv(t, srv.URL+"/holidays.ics", 0)
	ctx := context.Background()

	// 1. First sync imports every UID.
	res, err := env.src.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Put != n || res.Deleted != 0 || res.NotModified {
		t.Fatalf("first sync %+v, want %d puts", res, n)
	}
	objs := env.objects(t)
	if len(objs) != n {
		t.Fatalf("%d objects stored, want %d", len(objs), n)
	}
	for uid := range uids {
		if _, ok := objs[uid]; !ok {
			t.Errorf("UID %s not stored", uid)
		}
	}
	rev := env.revision(t)
	st, err := env.store.GetSource("feed-src")
	if err != nil || st.ETag == "" || st.LastModified == "" || st.LastSuccess.IsZero() {
		t.Fatalf("source state %+v, %v; want the ETag, Last-Modified and success recorded", st, err)
	}

	// 2. The second poll is conditional and answered 304: nothing changes.
	res, err = env.src.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, cond, nm := srv.counts()
	if !res.NotModified || cond != 1 || nm != 1 {
		t.Fatalf("second sync %+v; server saw %d conditional requests and sent %d 304s, want 1 and 1", res, cond, nm)
	}
	if r := env.revision(t); r != rev {
		t.Errorf("revision %d after a 304, want %d", r, rev)
	}
	if st2, _ := env.store.GetSource("feed-src"); !st2.LastSuccess.After(st.LastSuccess) && !st2.LastSuccess.Equal(st.LastSuccess) {
		t.Errorf("LastSuccess went back: %v, %v", st.LastSuccess, st2.LastSuccess)
	}

	// 3. A new version: every DTSTAMP changes, one SUMMARY is edited and
	// one event is removed. Only those 2 objects change.
	events := regexp.MustCompile(`(?s)BEGIN:VEVENT\r\n.*?END:VEVENT\r\n`).FindAllIndex(feed, -1)
	if len(events) != n {
		t.Fatalf("%d VEVENTs, want %d", len(events), n)
	}
	removed := icsUIDLine.FindSubmatch(feed[events[3][0]:events[3][1]])[1]
	edited := icsUIDLine.FindSubmatch(feed[events[7][0]:events[7][1]])[1]
	var next []byte
	next = append(next, feed[:events[3][0]]...)
	next = append(next, feed[events[3][1]:]...)
	next = regexp.MustCompile(`(?m)^DTSTAMP:\d{8}T\d{6}Z`).ReplaceAll(next, []byte("DTSTAMP:20300101T000000Z"))
	var loc []int
	for _, l := range regexp.MustCompile(`(?s)BEGIN:VEVENT\r\n.*?END:VEVENT\r\n`).FindAllIndex(next, -1) {
		if bytes.Contains(next[l[0]:l[1]], []byte("UID:"+string(edited)+"\r\n")) {
			loc = l
		}
	}
	if loc == nil {
		t.Fatal("edited event not found")
	}
	block := regexp.MustCompile(`(?m)^SUMMARY:(.*)\r$`).ReplaceAll(next[loc[0]:loc[1]], []byte("SUMMARY:Moved by the test\r"))
	next = append(append(append([]byte(nil), next[:loc[0]]...), block...), next[loc[1]:]...)
	srv.set(next)

	res, err = env.src.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Put != 1 || res.Deleted != 1 || res.Unchanged != n-2 || res.NotModified {
		t.Errorf("third sync %+v, want 1 put, 1 delete, %d unchanged", res, n-2)
	}
	if r := env.revision(t); r != rev+2 {
		t.Errorf("revision %d, want %d (one put, one delete)", r, rev+2)
	}
	objs = env.objects(t)
	if _, ok := objs[string(removed)]; ok || len(objs) != n-1 {
		t.Errorf("%d objects, removed %s still there: %v", len(objs), removed, ok)
	}
	if o := objs[string(edited)]; !bytes.Contains(o.Data, []byte("SUMMARY:Moved by the test\r\n")) {
		t.Errorf("edited object not updated:\n%s", o.Data)
	}

	// 4. And the next poll is a 304 again.
	res, err = env.src.Sync(ctx)
	if err != nil || !res.NotModified {
		t.Errorf("fourth sync %+v, %v; want not modified", res, err)
	}
	if r := env.revision(t); r != rev+2 {
		t.Errorf("revision moved to %d on a 304", r)
	}
}

func TestICSErrorsKeepThePreviousCopy(t *testing.T) {
	feed, err := os.ReadFile(filepath.Join(icsFixtureDir(t), "feeds", "google-public-holidays.ics"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newICSFeedServer(t, feed)
	env := newICSEnv(t, srv.URL+"/feed.ics", 0)
	ctx := context.Background()
	if _, err := env.src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	rev, want := env.revision(t), len(env.objects(t))

	check := func(t *testing.T, err error, unavailable bool) {
		t.Helper()
		if err == nil {
			t.Fatal("Sync succeeded")
		}
		if errors.Is(err, ErrUnavailable) != unavailable {
			t.Errorf("error %v: unavailable %v, want %v", err, !unavailable, unavailable)
		}
		if r, n := env.revision(t), len(env.objects(t)); r != rev || n != want {
			t.Errorf("revision %d with %d objects after %v; want %d with %d", r, n, err, rev, want)
		}
	}
	t.Run("HTML error page", func(t *testing.T) {
		srv.set([]byte("<!DOCTYPE html>\n<html><body><h1>Sign in</h1></body></html>\n"))
		srv.mu.Lock()
		srv.contentType = "text/html"
		srv.mu.Unlock()
		_, err := env.src.Sync(ctx)
		check(t, err, false)
		if !errors.Is(err, ical.ErrInvalidData) {
			t.Errorf("error %v, want ical.ErrInvalidData", err)
		}
	})
	t.Run("500", func(t *testing.T) {
		srv.fail(http.StatusInternalServerError, "")
		_, err := env.src.Sync(ctx)
		check(t, err, true)
	})
	t.Run("503 with Retry-After", func(t *testing.T) {
		srv.fail(http.StatusServiceUnavailable, "120")
		_, err := env.src.Sync(ctx)
		check(t, err, true)
		var ra *RetryAfterError
		if !errors.As(err, &ra) || ra.After != 2*time.Minute {
			t.Errorf("error %v, want a RetryAfterError of 2m", err)
		}
	})
	t.Run("404", func(t *testing.T) {
		srv.fail(http.StatusNotFound, "")
		_, err := env.src.Sync(ctx)
		check(t, err, false)
	})
	t.Run("network", func(t *testing.T) {
		dead := newICSEnv(t, "http://127.0.0.1:1/feed.ics", 0)
		_, err := dead.src.Sync(ctx)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("error %v, want ErrUnavailable", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		srv.set(feed)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := env.src.Sync(cctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

func TestICSSizeCap(t *testing.T) {
	feed, err := os.ReadFile(filepath.Join(icsFixtureDir(t), "feeds", "google-public-holidays.ics"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("plain body over MaxBytes", func(t *testing.T) {
		srv := newICSFeedServer(t, feed)
		env := newICSEnv(t, srv.URL, int64(len(feed)-1))
		_, err := env.src.Sync(context.Background())
		if err == nil || !strings.Contains(err.Error(), "larger than") || errors.Is(err, ErrUnavailable) {
			t.Fatalf("error %v, want a permanent size error", err)
		}
		if n := len(env.objects(t)); n != 0 {
			t.Errorf("%d objects stored", n)
		}
	})
	t.Run("exactly MaxBytes", func(t *testing.T) {
		srv := newICSFeedServer(t, feed)
		env := newICSEnv(t, srv.URL, int64(len(feed)))
		if _, err := env.src.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	// A gzip bomb cannot be had from a real feed server: this is an
	// in-process server that answers every request with 32 MiB of
	// calendar text gzip-compressed to a few dozen KiB.
	t.Run("gzip bomb", func(t *testing.T) {
		var zbuf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestSpeed)
		zw.Write([]byte("BEGIN:VCALENDAR\r\n"))
		line := "X-PADDING:" + strings.Repeat("A", 1000) + "\r\n"
		block := []byte(strings.Repeat(line, 1024)) // about 1 MiB
		for range 32 {
			zw.Write(block)
		}
		zw.Write([]byte("END:VCALENDAR\r\n"))
		zw.Close()
		bomb := zbuf.Bytes()
		var askedGzip bool
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			askedGzip = strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
			mu.Unlock()
			w.Header().Set("Content-Type", "text/calendar")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(bomb)
		}))
		defer srv.Close()
		const max = 1 << 20
		env := newICSEnv(t, srv.URL, max)
		_, err := env.src.Sync(context.Background())
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("larger than %d bytes", max)) {
			t.Fatalf("error %v, want the %d-byte cap on the decoded body", err, max)
		}
		mu.Lock()
		defer mu.Unlock()
		if !askedGzip {
			t.Error("the request did not accept gzip")
		}
	})
	t.Run("gzip feed", func(t *testing.T) {
		var zbuf bytes.Buffer
		zw := gzip.NewWriter(&zbuf)
		zw.Write(feed)
		zw.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(zbuf.Bytes())
		}))
		defer srv.Close()
		env := newICSEnv(t, srv.URL, 0)
		res, err := env.src.Sync(context.Background())
		if err != nil || res.Put != len(icsUIDs(feed)) {
			t.Fatalf("sync %+v, %v", res, err)
		}
	})
}

func TestICSMassDeleteGuard(t *testing.T) {
	feed, err := os.ReadFile(filepath.Join(icsFixtureDir(t), "feeds", "google-public-holidays.ics"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newICSFeedServer(t, feed)
	env := newICSEnv(t, srv.URL, 0)
	ctx := context.Background()
	if _, err := env.src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(env.objects(t))
	srv.set([]byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nEND:VCALENDAR\r\n"))

	res, err := env.src.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.HeldDeletes != n || res.Deleted != 0 || len(env.objects(t)) != n {
		t.Fatalf("sync %+v with %d objects left; want %d deletions held", res, len(env.objects(t)), n)
	}
	if st, _ := env.store.GetSource("feed-src"); st.HeldDeletes != n {
		t.Errorf("HeldDeletes %d in the state", st.HeldDeletes)
	}
	_, condBefore, _ := srv.counts()
	res, err = env.src.Sync(ctx) // confirms: the same empty feed, fetched in full
	if err != nil {
		t.Fatal(err)
	}
	if _, cond, _ := srv.counts(); cond != condBefore {
		t.Error("the confirming fetch was conditional")
	}
	if res.Deleted != n || res.HeldDeletes != 0 || len(env.objects(t)) != 0 {
		t.Errorf("confirming sync %+v with %d objects left; want all %d deleted", res, len(env.objects(t)), n)
	}
	if st, _ := env.store.GetSource("feed-src"); st.HeldDeletes != 0 {
		t.Errorf("HeldDeletes %d after the confirmation", st.HeldDeletes)
	}
}

func TestICSBadURL(t *testing.T) {
	for _, u := range []string{"ftp://example.com/x.ics", "not a url", "%zz"} {
		src := NewICS(ICSOptions{ID: "x", URL: u})
		if _, err := src.Sync(context.Background()); err == nil {
			t.Errorf("%q: Sync succeeded", u)
		}
	}
}

// TestICSImportEveryFeed mirrors each real-world feed of the fixtures: the
// first sync stores one object per UID, the second is a 304.
func TestICSImportEveryFeed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(icsFixtureDir(t), "feeds", "*.ics"))
	if err != nil || len(files) < 10 {
		t.Fatalf("%d feeds, %v", len(files), err)
	}
	z := new(ical.Zones)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			feed, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, warns, err := z.SplitFeed(feed)
			if err != nil {
				t.Fatal(err)
			}
			srv := newICSFeedServer(t, feed)
			env := newICSEnv(t, srv.URL+"/"+filepath.Base(f), 0)
			res, err := env.src.Sync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := len(objs)
			if uids := icsUIDs(feed); len(warns) == 0 && !bytes.Contains(feed, []byte("RECURRENCE-ID")) && len(uids) > 0 {
				want = len(uids) // every component has its UID and nothing was dropped
			}
			if res.Put != want || len(env.objects(t)) != want {
				t.Errorf("first sync %+v, %d objects stored; want %d", res, len(env.objects(t)), want)
			}
			rev := env.revision(t)
			if res, err := env.src.Sync(context.Background()); err != nil || !res.NotModified || env.revision(t) != rev {
				t.Errorf("second sync %+v, %v; want a 304 that changes nothing", res, err)
			}
		})
	}
}
