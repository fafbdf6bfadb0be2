package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

// benchEnv is a handler over a real, durable store; requests go straight
// to ServeHTTP so the figures are calgate's own work, without sockets.
type benchEnv struct {
	h     *Handler
	store *cache.Store
}

func newBenchEnv(b *testing.B, opts ...cache.Options) *benchEnv {
	b.Helper()
	var o cache.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	st, err := cache.Open(filepath.Join(b.TempDir(), "bench.db"), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	h, err := New(Options{Store: st, Users: []User{{Name: "alice", PasswordHash: string(hash)}}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: "personal", Components: []string{"VEVENT", "VTODO"}}); err != nil {
		b.Fatal(err)
	}
	return &benchEnv{h: h, store: st}
}

func (e *benchEnv) serve(b *testing.B, method, path, body string, want int, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.SetBasicAuth("alice", testPassword)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != want {
		b.Fatalf("%s %s: %d, want %d: %s", method, path, rec.Code, want, rec.Body)
	}
	return rec
}

// benchEvent is a realistic ~1 KB event on day i.
func benchEvent(i int) string {
	start := time.Date(2024, 1, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i%730) * 24 * time.Hour).Add(time.Duration(i%8) * time.Hour)
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//bench//EN\r\nBEGIN:VEVENT\r\n" +
		fmt.Sprintf("UID:bench-%d@calgate.test\r\nDTSTAMP:20240101T000000Z\r\n", i) +
		"DTSTART:" + start.Format("20060102T150405Z") + "\r\nDTEND:" + start.Add(time.Hour).Format("20060102T150405Z") + "\r\n" +
		fmt.Sprintf("SUMMARY:Meeting number %d about the quarterly planning\r\n", i) +
		"LOCATION:Conference room B\\, second floor\r\n" +
		"DESCRIPTION:" + strings.Repeat("Agenda item and notes. ", 30) + "\r\n" +
		"ORGANIZER;CN=Alice:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bob@example.com\r\n" +
		"END:VEVENT\r\nEND:VCALENDAR\r\n"
}

func (e *benchEnv) fill(b *testing.B, n int) {
	b.Helper()
	for i := range n {
		e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/personal/%d.ics", i), benchEvent(i), http.StatusCreated, ct, icsType)
	}
}

// BenchmarkPut is a durable PUT of a new 1 KB event through the handler.
func BenchmarkPut(b *testing.B) {
	e := newBenchEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/personal/%d.ics", i), benchEvent(i), http.StatusCreated, ct, icsType)
		i++
	}
}

// BenchmarkPutParallel is concurrent durable PUTs (group commit).
func BenchmarkPutParallel(b *testing.B) {
	e := newBenchEnv(b)
	b.ReportAllocs()
	var n atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/personal/%d.ics", i), benchEvent(i), http.StatusCreated, ct, icsType)
		}
	})
}

