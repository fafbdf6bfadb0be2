package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// The hostile-input rows of the adversarial matrix (issue 8): malformed
// iCalendar, pathological recurrence rules, request bodies over the size
// cap and hostile XML, each against the real handler over a real store.
// Figures are logged as "MATRIX <group>:" lines.

// matrixUnchanged fails if the store differs from before: the calendar
// records (revision, so ctag and sync token, included) and every object
// with its bytes and ETag.
func matrixUnchanged(t *testing.T, e *env, before fuzzState, what string) {
	t.Helper()
	if after := fuzzSnapshot(t, e.store); !reflect.DeepEqual(before, after) {
		t.Fatalf("%s changed the store:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

// matrixCalTags returns the getctag and sync-token of alice's personal
// calendar, as a client reads them.
func matrixCalTags(t *testing.T, e *env) string {
	t.Helper()
	body := `<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/><d:sync-token/></d:prop></d:propfind>`
	const cal = "/dav/calendars/alice/personal/"
	ms := decodeMS(t, e.do("alice", "PROPFIND", cal, body, "Depth", "0", ct, xmlType))
	ctag, tok := ms.prop(cal, nsCS, "getctag"), ms.prop(cal, "DAV:", "sync-token")
	if ctag == nil || tok == nil {
		t.Fatal("calendar lacks getctag or sync-token")
	}
	return ctag.Text + " " + tok.Text
}

// badICS is one malformed calendar object body and the answer it must get.
type badICS struct {
	name, body, ctype string
	code              int
	cond              string // CALDAV precondition element
}

// badICalendarCases are the malformed bodies of TestMatrixBadICalendar.
// maxSize is the handler's MaxResourceSize.
func badICalendarCases(maxSize int) []badICS {
	ok := event("m1", "ok", "20240101T100000Z", "20240101T110000Z")
	head := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
	tail := "END:VCALENDAR\r\n"
	wrap := func(lines ...string) string { return head + strings.Join(lines, "\r\n") + "\r\n" + tail }
	ev := func(lines ...string) string {
		return wrap(append(append([]string{"BEGIN:VEVENT", "UID:m1", "DTSTAMP:20240101T000000Z"}, lines...), "END:VEVENT")...)
	}
	repl := func(old, new string) string { return strings.Replace(ok, old, new, 1) }
	const data, object, comp = "valid-calendar-data", "valid-calendar-object-resource", "supported-calendar-component"
	rng := rand.New(rand.NewPCG(8, 8))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(ok))
	zw.Close()
	deep := head + "BEGIN:VEVENT\r\nUID:m1\r\nDTSTART:20240101T100000Z\r\n" + strings.Repeat("BEGIN:VALARM\r\n", 10000) +
		strings.Repeat("END:VALARM\r\n", 10000) + "END:VEVENT\r\n" + tail
	cases := []badICS{
		// Empty and truncated.
		{name: "empty", body: "", code: 403, cond: data},
		{name: "white space only", body: " \r\n\r\n\t\r\n", code: 403, cond: data},
		{name: "truncated after BEGIN:VCALENDAR", body: "BEGIN:VCALENDAR\r\n", code: 403, cond: data},
		{name: "truncated inside VEVENT", body: ok[:strings.Index(ok, "DTEND")], code: 403, cond: data},
		{name: "truncated inside a line", body: ok[:strings.Index(ok, "DTSTART")+4], code: 403, cond: data},
		{name: "truncated after END:VEVENT", body: ok[:strings.Index(ok, tail)], code: 403, cond: data},
		{name: "truncated inside END:VCALENDAR", body: ok[:len(ok)-6], code: 403, cond: data},
		// Unbalanced BEGIN/END.
		{name: "END of the wrong component", body: repl("END:VEVENT", "END:VTODO"), code: 403, cond: data},
		{name: "END:VCALENDAR before END:VEVENT", body: head + "BEGIN:VEVENT\r\nUID:m1\r\n" + tail, code: 403, cond: data},
		{name: "extra END:VEVENT", body: repl("END:VEVENT\r\n", "END:VEVENT\r\nEND:VEVENT\r\n"), code: 403, cond: data},
		{name: "END without BEGIN", body: "END:VCALENDAR\r\n", code: 403, cond: data},
		{name: "BEGIN without a name", body: repl("BEGIN:VEVENT", "BEGIN:"), code: 403, cond: data},
		{name: "VEVENT outside VCALENDAR", body: "BEGIN:VEVENT\r\nUID:m1\r\nDTSTART:20240101T100000Z\r\nEND:VEVENT\r\n", code: 403, cond: data},
		{name: "VCARD", body: "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nEND:VCARD\r\n", code: 403, cond: data},
		{name: "nested VCALENDAR", body: head + "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:m1\r\nDTSTART:20240101T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n" + tail, code: 403, cond: object},
		{name: "two VCALENDARs", body: ok + ok, code: 403, cond: object},
		{name: "text after END:VCALENDAR", body: ok + "SUMMARY:trailing\r\n", code: 403, cond: data},
		// Content lines that are not content lines.
		{name: "line without a colon", body: repl("SUMMARY:ok", "SUMMARY ok"), code: 403, cond: data},
		{name: "empty property name", body: repl("SUMMARY:ok", ":ok"), code: 403, cond: data},
		{name: "unterminated quoted parameter", body: repl("DTSTART:", `DTSTART;TZID="Europe/Berlin:`), code: 403, cond: data},
		// Bad dates, times and durations.
		{name: "ISO 8601 date", body: repl("DTSTART:20240101T100000Z", "DTSTART:2024-01-01"), code: 403, cond: data},
		{name: "month 13", body: repl("DTSTART:20240101T100000Z", "DTSTART:20241301T100000Z"), code: 403, cond: data},
		{name: "February 30", body: repl("DTSTART:20240101T100000Z", "DTSTART:20240230T100000Z"), code: 403, cond: data},
		{name: "hour 25", body: repl("DTSTART:20240101T100000Z", "DTSTART:20240101T250000Z"), code: 403, cond: data},
		{name: "DATE value with a time", body: repl("DTSTART:20240101T100000Z", "DTSTART;VALUE=DATE:20240101T1000"), code: 403, cond: data},
		{name: "DTEND garbage", body: repl("DTEND:20240101T110000Z", "DTEND:tomorrow"), code: 403, cond: data},
		{name: "DURATION with a bad unit", body: ev("DTSTART:20240101T100000Z", "DURATION:PT1X"), code: 403, cond: data},
		{name: "DURATION without P", body: ev("DTSTART:20240101T100000Z", "DURATION:1H"), code: 403, cond: data},
		{name: "DURATION overflowing", body: ev("DTSTART:20240101T100000Z", "DURATION:P99999999999999999999W"), code: 403, cond: data},
		{name: "bad RECURRENCE-ID", body: ev("DTSTART:20240101T100000Z", "RECURRENCE-ID:yesterday"), code: 403, cond: data},
		{name: "TZID date-time with Z and garbage", body: repl("DTSTART:20240101T100000Z", "DTSTART;TZID=Europe/Berlin:20240101T10000"), code: 403, cond: data},
		// UIDs.
		{name: "no UID", body: strings.Replace(ok, "UID:m1\r\n", "", 1), code: 403, cond: object},
		{name: "empty UID", body: repl("UID:m1", "UID:"), code: 403, cond: object},
		{name: "two different UIDs", body: wrap("BEGIN:VEVENT", "UID:m1", "DTSTART:20240101T100000Z", "END:VEVENT",
			"BEGIN:VEVENT", "UID:m2", "DTSTART:20240102T100000Z", "END:VEVENT"), code: 403, cond: object},
		{name: "two masters with one UID", body: wrap("BEGIN:VEVENT", "UID:m1", "DTSTART:20240101T100000Z", "END:VEVENT",
			"BEGIN:VEVENT", "UID:m1", "DTSTART:20240102T100000Z", "END:VEVENT"), code: 403, cond: object},
		{name: "two UID properties in one VEVENT", body: repl("UID:m1", "UID:m1\r\nUID:m2"), code: 403, cond: object},
		{name: "UID of another resource", body: event("taken", "dup", "20240101T100000Z", "20240101T110000Z"), code: 403, cond: "no-uid-conflict"},
		// Components.
		{name: "VEVENT and VTODO", body: wrap("BEGIN:VEVENT", "UID:m1", "DTSTART:20240101T100000Z", "END:VEVENT",
			"BEGIN:VTODO", "UID:m1", "END:VTODO"), code: 403, cond: object},
		{name: "no component", body: head + tail, code: 403, cond: object},
		{name: "only a VTIMEZONE", body: wrap("BEGIN:VTIMEZONE", "TZID:X", "BEGIN:STANDARD", "DTSTART:19700101T000000",
			"TZOFFSETFROM:+0000", "TZOFFSETTO:+0000", "END:STANDARD", "END:VTIMEZONE"), code: 403, cond: object},
		{name: "VFREEBUSY in an event calendar", body: wrap("BEGIN:VFREEBUSY", "UID:m1", "DTSTAMP:20240101T000000Z", "END:VFREEBUSY"), code: 403, cond: comp},
		{name: "VALARM at the top", body: wrap("BEGIN:VALARM", "UID:m1", "ACTION:DISPLAY", "TRIGGER:-PT5M", "END:VALARM"), code: 403, cond: comp},
		{name: "METHOD:REQUEST", body: strings.Replace(ok, "VERSION:2.0\r\n", "VERSION:2.0\r\nMETHOD:REQUEST\r\n", 1), code: 403, cond: object},
		{name: "10,000 nested VALARMs", body: deep, code: 403, cond: data},
		// Bytes that are not iCalendar text.
		{name: "binary junk", body: string(junk), code: 403, cond: data},
		{name: "PNG", body: "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + string(junk[:64]), code: 403, cond: data},
		{name: "gzip of a valid object", body: gz.String(), code: 403, cond: data},
		{name: "NUL bytes only", body: strings.Repeat("\x00", 512), code: 403, cond: data},
		{name: "NUL in a value", body: repl("SUMMARY:ok", "SUMMARY:o\x00k"), code: 403, cond: data},
		{name: "BEL in a value", body: repl("SUMMARY:ok", "SUMMARY:o\x07k"), code: 403, cond: data},
		{name: "ESC sequence in a value", body: repl("SUMMARY:ok", "SUMMARY:\x1b[31mred\x1b[0m"), code: 403, cond: data},
		{name: "vertical tab and form feed", body: repl("SUMMARY:ok", "SUMMARY:o\x0b\x0ck"), code: 403, cond: data},
		{name: "invalid UTF-8", body: repl("SUMMARY:ok", "SUMMARY:\xff\xfe\xfd"), code: 403, cond: data},
		{name: "overlong UTF-8", body: repl("SUMMARY:ok", "SUMMARY:\xc0\xaf"), code: 403, cond: data},
		{name: "UTF-8 surrogate", body: repl("SUMMARY:ok", "SUMMARY:\xed\xa0\x80"), code: 403, cond: data},
		{name: "UTF-16", body: "\xff\xfe" + utf16le(ok), code: 403, cond: data},
		{name: "bare CR line ends", body: strings.ReplaceAll(ok, "\r\n", "\r"), code: 403, cond: data},
		{name: "one huge line without a line end", body: strings.Repeat("A", maxSize-1024), code: 403, cond: data},
		// Size and media type.
		{name: "one huge line over the cap", body: repl("SUMMARY:ok", "SUMMARY:"+strings.Repeat("x", maxSize)), code: 413, cond: "max-resource-size"},
		{name: "JSON media type", body: ok, ctype: "application/json", code: 415, cond: "supported-calendar-data"},
		{name: "vCard media type", body: ok, ctype: "text/vcard", code: 415, cond: "supported-calendar-data"},
	}
	return cases
}

// utf16le encodes ASCII s as UTF-16LE.
func utf16le(s string) string {
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, s[i], 0)
	}
	return string(b)
}

// TestMatrixBadICalendar PUTs malformed calendar object bodies, as new
// resources and over an existing one: each is refused with a 4xx and the
// CalDAV precondition RFC 4791 §5.3.2.1 names, nothing is stored (the
// existing object keeps its bytes and ETag, the ctag and sync token do
// not move), and the server keeps serving.
func TestMatrixBadICalendar(t *testing.T) {
	const maxSize = 256 << 10
	e := newEnv(t, func(o *Options) { o.MaxResourceSize = maxSize })
	const base = "/dav/calendars/alice/personal/"
	existing := event("exist", "Existing", "20240105T100000Z", "20240105T110000Z")
	resp := e.do("alice", "PUT", base+"exist.ics", existing, ct, icsType)
	wantStatus(t, resp, http.StatusCreated)
	etag := resp.Header.Get("ETag")
	wantStatus(t, e.do("alice", "PUT", base+"taken.ics", event("taken", "Taken", "20240106T100000Z", "20240106T110000Z"), ct, icsType), http.StatusCreated)
	before := fuzzSnapshot(t, e.store)
	tags := matrixCalTags(t, e)

	cases := badICalendarCases(maxSize)
	statuses := map[int]int{}
	conds := map[string]int{}
	var maxDur time.Duration
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctype := tc.ctype
			if ctype == "" {
				ctype = icsType
			}
			for _, path := range []string{fmt.Sprintf("%sbad-%d.ics", base, i), base + "exist.ics"} {
				t0 := time.Now()
				resp := e.do("alice", "PUT", path, tc.body, ct, ctype)
				maxDur = max(maxDur, time.Since(t0))
				statuses[resp.StatusCode]++
				conds[tc.cond]++
				wantPrecondition(t, resp, tc.code, nsCalDAV, tc.cond)
				matrixUnchanged(t, e, before, "a refused PUT to "+path)
			}
		})
	}
	if got := matrixCalTags(t, e); got != tags {
		t.Errorf("ctag and sync token moved: %s, was %s", got, tags)
	}
	// Still serving: the old object as it was, and a new valid write.
	resp = e.do("alice", "GET", base+"exist.ics", "")
	wantStatus(t, resp, http.StatusOK)
	if got := readAll(t, resp); got != existing || resp.Header.Get("ETag") != etag {
		t.Errorf("exist.ics now %q with ETag %s; want the old bytes and %s", got, resp.Header.Get("ETag"), etag)
	}
	wantStatus(t, e.do("alice", "PUT", base+"after.ics", event("after", "After", "20240107T100000Z", "20240107T110000Z"), ct, icsType), http.StatusCreated)
	t.Logf("MATRIX bad-icalendar: %d malformed bodies, %d PUTs (new resource and over an existing one); statuses %v; preconditions %v; max duration %v",
		len(cases), 2*len(cases), statuses, conds, maxDur.Round(time.Microsecond))
	if len(cases) < 40 {
		t.Errorf("only %d cases; the matrix asks for at least 40", len(cases))
	}
}

