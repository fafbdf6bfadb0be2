package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/calgate/calgate/cache"
)

// TestLargeMultistatusStreams lists a calendar whose answers exceed the
// streaming chunk: PROPFIND Depth 1 and a calendar-query with data are
// sent in pieces (no Content-Length), and still decode to every member
// with the right ETag and data; a small answer keeps its Content-Length.
func TestLargeMultistatusStreams(t *testing.T) {
	e := newEnv(t)
	const n = 700
	long := strings.Repeat("x", 160) // long names: a big listing from few objects
	etags := make(map[string]string, n)
	for i := range n {
		name := fmt.Sprintf("%s-%04d.ics", long, i)
		data := fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//test//EN\r\nBEGIN:VEVENT\r\nUID:stream-%d\r\n"+
			"DTSTAMP:20260101T000000Z\r\nDTSTART:20260310T%02d0000Z\r\nDTEND:20260310T%02d3000Z\r\nSUMMARY:a < b & c\r\n"+
			"DESCRIPTION:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", i, i%24, i%24, strings.Repeat("d", 300))
		o, _, err := e.store.PutObject("alice", "personal", cache.Object{Name: name, UID: fmt.Sprintf("stream-%d", i), Component: "VEVENT", Data: []byte(data)}, cache.PutConditions{})
		if err != nil {
			t.Fatal(err)
		}
		etags["/dav/calendars/alice/personal/"+name] = o.ETag
	}
	check := func(resp *http.Response, withData bool) {
		t.Helper()
		if resp.ContentLength >= 0 || len(resp.TransferEncoding) == 0 {
			t.Errorf("a large answer was not streamed: Content-Length %d, Transfer-Encoding %v", resp.ContentLength, resp.TransferEncoding)
		}
		ms := decodeMS(t, resp)
		seen := 0
		for href, etag := range etags {
			p := ms.prop(href, nsDAV, "getetag")
			if p == nil || p.Text != `"`+etag+`"` {
				t.Fatalf("%s: getetag %v, want %q", href, p, etag)
			}
			if withData {
				d := ms.prop(href, nsCalDAV, "calendar-data")
				if d == nil || !strings.Contains(d.Text, "SUMMARY:a < b & c\r\n") {
					t.Fatalf("%s: calendar-data %v", href, d)
				}
			}
			seen++
		}
		if seen != n {
			t.Fatalf("%d members, want %d", seen, n)
		}
	}
	check(e.do("alice", "PROPFIND", "/dav/calendars/alice/personal/", `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`, "Depth", "1"), false)
	check(e.do("alice", "REPORT", "/dav/calendars/alice/personal/", `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20260310T000000Z" end="20260311T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`, "Depth", "1"), true)

	small := e.do("alice", "PROPFIND", "/dav/calendars/alice/personal/", `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`, "Depth", "0")
	if small.ContentLength <= 0 {
		t.Errorf("a small answer has Content-Length %d", small.ContentLength)
	}
}