// BenchmarkStorePut is the same write straight into the store: the
// limit the handler's PUT is measured against.
func BenchmarkStorePut(b *testing.B) {
	e := newBenchEnv(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		data := []byte(benchEvent(i))
		if _, _, err := e.store.PutObject("alice", "personal", cache.Object{Name: fmt.Sprintf("%d.ics", i), UID: fmt.Sprint(i), Component: "VEVENT", Data: data}, cache.PutConditions{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

const benchObjects = 1000

func BenchmarkPropfindDepth1(b *testing.B) {
	e := newBenchEnv(b)
	e.fill(b, benchObjects)
	body := `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:getcontenttype/></d:prop></d:propfind>`
	b.ReportAllocs()
	for b.Loop() {
		e.serve(b, "PROPFIND", "/dav/calendars/alice/personal/", body, http.StatusMultiStatus, "Depth", "1")
	}
}

func BenchmarkQueryMonth(b *testing.B) {
	e := newBenchEnv(b)
	e.fill(b, benchObjects)
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20240301T000000Z" end="20240401T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	want := 0
	for i := range benchObjects {
		if d := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i%730); d.Month() == time.March && d.Year() == 2024 {
			want++
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := e.serve(b, "REPORT", "/dav/calendars/alice/personal/", body, http.StatusMultiStatus, "Depth", "1")
		if n := strings.Count(rec.Body.String(), "<d:response>"); n != want {
			b.Fatalf("month query returned %d objects, want %d", n, want)
		}
	}
}

func BenchmarkMultiget100(b *testing.B) {
	e := newBenchEnv(b)
	e.fill(b, benchObjects)
	var hrefs strings.Builder
	for i := range 100 {
		fmt.Fprintf(&hrefs, "<d:href>/dav/calendars/alice/personal/%d.ics</d:href>", i*7)
	}
	body := `<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>` + hrefs.String() + `</c:calendar-multiget>`
	b.ReportAllocs()
	for b.Loop() {
		e.serve(b, "REPORT", "/dav/calendars/alice/personal/", body, http.StatusMultiStatus, "Depth", "1")
	}
}

func BenchmarkGetObject(b *testing.B) {
	e := newBenchEnv(b)
	e.fill(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		rec := e.serve(b, "GET", "/dav/calendars/alice/personal/42.ics", "", http.StatusOK)
		io.Copy(io.Discard, rec.Body)
	}
}

// mixedEvent is event i of a realistic calendar: 80% one-off over two
// years, 15% weekly recurring without end, 5% recurring with an override
// and an EXDATE; a third of them in a named time zone.
func mixedEvent(i int) string {
	start := time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i%730)*24*time.Hour + time.Duration(i%9)*time.Hour)
	dt := func(name string, t time.Time) string {
		if i%3 == 0 {
			return name + ";TZID=Europe/Berlin:" + t.Format("20060102T150405")
		}
		return name + ":" + t.Format("20060102T150405Z")
	}
	head := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//bench//EN\r\nBEGIN:VEVENT\r\n" +
		fmt.Sprintf("UID:mixed-%d@calgate.test\r\nDTSTAMP:20240101T000000Z\r\n", i) +
		dt("DTSTART", start) + "\r\n" + dt("DTEND", start.Add(time.Hour)) + "\r\n" +
		fmt.Sprintf("SUMMARY:Event %d\r\nDESCRIPTION:%s\r\n", i, strings.Repeat("Notes. ", 100))
	switch k := i % 100; {
	case k < 80:
		return head + "END:VEVENT\r\nEND:VCALENDAR\r\n"
	case k < 95:
		return head + "RRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	default:
		moved := start.AddDate(0, 0, 14)
		return head + "RRULE:FREQ=WEEKLY;COUNT=52\r\n" + dt("EXDATE", start.AddDate(0, 0, 7)) + "\r\nEND:VEVENT\r\n" +
			"BEGIN:VEVENT\r\n" + fmt.Sprintf("UID:mixed-%d@calgate.test\r\nDTSTAMP:20240101T000000Z\r\n", i) +
			dt("RECURRENCE-ID", moved) + "\r\n" + dt("DTSTART", moved.Add(2*time.Hour)) + "\r\n" + dt("DTEND", moved.Add(3*time.Hour)) + "\r\n" +
			"SUMMARY:Moved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	}
}

// fillMixed loads n mixed events through the handler.
func (e *benchEnv) fillMixed(b *testing.B, n int) {
	b.Helper()
	for i := range n {
		e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/personal/m%d.ics", i), mixedEvent(i), http.StatusCreated, ct, icsType)
	}
}

const mixedN = 10000

// BenchmarkQueryMonth10k is a one-month time-range calendar-query with
// calendar-data over 10,000 events, 20% of them recurring.
func BenchmarkQueryMonth10k(b *testing.B) {
	e := newBenchEnv(b, cache.Options{NoSync: true}) // NoSync only speeds up loading
	e.fillMixed(b, mixedN)
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20250301T000000Z" end="20250401T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		rec := e.serve(b, "REPORT", "/dav/calendars/alice/personal/", body, http.StatusMultiStatus, "Depth", "1")
		n = strings.Count(rec.Body.String(), "<d:response>")
	}
	if want, _ := mixedExpected(mixedN, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)); n != want {
		b.Fatalf("month query returned %d objects, want %d", n, want)
	}
	b.ReportMetric(float64(n), "objects/op")
}

// BenchmarkExpandWeek10k is a one-week calendar-query with expand over
// the same calendar.
func BenchmarkExpandWeek10k(b *testing.B) {
	e := newBenchEnv(b, cache.Options{NoSync: true})
	e.fillMixed(b, mixedN)
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data><c:expand start="20250303T000000Z" end="20250310T000000Z"/></c:calendar-data></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20250303T000000Z" end="20250310T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		rec := e.serve(b, "REPORT", "/dav/calendars/alice/personal/", body, http.StatusMultiStatus, "Depth", "1")
		n = strings.Count(rec.Body.String(), "RECURRENCE-ID:")
	}
	if _, want := mixedExpected(mixedN, time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)); n != want {
		b.Fatalf("expand returned %d instances, want %d", n, want)
	}
	b.ReportMetric(float64(n), "instances/op")
}