// numList is "from,from+1,...,to" (a BY* list).
func numList(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, i)
	}
	return b.String()
}

// pathologicalRecurrence are the objects of TestMatrixPathologicalRecurrence:
// rules that make recurrence libraries spin, explode or never end, and
// objects with thousands of recurrence dates or overrides. Each is the
// inside of a VCALENDAR with UID uid.
func pathologicalRecurrence(uid string) []struct{ name, comps string } {
	rule := func(dtstart, r string) string {
		return vevent(uid, "DTSTART:"+dtstart, "DURATION:PT1S", "RRULE:"+r)
	}
	const d = "20240101T000000Z" // a Monday
	var rdates strings.Builder
	rdates.WriteString("BEGIN:VEVENT\r\nUID:" + uid + "\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:" + d + "\r\nDURATION:PT1H\r\nRRULE:FREQ=HOURLY\r\n")
	for i := range 5000 {
		t := time.Date(2024, 1, 1, 0, 30, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format("20060102T150405Z")
		x := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format("20060102T150405Z")
		rdates.WriteString("RDATE:" + t + "\r\nEXDATE:" + x + "\r\n")
	}
	rdates.WriteString("END:VEVENT\r\n")
	overrides := rule(d, "FREQ=DAILY")
	for i := range 2000 {
		day := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 3*i)
		rid := "RECURRENCE-ID:" + day.Format("20060102T150405Z")
		if i%2 == 1 {
			rid = "RECURRENCE-ID;RANGE=THISANDFUTURE:" + day.Format("20060102T150405Z")
		}
		overrides += vevent(uid, rid, "DTSTART:"+day.Add(time.Hour).Format("20060102T150405Z"), "DURATION:PT2H", fmt.Sprint("SUMMARY:override ", i))
	}
	all := "FREQ=YEARLY;BYMONTH=" + numList(1, 12) + ";BYWEEKNO=" + numList(1, 53) + ";BYYEARDAY=" + numList(1, 366) +
		";BYMONTHDAY=" + numList(1, 31) + ";BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR=" + numList(0, 23) + ";BYMINUTE=" + numList(0, 59) +
		";BYSECOND=" + numList(0, 59) + ";BYSETPOS=1,-1"
	return []struct{ name, comps string }{
		{"SECONDLY without end", rule(d, "FREQ=SECONDLY")},
		{"MINUTELY without end", rule(d, "FREQ=MINUTELY")},
		{"SECONDLY COUNT 2^32", rule(d, "FREQ=SECONDLY;COUNT=4294967296")},
		{"SECONDLY on February 30", rule(d, "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30")},
		{"YEARLY BYMONTHDAY=31 BYMONTH=2", rule(d, "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31")},
		{"MONTHLY February 30", rule(d, "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=30")},
		{"BYYEARDAY=366 from a non-leap year", rule("20230101T000000Z", "FREQ=YEARLY;BYYEARDAY=366")},
		{"BYWEEKNO=53", rule(d, "FREQ=YEARLY;BYWEEKNO=53;BYDAY=TH")},
		{"BYSETPOS over a huge set", rule(d, "FREQ=YEARLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR="+numList(0, 23)+";BYSETPOS="+numList(1, 366))},
		{"INTERVAL 2^31-1", rule(d, "FREQ=DAILY;INTERVAL=2147483647")},
		{"INTERVAL beyond int64", rule(d, "FREQ=SECONDLY;INTERVAL=99999999999999999999")},
		{"COUNT 2^31-1", rule(d, "FREQ=DAILY;COUNT=2147483647")},
		{"UNTIL before DTSTART", rule(d, "FREQ=DAILY;UNTIL=20000101T000000Z")},
		{"DAILY INTERVAL=7 BYDAY off DTSTART's weekday", rule(d, "FREQ=DAILY;INTERVAL=7;BYDAY=TU")},
		{"YEARLY with every BY* part", rule(d, all)},
		{"BYHOUR BYMINUTE BYSECOND full lists", rule(d, "FREQ=DAILY;BYHOUR="+numList(0, 23)+";BYMINUTE="+numList(0, 59)+";BYSECOND="+numList(0, 59))},
		{"HOURLY in a DST gap", vevent(uid, "DTSTART;TZID=Europe/Berlin:20240331T023000", "DURATION:PT1M", "RRULE:FREQ=MINUTELY;BYHOUR=2;BYMONTH=3;BYDAY=-1SU")},
		{"5,000 RDATEs and 5,000 EXDATEs", rdates.String()},
		{"2,000 overrides, half THISANDFUTURE", overrides},
	}
}

