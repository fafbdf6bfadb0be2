package gateway

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/ical"
)

// appendixB loads the sample calendar of RFC 4791 Appendix B into a
// calendar that accepts events, tasks, journals and free-busy.
func appendixB(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t)
	base := "/dav/calendars/alice/rfc/"
	mk := `<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><c:supported-calendar-component-set>` +
		`<c:comp name="VEVENT"/><c:comp name="VTODO"/><c:comp name="VJOURNAL"/><c:comp name="VFREEBUSY"/></c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>`
	wantStatus(t, e.do("alice", "MKCALENDAR", base, mk, ct, xmlType), http.StatusCreated)
	files, err := filepath.Glob("testdata/rfc4791/*.ics")
	if err != nil || len(files) != 8 {
		t.Fatalf("Appendix B files: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, e.do("alice", "PUT", base+filepath.Base(f), string(data), ct, icsType), http.StatusCreated)
	}
	return e, base
}

func reportNames(t *testing.T, e *env, base, body string) ([]string, msResp) {
	t.Helper()
	ms := decodeMS(t, e.do("alice", "REPORT", base, body, "Depth", "1", ct, xmlType))
	var names []string
	for _, h := range ms.hrefs() {
		names = append(names, strings.TrimPrefix(h, base))
	}
	sort.Strings(names)
	return names, ms
}

const cq = `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">`

// TestRFC4791Examples runs the calendar-query examples of RFC 4791 §7.8
// over HTTP against the Appendix B data, with the results the RFC gives.
func TestRFC4791Examples(t *testing.T) {
	e, base := appendixB(t)
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"7.8.1 events in a time range", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">` +
			`<c:time-range start="20060104T000000Z" end="20060105T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd2.ics", "abcd3.ics"}},
		{"7.8.4 stored free-busy by time range", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VFREEBUSY">` +
			`<c:time-range start="20060102T000000Z" end="20060103T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd8.ics"}},
		{"7.8.6 event by UID", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">` +
			`<c:prop-filter name="UID"><c:text-match collation="i;octet">DC6C50A017428C5216A2F1CD@example.com</c:text-match></c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd3.ics"}},
		{"7.8.7 events by PARTSTAT", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">` +
			`<c:prop-filter name="ATTENDEE"><c:text-match collation="i;ascii-casemap">mailto:lisa@example.com</c:text-match>` +
			`<c:param-filter name="PARTSTAT"><c:text-match collation="i;ascii-casemap">NEEDS-ACTION</c:text-match></c:param-filter></c:prop-filter>` +
			`</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd3.ics"}},
		{"7.8.8 events only", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd1.ics", "abcd2.ics", "abcd3.ics"}},
		{"7.8.9 pending to-dos", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VTODO">` +
			`<c:prop-filter name="COMPLETED"><c:is-not-defined/></c:prop-filter>` +
			`<c:prop-filter name="STATUS"><c:text-match negate-condition="yes">CANCELLED</c:text-match></c:prop-filter>` +
			`</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd4.ics", "abcd5.ics"}},
		{"description substring", cq + `<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">` +
			`<c:prop-filter name="DESCRIPTION"><c:text-match>Steelers</c:text-match></c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
			[]string{"abcd1.ics"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := reportNames(t, e, base, tc.body); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// parsedData parses the calendar-data of one response.
func parsedData(t *testing.T, ms msResp, href string) string {
	t.Helper()
	d := ms.prop(href, nsCalDAV, "calendar-data")
	if d == nil {
		t.Fatalf("%s: no calendar-data", href)
	}
	return d.Text
}

// eventsOf returns "RECURRENCE-ID DTSTART SUMMARY" of each VEVENT of data.
func eventsOf(t *testing.T, data string) []string {
	t.Helper()
	cal, err := ical.Parse([]byte(data))
	if err != nil {
		t.Fatalf("calendar-data does not parse: %v\n%s", err, data)
	}
	var out []string
	for _, c := range cal.Children {
		if c.Name != "VEVENT" {
			continue
		}
		get := func(n string) string {
			if p := c.Props.Get(n); p != nil {
				return p.Value
			}
			return "-"
		}
		out = append(out, get("RECURRENCE-ID")+" "+get("DTSTART")+" "+get("SUMMARY"))
	}
	sort.Strings(out)
	return out
}

// TestRFC4791LimitAndExpand checks §7.8.2 (limit-recurrence-set) and
// §7.8.3 (expand) against the results the RFC shows.
func TestRFC4791LimitAndExpand(t *testing.T) {
	e, base := appendixB(t)
	filter := `<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20060103T000000Z" end="20060105T000000Z"/></c:comp-filter></c:comp-filter></c:filter>`

	limit := cq + `<d:prop><c:calendar-data><c:limit-recurrence-set start="20060103T000000Z" end="20060105T000000Z"/></c:calendar-data></d:prop>` + filter + `</c:calendar-query>`
	names, ms := reportNames(t, e, base, limit)
	if !slices.Equal(names, []string{"abcd2.ics", "abcd3.ics"}) {
		t.Fatalf("limit-recurrence-set: %v", names)
	}
	got := eventsOf(t, parsedData(t, ms, base+"abcd2.ics"))
	want := []string{"- 20060102T120000 Event #2", "20060104T120000 20060104T140000 Event #2 bis"}
	if !slices.Equal(got, want) {
		t.Fatalf("limit-recurrence-set abcd2:\n got %q\nwant %q", got, want)
	}

	expand := cq + `<d:prop><c:calendar-data><c:expand start="20060103T000000Z" end="20060105T000000Z"/></c:calendar-data></d:prop>` + filter + `</c:calendar-query>`
	names, ms = reportNames(t, e, base, expand)
	if !slices.Equal(names, []string{"abcd2.ics", "abcd3.ics"}) {
		t.Fatalf("expand: %v", names)
	}
	data := parsedData(t, ms, base+"abcd2.ics")
	got = eventsOf(t, data)
	want = []string{"20060103T170000Z 20060103T170000Z Event #2", "20060104T170000Z 20060104T190000Z Event #2 bis"}
	if !slices.Equal(got, want) {
		t.Fatalf("expand abcd2:\n got %q\nwant %q\n%s", got, want, data)
	}
	if strings.Contains(data, "RRULE") || strings.Contains(data, "VTIMEZONE") {
		t.Fatalf("expanded data still has RRULE or VTIMEZONE:\n%s", data)
	}

	// Pruning: only SUMMARY and UID of the events.
	prune := cq + `<d:prop><c:calendar-data><c:comp name="VCALENDAR"><c:prop name="VERSION"/><c:comp name="VEVENT"><c:prop name="SUMMARY"/><c:prop name="UID"/></c:comp></c:comp></c:calendar-data></d:prop>` + filter + `</c:calendar-query>`
	_, ms = reportNames(t, e, base, prune)
	data = parsedData(t, ms, base+"abcd3.ics")
	if want := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Event #3\r\nUID:DC6C50A017428C5216A2F1CD@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"; data != want {
		t.Fatalf("pruned calendar-data:\n%q\nwant\n%q", data, want)
	}
}