// mixedExpected counts, by plain week-stepping of the generator's own
// rules (no recurrence library), the objects of the first n mixed events
// that have an instance overlapping [from, to), and the instances of the
// recurring ones among them (expand returns one-off objects as stored,
// without RECURRENCE-ID).
func mixedExpected(n int, from, to time.Time) (objects, instances int) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	for i := range n {
		wall := time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i%730)*24*time.Hour + time.Duration(i%9)*time.Hour)
		at := func(w time.Time) time.Time {
			if i%3 == 0 {
				return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), 0, 0, 0, berlin)
			}
			return w
		}
		weeks := 1
		switch k := i % 100; {
		case k >= 95:
			weeks = 52
		case k >= 80:
			weeks = 200 // no end: far past the window
		}
		count := 0
		for w := range weeks {
			start := at(wall.AddDate(0, 0, 7*w))
			if weeks == 52 && w == 1 {
				continue // EXDATE
			}
			if weeks == 52 && w == 2 {
				start = at(wall.AddDate(0, 0, 14).Add(2 * time.Hour)) // override
			}
			if start.Before(to) && start.Add(time.Hour).After(from) {
				count++
			}
		}
		if count > 0 {
			objects++
			if weeks > 1 {
				instances += count
			}
		}
	}
	return objects, instances
}

// feedBench is a handler with one feed over a calendar of n mixed events,
// the feed's bytes, and a trivial handler that serves the same bytes:
// the limit a feed GET is measured against.
func feedBench(b *testing.B, n int) (*Handler, string, []byte, http.Handler) {
	b.Helper()
	st, err := cache.Open(filepath.Join(b.TempDir(), "bench.db"), cache.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	const tok = "0123456789abcdef0123456789abcdef"
	h, err := New(Options{Store: st, Users: []User{{Name: "alice", PasswordHash: string(hash)}},
		Feeds: []Feed{{Spec: feed.Spec{Name: "all", Members: []feed.Member{{User: "alice", Cal: "personal"}}}, Tokens: []string{tok}}}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: "personal", Components: []string{"VEVENT"}}); err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{h: h, store: st}
	e.fillMixed(b, n)
	path := "/feeds/all.ics?token=" + tok
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), "BEGIN:VEVENT") < n {
		b.Fatalf("feed: %d, %d events", rec.Code, strings.Count(rec.Body.String(), "BEGIN:VEVENT"))
	}
	body := rec.Body.Bytes()
	etag := rec.Header().Get("ETag")
	trivial := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
		w.Header().Set("ETag", etag)
		w.Write(body)
	})
	return h, path, body, trivial
}

func benchGet(b *testing.B, h http.Handler, path string, want int, hdr ...string) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("status %d, want %d", rec.Code, want)
		}
	}
}

// BenchmarkFeedGet10k is GET of a feed of 10,000 events (full and 304)
// beside a trivial handler serving the same bytes, in the same run.
func BenchmarkFeedGet10k(b *testing.B) {
	h, path, body, trivial := feedBench(b, mixedN)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	etag := rec.Header().Get("ETag")
	b.Run("calgate/full", func(b *testing.B) { b.SetBytes(int64(len(body))); benchGet(b, h, path, http.StatusOK) })
	b.Run("trivial/full", func(b *testing.B) { b.SetBytes(int64(len(body))); benchGet(b, trivial, path, http.StatusOK) })
	b.Run("calgate/304", func(b *testing.B) { benchGet(b, h, path, http.StatusNotModified, "If-None-Match", etag) })
	b.Run("trivial/304", func(b *testing.B) { benchGet(b, trivial, path, http.StatusNotModified, "If-None-Match", etag) })
	b.Run("calgate/gzip", func(b *testing.B) { benchGet(b, h, path, http.StatusOK, "Accept-Encoding", "gzip") })
}