// TestMatrixPathologicalRecurrence stores each pathological object in a
// calendar of its own and in one shared calendar, then asks for it with
// calendar-query (time-range over three centuries, and with expand over
// one), free-busy-query, and through a merged calendar of all of them.
// Every request must come back with at most the instance cap per object;
// durations are reported, and only a request slower than the hang bound
// fails. No goroutine may be left behind.
func TestMatrixPathologicalRecurrence(t *testing.T) {
	const hang = 10 * time.Second
	e := newEnv(t)
	client := e.srv.Client()
	base := runtime.NumGoroutine()
	var durs []time.Duration
	timed := func(user, method, path, body string, hdr ...string) (*http.Response, time.Duration) {
		t.Helper()
		t0 := time.Now()
		resp := e.do(user, method, path, body, hdr...)
		b := readAll(t, resp)
		d := time.Since(t0)
		durs = append(durs, d)
		if d > hang {
			t.Errorf("%s %s took %v (hang bound %v)", method, path, d, hang)
		}
		resp.Body = io.NopCloser(strings.NewReader(b))
		return resp, d
	}
	const wide = `start="19000101T000000Z" end="22000101T000000Z"`
	const century = `start="20000101T000000Z" end="21000101T000000Z"`
	filter := `<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range ` + wide + `/></c:comp-filter></c:comp-filter></c:filter>`
	rangeQuery := cq + `<d:prop><d:getetag/></d:prop>` + filter + `</c:calendar-query>`
	expandQuery := cq + `<d:prop><c:calendar-data><c:expand ` + century + `/></c:calendar-data></d:prop>` + filter + `</c:calendar-query>`
	limitQuery := cq + `<d:prop><c:calendar-data><c:limit-recurrence-set ` + century + `/></c:calendar-data></d:prop>` + filter + `</c:calendar-query>`
	fbQuery := `<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav"><c:time-range ` + century + `/></c:free-busy-query>`
	// instances counts the expanded instances of every object of a
	// calendar-query answer and fails above the cap.
	instances := func(resp *http.Response, what string) int {
		t.Helper()
		ms := decodeMS(t, resp)
		most := 0
		for _, r := range ms.Responses {
			if d := ms.prop(r.Href, nsCalDAV, "calendar-data"); d != nil {
				n := strings.Count(d.Text, "BEGIN:VEVENT")
				if n > e.h.maxInstances && !strings.Contains(d.Text, "RRULE") {
					t.Errorf("%s: %s expanded to %d instances, cap %d", what, r.Href, n, e.h.maxInstances)
				}
				most = max(most, n)
			}
		}
		return most
	}

	cases := pathologicalRecurrence("patho")
	var members []string
	refused, capped := 0, 0
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cal := fmt.Sprint("p", i)
			if _, err := e.store.CreateCalendar(cache.Calendar{User: "alice", ID: cal, Components: []string{"VEVENT"}}); err != nil {
				t.Fatal(err)
			}
			body := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + tc.comps + "END:VCALENDAR\r\n"
			resp, _ := timed("alice", "PUT", "/dav/calendars/alice/"+cal+"/patho.ics", body, ct, icsType)
			if resp.StatusCode == http.StatusForbidden {
				// Refusing a rule that cannot be expanded is a capped answer too.
				wantPrecondition(t, resp, http.StatusForbidden, nsCalDAV, "valid-calendar-data")
				refused++
				t.Logf("PUT refused: %s", readAll(t, resp))
				return
			}
			wantStatus(t, resp, http.StatusCreated)
			members = append(members, cal)
			wantStatus(t, e.do("alice", "PUT", fmt.Sprintf("/dav/calendars/alice/personal/patho-%d.ics", i),
				strings.ReplaceAll(body, "UID:patho", fmt.Sprint("UID:patho-", i)), ct, icsType), http.StatusCreated)
			path := "/dav/calendars/alice/" + cal + "/"
			resp, dRange := timed("alice", "REPORT", path, rangeQuery, "Depth", "1", ct, xmlType)
			decodeMS(t, resp)
			resp, dExpand := timed("alice", "REPORT", path, expandQuery, "Depth", "1", ct, xmlType)
			n := instances(resp, "expand")
			if n >= e.h.maxInstances {
				capped++
			}
			resp, dLimit := timed("alice", "REPORT", path, limitQuery, "Depth", "1", ct, xmlType)
			decodeMS(t, resp)
			resp, dFB := timed("alice", "REPORT", path, fbQuery, "Depth", "1", ct, xmlType)
			wantStatus(t, resp, http.StatusOK)
			t.Logf("%d instances expanded; time-range %v, expand %v, limit %v, free-busy %v", n,
				dRange.Round(time.Millisecond), dExpand.Round(time.Millisecond), dLimit.Round(time.Millisecond), dFB.Round(time.Millisecond))
		})
	}
	// All of them at once: one calendar, and a merged view of all of them.
	if _, err := e.store.CreateCalendar(cache.Calendar{User: "alice", ID: "everything", Kind: kindMerged, Members: members}); err != nil {
		t.Fatal(err)
	}
	var whole []string
	for _, path := range []string{"/dav/calendars/alice/personal/", "/dav/calendars/alice/everything/"} {
		resp, d1 := timed("alice", "REPORT", path, expandQuery, "Depth", "1", ct, xmlType)
		n := instances(resp, path)
		resp, d2 := timed("alice", "REPORT", path, fbQuery, "Depth", "1", ct, xmlType)
		wantStatus(t, resp, http.StatusOK)
		resp, d3 := timed("alice", "GET", path, "")
		wantStatus(t, resp, http.StatusOK)
		whole = append(whole, fmt.Sprintf("%s expand %v (most instances %d), free-busy %v, GET %v", path,
			d1.Round(time.Millisecond), n, d2.Round(time.Millisecond), d3.Round(time.Millisecond)))
	}

	client.CloseIdleConnections()
	e.srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	after := runtime.NumGoroutine()
	if after > base {
		t.Errorf("%d goroutines left running (%d before)", after, base)
	}
	slices.Sort(durs)
	t.Logf("MATRIX pathological-recurrence: %d objects (%d refused at PUT, %d expanded to the %d-instance cap), %d requests; max %v, p99 %v, median %v; goroutines %d before, %d after",
		len(cases), refused, capped, e.h.maxInstances, len(durs), durs[len(durs)-1].Round(time.Millisecond),
		durs[len(durs)*99/100].Round(time.Millisecond), durs[len(durs)/2].Round(time.Millisecond), base, after)
	for _, w := range whole {
		t.Logf("MATRIX pathological-recurrence: all objects at once: %s", w)
	}
}