// TestRFC4791FreeBusy is the free-busy-query of RFC 4791 §7.10.
func TestRFC4791FreeBusy(t *testing.T) {
	e, base := appendixB(t)
	body := `<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav"><c:time-range start="20060104T140000Z" end="20060105T000000Z"/></c:free-busy-query>`
	resp := e.do("alice", "REPORT", base, body, "Depth", "1", ct, xmlType)
	wantStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/calendar") {
		t.Fatalf("Content-Type %q", ct)
	}
	raw, _ := io.ReadAll(resp.Body)
	cal, err := ical.Parse(raw)
	if err != nil {
		t.Fatalf("free-busy answer does not parse: %v\n%s", err, raw)
	}
	if len(cal.Children) != 1 || cal.Children[0].Name != "VFREEBUSY" {
		t.Fatalf("answer is not one VFREEBUSY:\n%s", raw)
	}
	var got []string
	for _, p := range cal.Children[0].Props.Values("FREEBUSY") {
		fbtype := p.Params.Get("FBTYPE")
		if fbtype == "" {
			fbtype = "BUSY"
		}
		for _, v := range strings.Split(p.Value, ",") {
			s, e, ok := parsePeriod(v)
			if !ok {
				t.Fatalf("bad period %q", v)
			}
			got = append(got, fbtype+" "+s.Format(time.RFC3339)+" "+e.Sub(s).String())
		}
	}
	sort.Strings(got)
	// Event #3 (TENTATIVE) at 15:00Z and Event #2 bis at 19:00Z, one hour each.
	want := []string{"BUSY 2006-01-04T19:00:00Z 1h0m0s", "BUSY-TENTATIVE 2006-01-04T15:00:00Z 1h0m0s"}
	if !slices.Equal(got, want) {
		t.Fatalf("free-busy:\n got %q\nwant %q\n%s", got, want, raw)
	}
}