// BenchmarkCalendar10k measures the read paths a client uses over one
// calendar of 10,000 mixed events, loaded once for all of them.
func BenchmarkCalendar10k(b *testing.B) {
	e := newBenchEnv(b, cache.Options{NoSync: true})
	e.fillMixed(b, mixedN)
	const cal = "/dav/calendars/alice/personal/"
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.serve(b, "GET", cal+"m4242.ics", "", http.StatusOK)
		}
	})
	b.Run("propfind_d0", func(b *testing.B) {
		body := `<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/><d:sync-token/></d:prop></d:propfind>`
		b.ReportAllocs()
		for b.Loop() {
			e.serve(b, "PROPFIND", cal, body, http.StatusMultiStatus, "Depth", "0")
		}
	})
	b.Run("propfind_d1", func(b *testing.B) {
		body := `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:getcontenttype/></d:prop></d:propfind>`
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			rec := e.serve(b, "PROPFIND", cal, body, http.StatusMultiStatus, "Depth", "1")
			n = strings.Count(rec.Body.String(), "<d:response>")
		}
		if n != mixedN+1 {
			b.Fatalf("PROPFIND Depth 1: %d responses, want %d", n, mixedN+1)
		}
	})
	b.Run("multiget_100", func(b *testing.B) {
		var hrefs strings.Builder
		for i := range 100 {
			fmt.Fprintf(&hrefs, "<d:href>%sm%d.ics</d:href>", cal, i*97)
		}
		body := `<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>` + hrefs.String() + `</c:calendar-multiget>`
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			rec := e.serve(b, "REPORT", cal, body, http.StatusMultiStatus, "Depth", "1")
			n = strings.Count(rec.Body.String(), "BEGIN:VCALENDAR")
		}
		if n != 100 {
			b.Fatalf("multiget: %d objects, want 100", n)
		}
	})
	b.Run("sync_after_change", func(b *testing.B) {
		body := func(tok string) string {
			return `<d:sync-collection xmlns:d="DAV:"><d:sync-token>` + tok + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
		}
		c, err := e.store.GetCalendar("alice", "personal")
		if err != nil {
			b.Fatal(err)
		}
		tok := syncToken(&c)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			b.StopTimer()
			e.serve(b, "PUT", fmt.Sprintf("%sm%d.ics", cal, i%mixedN), mixedEvent(i%mixedN)+"\r\n", http.StatusNoContent, ct, icsType)
			b.StartTimer()
			rec := e.serve(b, "REPORT", cal, body(tok), http.StatusMultiStatus)
			if n := strings.Count(rec.Body.String(), "<d:response>"); n != 1 {
				b.Fatalf("sync-collection after one change: %d responses, want 1", n)
			}
			c, _ = e.store.GetCalendar("alice", "personal")
			tok = syncToken(&c)
			i++
		}
	})
	b.Run("get_collection", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			rec := e.serve(b, "GET", cal, "", http.StatusOK)
			n = strings.Count(rec.Body.String(), "UID:")
		}
		if n < mixedN {
			b.Fatalf("collection GET: %d UIDs, want at least %d", n, mixedN)
		}
	})
}

// mixedVersion is mixed event i with a SUMMARY that names version v.
func mixedVersion(i, v int) string {
	return strings.Replace(mixedEvent(i), fmt.Sprintf("SUMMARY:Event %d\r\n", i), fmt.Sprintf("SUMMARY:Event %d\\, version %d\r\n", i, v), 1)
}