// countListener counts the bytes the server reads from each connection it
// accepts.
type countListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*countConn
}

type countConn struct {
	net.Conn
	n atomic.Int64
	// answered is n when the server began to write its answer (-1: not yet).
	answered atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.answered.CompareAndSwap(-1, c.n.Load())
	return c.Conn.Write(p)
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// CloseWrite lets the server half-close the connection (it sends its FIN
// before it closes a connection whose request body it did not read).
func (c *countConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countConn{Conn: c}
	cc.answered.Store(-1)
	l.mu.Lock()
	l.conns = append(l.conns, cc)
	l.mu.Unlock()
	return cc, nil
}

// last returns the connection accepted last.
func (l *countListener) last() *countConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[len(l.conns)-1]
}

// rawExchange sends head and then body over a new connection to addr,
// never sending anything more (the rest of the body the head announces
// stays unsent), and reads the response. served is called once the whole
// response is in. With waitClose it then reports whether the server
// closed the connection.
func rawExchange(t *testing.T, addr, method, path, head string, body []byte, hang time.Duration, served func(), waitClose bool) (*http.Response, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hang))
	var wg sync.WaitGroup
	wg.Go(func() {
		// Errors are expected: the server may close while this writes.
		if _, err := conn.Write([]byte(head)); err == nil {
			conn.Write(body)
		}
	})
	defer wg.Wait()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: method, URL: &url.URL{Path: path}})
	if err != nil {
		t.Fatalf("%s %s: no response while the body was incomplete: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response body: %v", method, path, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	served()
	if !waitClose {
		return resp, false
	}
	// The server closes a connection whose request body it did not read
	// (with a reset if unread bytes are left in its socket buffer).
	_, err = br.ReadByte()
	var ne net.Error
	return resp, err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// chunked encodes b as chunks of at most 16 KiB, without the last chunk.
func chunked(b []byte) []byte {
	var out bytes.Buffer
	for len(b) > 0 {
		n := min(len(b), 16<<10)
		fmt.Fprintf(&out, "%x\r\n", n)
		out.Write(b[:n])
		out.WriteString("\r\n")
		b = b[n:]
	}
	return out.Bytes()
}

// TestMatrixSizeCaps sends bodies larger than MaxResourceSize to PUT and
// to the XML methods over raw connections that never send the whole body:
// announced by Content-Length (with and without Expect: 100-continue),
// the 413 must come after at most a prefix; chunked, after the server
// read at most the cap and a little. Each answer carries
// CALDAV:max-resource-size, and nothing is stored.
func TestMatrixSizeCaps(t *testing.T) {
	const maxSize = 256 << 10
	const hang = 10 * time.Second
	e := newEnv(t, func(o *Options) { o.MaxResourceSize = maxSize })
	srv := httptest.NewUnstartedServer(e.h)
	cl := &countListener{Listener: srv.Listener}
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	before := fuzzSnapshot(t, e.store)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+testPassword))

	ics := []byte(strings.Replace(event("big", "big", "20240101T100000Z", "20240101T110000Z"), "SUMMARY:big", "SUMMARY:"+strings.Repeat("x", 4*maxSize), 1))
	xmlBody := func(open, close string) []byte {
		return []byte(open + strings.Repeat(" ", 4*maxSize) + close)
	}
	const pf = `<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop>`
	const q = `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop>`
	const pp = `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>`
	const mk = `<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>`
	requests := []struct {
		method, path, ctype string
		body                []byte
	}{
		{"PUT", "/dav/calendars/alice/personal/big.ics", icsType, ics},
		{"PROPFIND", "/dav/calendars/alice/personal/", xmlType, xmlBody(pf, `</d:propfind>`)},
		{"REPORT", "/dav/calendars/alice/personal/", xmlType, xmlBody(q, `</c:calendar-query>`)},
		{"PROPPATCH", "/dav/calendars/alice/personal/", xmlType, xmlBody(pp, `</d:displayname></d:prop></d:set></d:propertyupdate>`)},
		{"MKCALENDAR", "/dav/calendars/alice/big/", xmlType, xmlBody(mk, `</d:displayname></d:prop></d:set></c:mkcalendar>`)},
	}
	const prefix = 64 << 10 // what is sent of a body announced by Content-Length
	var lines []string
	cases := 0
	var maxDur time.Duration
	for _, r := range requests {
		for _, mode := range []string{"content-length", "expect-100", "chunked"} {
			t.Run(r.method+" "+mode, func(t *testing.T) {
				cases++
				head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: %s\r\nDepth: 0\r\n", r.method, r.path, addr, auth, r.ctype)
				var send []byte
				switch mode {
				case "content-length":
					head += fmt.Sprintf("Content-Length: %d\r\n\r\n", len(r.body))
					send = r.body[:prefix]
				case "expect-100":
					head += fmt.Sprintf("Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(r.body))
				case "chunked":
					// A little more than the cap is sent, so the server can hit
					// it; the rest of the body and its last chunk never are.
					head += "Transfer-Encoding: chunked\r\n\r\n"
					send = chunked(r.body[:maxSize+prefix])
				}
				var d time.Duration
				var read int64
				t0 := time.Now()
				// A chunked body has no announced end: after its answer the
				// server reads on (up to 256 KiB, net/http's drain) for a
				// chance to reuse the connection, so only the others are
				// watched until the server closes.
				resp, closed := rawExchange(t, addr, r.method, r.path, head, send, hang, func() {
					d, read = time.Since(t0), cl.last().answered.Load()-int64(len(head))
				}, mode != "chunked")
				maxDur = max(maxDur, d)
				if d > hang {
					t.Errorf("413 after %v (hang bound %v)", d, hang)
				}
				if resp.StatusCode == http.StatusContinue {
					t.Fatalf("server sent 100 Continue for a body over the cap")
				}
				wantPrecondition(t, resp, http.StatusRequestEntityTooLarge, nsCalDAV, "max-resource-size")
				// Before answering, the server read at most the cap, the
				// chunk framing and one buffer (4 KiB) beyond.
				if limit := int64(maxSize + 8<<10); read > limit {
					t.Errorf("server read %d body bytes before answering, more than %d", read, limit)
				}
				if mode != "chunked" && !closed {
					t.Errorf("server kept the connection open after refusing an unread body")
				}
				lines = append(lines, fmt.Sprintf("%s %s: 413 after %v; the server had read %d of the %d body bytes (%d sent) when it answered",
					r.method, mode, d.Round(time.Microsecond), max(read, 0), len(r.body), len(send)))
			})
		}
	}
	matrixUnchanged(t, e, before, "requests over the size cap")
	// Still serving.
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/small.ics", event("small", "s", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	t.Logf("MATRIX size-caps: %d cases (5 methods x Content-Length, Expect: 100-continue, chunked), cap %d bytes, all 413 max-resource-size; max duration %v",
		cases, maxSize, maxDur.Round(time.Microsecond))
	for _, l := range lines {
		t.Logf("MATRIX size-caps: %s", l)
	}
}

