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
)

// benchEnv is a handler over a real, durable store; requests go straight
// to ServeHTTP so the figures are calgate's own work, without sockets.
type benchEnv struct {
	h     *Handler
	store *cache.Store
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	st, err := cache.Open(filepath.Join(b.TempDir(), "bench.db"), cache.Options{})
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