// mergedFeedBench is a handler with a merged feed "all" over two
// calendars of alice of n/2 mixed events each ("work" with a prefix, 100
// UIDs in both), a calendar "personal" of n mixed events and a merged
// calendar "both" of home and work for collection GETs. It returns the
// feed's path.
func mergedFeedBench(b *testing.B, n int) (*benchEnv, string) {
	b.Helper()
	st, err := cache.Open(filepath.Join(b.TempDir(), "bench.db"), cache.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	const tok = "0123456789abcdef0123456789abcdef"
	spec := feed.Spec{Name: "all", Members: []feed.Member{{User: "alice", Cal: "home"}, {User: "alice", Cal: "work", Prefix: "[Work] "}}}
	h, err := New(Options{Store: st, Users: []User{{Name: "alice", PasswordHash: string(hash)}}, Feeds: []Feed{{Spec: spec, Tokens: []string{tok}}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range []string{"home", "work", "personal"} {
		if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: id, Components: []string{"VEVENT"}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: "both", Kind: kindMerged, Members: []string{"home", "work"}}); err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{h: h, store: st}
	for i := range n / 2 {
		e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/home/m%d.ics", i), mixedEvent(i), http.StatusCreated, ct, icsType)
		e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/work/m%d.ics", n/2+i), mixedEvent(n/2+i), http.StatusCreated, ct, icsType)
		if i%(n/200) == 0 {
			e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/work/dup%d.ics", i), mixedVersion(i, 1), http.StatusCreated, ct, icsType)
		}
	}
	e.fillMixed(b, n)
	return e, "/feeds/all.ics?token=" + tok
}

// timed runs op once per iteration, untimed setup before each, and
// reports the median duration of op as p50-ms.
func timed(b *testing.B, setup func(i int), op func()) {
	b.ReportAllocs()
	var ds []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		setup(i)
		i++
		b.StartTimer()
		start := time.Now()
		op()
		ds = append(ds, time.Since(start))
	}
	// Insertion sort: a few thousand durations at most.
	for j := 1; j < len(ds); j++ {
		for k := j; k > 0 && ds[k] < ds[k-1]; k-- {
			ds[k], ds[k-1] = ds[k-1], ds[k]
		}
	}
	b.ReportMetric(float64(ds[len(ds)/2])/1e6, "p50-ms")
}

// BenchmarkFeedRebuild10k is the first GET of a merged feed of 10,000
// events after one object of a member was replaced (the PUT is not
// timed): the rebuild, plain and with gzip (which then compresses the
// new rendering). The steady GETs and the 304 of the same feed follow.
func BenchmarkFeedRebuild10k(b *testing.B) {
	e, path := mergedFeedBench(b, mixedN)
	replace := func(i int) {
		e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/work/m%d.ics", mixedN/2+i%(mixedN/2)), mixedVersion(mixedN/2+i%(mixedN/2), i+2), http.StatusNoContent, ct, icsType)
	}
	get := func(want string, hdr ...string) func() {
		return func() {
			rec := e.serve(b, "GET", path, "", http.StatusOK, hdr...)
			if rec.Header().Get("Content-Encoding") != want {
				b.Fatalf("Content-Encoding %q", rec.Header().Get("Content-Encoding"))
			}
		}
	}
	e.serve(b, "GET", path, "", http.StatusOK) // the first rendering
	var size int
	b.Run("rebuild", func(b *testing.B) {
		timed(b, replace, func() {
			rec := e.serve(b, "GET", path, "", http.StatusOK)
			size = rec.Body.Len()
		})
	})
	b.Logf("feed: %d bytes", size)
	b.Run("rebuild_gzip", func(b *testing.B) { timed(b, replace, get("gzip", "Accept-Encoding", "gzip")) })
	b.Run("full", func(b *testing.B) { b.SetBytes(int64(size)); timed(b, func(int) {}, get("")) })
	b.Run("gzip", func(b *testing.B) { timed(b, func(int) {}, get("gzip", "Accept-Encoding", "gzip")) })
	etag := e.serve(b, "GET", path, "", http.StatusOK).Header().Get("ETag")
	b.Run("304", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.serve(b, "GET", path, "", http.StatusNotModified, "If-None-Match", etag)
		}
	})
}

// BenchmarkCollectionGet10k is GET of a calendar collection of 10,000
// mixed events: unchanged (plain, gzip, 304) and the first GET after one
// object was replaced (the PUT is not timed).
func BenchmarkCollectionGet10k(b *testing.B) {
	e, _ := mergedFeedBench(b, mixedN)
	const cal = "/dav/calendars/alice/personal/"
	get := func(hdr ...string) func() {
		return func() { e.serve(b, "GET", cal, "", http.StatusOK, hdr...) }
	}
	replace := func(i int) {
		e.serve(b, "PUT", fmt.Sprintf("%sm%d.ics", cal, i%mixedN), mixedVersion(i%mixedN, i+2), http.StatusNoContent, ct, icsType)
	}
	e.serve(b, "GET", cal, "", http.StatusOK) // the first renderings
	e.serve(b, "GET", "/dav/calendars/alice/both/", "", http.StatusOK)
	b.Run("unchanged", func(b *testing.B) { timed(b, func(int) {}, get()) })
	b.Run("unchanged_gzip", func(b *testing.B) { timed(b, func(int) {}, get("Accept-Encoding", "gzip")) })
	b.Run("rebuild", func(b *testing.B) { timed(b, replace, get()) })
	b.Run("rebuild_gzip", func(b *testing.B) { timed(b, replace, get("Accept-Encoding", "gzip")) })
	b.Run("merged_rebuild", func(b *testing.B) {
		timed(b, func(i int) {
			e.serve(b, "PUT", fmt.Sprintf("/dav/calendars/alice/home/m%d.ics", i%(mixedN/2)), mixedVersion(i%(mixedN/2), i+2), http.StatusNoContent, ct, icsType)
		}, func() { e.serve(b, "GET", "/dav/calendars/alice/both/", "", http.StatusOK) })
	})
	rec := e.serve(b, "GET", cal, "", http.StatusOK)
	etag := rec.Header().Get("ETag")
	b.Run("304", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.serve(b, "GET", cal, "", http.StatusNotModified, "If-None-Match", etag)
		}
	})
}