// hostileXMLMethods are the XML requests of TestMatrixHostileXML: a
// valid body of each is open + inside + close, where inside goes into a
// DAV:prop element.
var hostileXMLMethods = []struct{ name, method, path, open, close string }{
	{"PROPFIND", "PROPFIND", "/dav/calendars/alice/personal/",
		`<d:propfind xmlns:d="DAV:"><d:prop>`, `<d:getetag/></d:prop></d:propfind>`},
	{"calendar-query", "REPORT", "/dav/calendars/alice/personal/",
		`<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>`,
		`<d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>`},
	{"calendar-multiget", "REPORT", "/dav/calendars/alice/personal/",
		`<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>`,
		`<d:getetag/></d:prop><d:href>/dav/calendars/alice/personal/exist.ics</d:href></c:calendar-multiget>`},
	{"sync-collection", "REPORT", "/dav/calendars/alice/personal/",
		`<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop>`,
		`<d:getetag/></d:prop></d:sync-collection>`},
	{"PROPPATCH", "PROPPATCH", "/dav/calendars/alice/personal/",
		`<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>`, `<d:displayname>renamed</d:displayname></d:prop></d:set></d:propertyupdate>`},
	{"MKCALENDAR", "MKCALENDAR", "/dav/calendars/alice/hostile/",
		`<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>`,
		`<d:displayname>new</d:displayname></d:prop></d:set></c:mkcalendar>`},
}

// TestMatrixHostileXML sends XML bombs, external entities and DTDs
// (pointing at a listener the test owns), deep nesting and huge
// attributes in the bodies of PROPFIND, REPORT (calendar-query,
// calendar-multiget, sync-collection), PROPPATCH and MKCALENDAR. Each is
// refused with 400 (413 over the size cap), the owned listener is never
// contacted, and nothing in the store changes.
func TestMatrixHostileXML(t *testing.T) {
	const maxSize = 4 << 20
	const hang = 10 * time.Second
	e := newEnv(t, func(o *Options) { o.MaxResourceSize = maxSize })
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/exist.ics", event("exist", "x", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	// The target of every external reference: any connection to it is a failure.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var contacted atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			contacted.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	ext := "http://" + ln.Addr().String()
	before := fuzzSnapshot(t, e.store)

	var laughs strings.Builder
	laughs.WriteString(`<!DOCTYPE lolz [<!ENTITY lol0 "lol">`)
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&laughs, `<!ENTITY lol%d "%s">`, i, strings.Repeat(fmt.Sprintf("&lol%d;", i-1), 10))
	}
	laughs.WriteString(`]>`)
	manyAttrs := new(strings.Builder)
	manyAttrs.WriteString("<d:getetag")
	for i := range 50000 {
		fmt.Fprintf(manyAttrs, ` a%d="x"`, i)
	}
	manyAttrs.WriteString("/>")
	payloads := []struct {
		name, prolog, inside string
		whole                string // replaces the whole body
		code                 int
	}{
		{name: "billion laughs", prolog: `<?xml version="1.0"?>` + laughs.String(), inside: `<d:displayname>&lol9;</d:displayname>`},
		{name: "external entity over HTTP", prolog: `<!DOCTYPE d [<!ENTITY xxe SYSTEM "` + ext + `/xxe">]>`, inside: `<d:displayname>&xxe;</d:displayname>`},
		{name: "external entity file:///etc/passwd", prolog: `<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>`, inside: `<d:displayname>&xxe;</d:displayname>`},
		{name: "parameter entity", prolog: `<!DOCTYPE d [<!ENTITY % ext SYSTEM "` + ext + `/dtd"> %ext;]>`},
		{name: "external DTD", prolog: `<!DOCTYPE d SYSTEM "` + ext + `/dtd">`},
		{name: "public external DTD", prolog: `<!DOCTYPE d PUBLIC "-//x//EN" "` + ext + `/dtd">`},
		{name: "bare DOCTYPE", prolog: `<!DOCTYPE d>`},
		{name: "entity without a DOCTYPE", inside: `<d:displayname>&xxe;</d:displayname>`},
		{name: "stylesheet processing instruction", prolog: `<?xml-stylesheet href="` + ext + `/xsl"?>`},
		{name: "UTF-16 declared", prolog: `<?xml version="1.0" encoding="UTF-16"?>`},
		{name: "10,000 deep inside prop", inside: strings.Repeat("<d:x>", 10000) + strings.Repeat("</d:x>", 10000)},
		{name: "100 deep inside prop", inside: strings.Repeat("<d:x>", 100) + strings.Repeat("</d:x>", 100)},
		{name: "10,000 deep without a DAV element", whole: strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000)},
		{name: "1 MiB attribute", inside: `<d:getetag x="` + strings.Repeat("A", 1<<20) + `"/>`},
		{name: "50,000 attributes", inside: manyAttrs.String()},
		{name: "attribute over the cap", inside: `<d:getetag x="` + strings.Repeat("A", maxSize) + `"/>`, code: http.StatusRequestEntityTooLarge},
	}
	statuses := map[int]int{}
	var maxDur time.Duration
	var slowest string
	cases := 0
	for _, m := range hostileXMLMethods {
		for _, p := range payloads {
			t.Run(m.name+" "+p.name, func(t *testing.T) {
				cases++
				body := p.prolog + m.open + p.inside + m.close
				if p.whole != "" {
					body = p.whole
				}
				want := p.code
				if want == 0 {
					want = http.StatusBadRequest
				}
				t0 := time.Now()
				resp := e.do("alice", m.method, m.path, body, "Depth", "1", ct, xmlType)
				b := readAll(t, resp)
				d := time.Since(t0)
				if d > maxDur {
					maxDur, slowest = d, m.name+" "+p.name
				}
				if d > hang {
					t.Errorf("took %v (hang bound %v)", d, hang)
				}
				statuses[resp.StatusCode]++
				if resp.StatusCode != want {
					t.Fatalf("status %d, want %d; body:\n%.400s", resp.StatusCode, want, b)
				}
				if want == http.StatusRequestEntityTooLarge {
					resp.Body = io.NopCloser(strings.NewReader(b))
					wantPrecondition(t, resp, want, nsCalDAV, "max-resource-size")
				}
				matrixUnchanged(t, e, before, "a refused "+m.method)
			})
		}
	}
	// Give a stray fetch a moment to arrive before counting.
	time.Sleep(50 * time.Millisecond)
	if n := contacted.Load(); n != 0 {
		t.Errorf("the external-entity listener was contacted %d times", n)
	}
	// Still serving.
	decodeMS(t, e.do("alice", "PROPFIND", "/dav/calendars/alice/personal/", hostileXMLMethods[0].open+hostileXMLMethods[0].close, "Depth", "1", ct, xmlType))
	t.Logf("MATRIX hostile-xml: %d cases (%d payloads x %d requests: PROPFIND, calendar-query, calendar-multiget, sync-collection, PROPPATCH, MKCALENDAR); statuses %v; max duration %v (%s); external listener contacted %d times",
		cases, len(payloads), len(hostileXMLMethods), statuses, maxDur.Round(time.Microsecond), slowest, contacted.Load())
}
