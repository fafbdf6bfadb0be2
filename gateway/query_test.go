package gateway

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// queryNames runs a calendar-query with the given filter body and returns
// the sorted resource names that matched.
func queryNames(t *testing.T, e *env, filter string) []string {
	t.Helper()
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter>` + filter + `</c:filter></c:calendar-query>`
	ms := decodeMS(t, e.do("alice", "REPORT", "/dav/calendars/alice/personal/", body, "Depth", "1", ct, xmlType))
	var out []string
	for _, h := range ms.hrefs() {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(h, "/dav/calendars/alice/personal/"), ".ics"))
	}
	sort.Strings(out)
	return out
}

func putRaw(t *testing.T, e *env, name, comps string) {
	t.Helper()
	body := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + comps + "END:VCALENDAR\r\n"
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/"+name+".ics", body, ct, icsType), http.StatusCreated)
}

func vevent(uid string, lines ...string) string {
	return "BEGIN:VEVENT\r\nUID:" + uid + "\r\nDTSTAMP:20240101T000000Z\r\n" + strings.Join(lines, "\r\n") + "\r\nEND:VEVENT\r\n"
}

func vtodo(uid string, lines ...string) string {
	s := "BEGIN:VTODO\r\nUID:" + uid + "\r\nDTSTAMP:20240101T000000Z\r\n"
	if len(lines) > 0 {
		s += strings.Join(lines, "\r\n") + "\r\n"
	}
	return s + "END:VTODO\r\n"
}

func TestQueryTextAndParamFilters(t *testing.T) {
	e := newEnv(t)
	putRaw(t, e, "standup", vevent("standup", "DTSTART:20240301T090000Z", "DTEND:20240301T091500Z", "SUMMARY:Daily Standup", "LOCATION:Room 1",
		"ATTENDEE;PARTSTAT=ACCEPTED;CN=Bob:mailto:bob@example.com", "CATEGORIES:WORK,MEETING"))
	putRaw(t, e, "dentist", vevent("dentist", "DTSTART:20240302T140000Z", "DTEND:20240302T150000Z", "SUMMARY:Dentist\\, bring card",
		"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:alice@example.com"))
	putRaw(t, e, "milk", vtodo("milk", "SUMMARY:Buy milk", "STATUS:NEEDS-ACTION"))

	cal := func(inner string) string { return `<c:comp-filter name="VCALENDAR">` + inner + `</c:comp-filter>` }
	ev := func(inner string) string { return cal(`<c:comp-filter name="VEVENT">` + inner + `</c:comp-filter>`) }
	for _, tc := range []struct {
		name   string
		filter string
		want   []string
	}{
		{"all", cal(""), []string{"dentist", "milk", "standup"}},
		{"events", ev(""), []string{"dentist", "standup"}},
		{"todos", cal(`<c:comp-filter name="VTODO"/>`), []string{"milk"}},
		{"no todos", cal(`<c:comp-filter name="VTODO"><c:is-not-defined/></c:comp-filter>`), []string{"dentist", "standup"}},
		{"casemap", ev(`<c:prop-filter name="SUMMARY"><c:text-match collation="i;ascii-casemap">STANDUP</c:text-match></c:prop-filter>`), []string{"standup"}},
		{"default collation", ev(`<c:prop-filter name="SUMMARY"><c:text-match>daily</c:text-match></c:prop-filter>`), []string{"standup"}},
		{"octet is case-sensitive", ev(`<c:prop-filter name="SUMMARY"><c:text-match collation="i;octet">STANDUP</c:text-match></c:prop-filter>`), nil},
		{"octet match", ev(`<c:prop-filter name="SUMMARY"><c:text-match collation="i;octet">Standup</c:text-match></c:prop-filter>`), []string{"standup"}},
		{"negate", ev(`<c:prop-filter name="SUMMARY"><c:text-match negate-condition="yes">standup</c:text-match></c:prop-filter>`), []string{"dentist"}},
		{"escaped text", ev(`<c:prop-filter name="SUMMARY"><c:text-match>dentist, bring</c:text-match></c:prop-filter>`), []string{"dentist"}},
		{"prop not defined", ev(`<c:prop-filter name="LOCATION"><c:is-not-defined/></c:prop-filter>`), []string{"dentist"}},
		{"prop defined", ev(`<c:prop-filter name="LOCATION"/>`), []string{"standup"}},
		{"uid", cal(`<c:comp-filter name="VTODO"><c:prop-filter name="UID"><c:text-match collation="i;octet">milk</c:text-match></c:prop-filter></c:comp-filter>`), []string{"milk"}},
		{"param match", ev(`<c:prop-filter name="ATTENDEE"><c:param-filter name="PARTSTAT"><c:text-match>needs-action</c:text-match></c:param-filter></c:prop-filter>`), []string{"dentist"}},
		{"param not defined", ev(`<c:prop-filter name="ATTENDEE"><c:param-filter name="CN"><c:is-not-defined/></c:param-filter></c:prop-filter>`), []string{"dentist"}},
		{"two props and", ev(`<c:prop-filter name="SUMMARY"><c:text-match>a</c:text-match></c:prop-filter><c:prop-filter name="LOCATION"><c:text-match>room</c:text-match></c:prop-filter>`), []string{"standup"}},
		{"categories", ev(`<c:prop-filter name="CATEGORIES"><c:text-match>meeting</c:text-match></c:prop-filter>`), []string{"standup"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := queryNames(t, e, tc.filter); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	// Invalid filters.
	for _, tc := range []struct{ filter, cond string }{
		{`<c:comp-filter name="VEVENT"/>`, "valid-filter"},
		{`<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="2024-01-01"/></c:comp-filter></c:comp-filter>`, "valid-filter"},
		{`<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range/></c:comp-filter></c:comp-filter>`, "valid-filter"},
		{`<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:prop-filter name="SUMMARY"><c:text-match collation="i;klingon">x</c:text-match></c:prop-filter></c:comp-filter></c:comp-filter>`, "supported-collation"},
	} {
		body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter>` + tc.filter + `</c:filter></c:calendar-query>`
		wantPrecondition(t, e.do("alice", "REPORT", "/dav/calendars/alice/personal/", body, "Depth", "1", ct, xmlType), http.StatusForbidden, nsCalDAV, tc.cond)
	}
}

// TestQueryTimeRange checks the VEVENT, VTODO and VJOURNAL rows of the
// RFC 4791 §9.9 table for one-off components, including all-day events,
// zero-length events and events that exactly fill the range.
func TestQueryTimeRange(t *testing.T) {
	e := newEnv(t)
	// Events around the range [2024-03-10T00:00Z, 2024-03-11T00:00Z).
	putRaw(t, e, "ev-inside", vevent("a", "DTSTART:20240310T100000Z", "DTEND:20240310T110000Z"))
	putRaw(t, e, "ev-before", vevent("b", "DTSTART:20240309T100000Z", "DTEND:20240309T110000Z"))
	putRaw(t, e, "ev-ends-at-start", vevent("c", "DTSTART:20240309T230000Z", "DTEND:20240310T000000Z"))
	putRaw(t, e, "ev-overlaps-start", vevent("d", "DTSTART:20240309T230000Z", "DTEND:20240310T010000Z"))
	putRaw(t, e, "ev-spans", vevent("f", "DTSTART:20240301T000000Z", "DTEND:20240401T000000Z"))
	putRaw(t, e, "ev-fills", vevent("g", "DTSTART:20240310T000000Z", "DTEND:20240311T000000Z"))
	putRaw(t, e, "ev-starts-at-end", vevent("h", "DTSTART:20240311T000000Z", "DTEND:20240311T010000Z"))
	putRaw(t, e, "ev-duration", vevent("i", "DTSTART:20240309T220000Z", "DURATION:PT3H"))
	putRaw(t, e, "ev-zero-at-start", vevent("j", "DTSTART:20240310T000000Z", "DURATION:PT0S"))
	putRaw(t, e, "ev-instant-at-end", vevent("k", "DTSTART:20240311T000000Z"))
	putRaw(t, e, "ev-allday", vevent("l", "DTSTART;VALUE=DATE:20240310"))
	putRaw(t, e, "ev-allday-before", vevent("m", "DTSTART;VALUE=DATE:20240309", "DTEND;VALUE=DATE:20240310"))
	putRaw(t, e, "ev-allday-multi", vevent("n", "DTSTART;VALUE=DATE:20240308", "DTEND;VALUE=DATE:20240312"))
	putRaw(t, e, "ev-tz", vevent("o", "DTSTART;TZID=Europe/Berlin:20240310T003000", "DTEND;TZID=Europe/Berlin:20240310T013000"))              // 23:30Z-00:30Z
	putRaw(t, e, "ev-tz-before", vevent("p", "DTSTART;TZID=America/New_York:20240309T180000", "DTEND;TZID=America/New_York:20240309T190000")) // 23:00Z-00:00Z
	// Tasks, one per row of the VTODO table.
	putRaw(t, e, "todo-start-dur", vtodo("t1", "DTSTART:20240310T100000Z", "DURATION:PT1H"))
	putRaw(t, e, "todo-start-due", vtodo("t2", "DTSTART:20240309T100000Z", "DUE:20240310T100000Z"))
	putRaw(t, e, "todo-start", vtodo("t3", "DTSTART:20240310T050000Z"))
	putRaw(t, e, "todo-due", vtodo("t4", "DUE:20240310T120000Z"))
	putRaw(t, e, "todo-due-at-start", vtodo("t4b", "DUE:20240310T000000Z"))
	putRaw(t, e, "todo-completed-created", vtodo("t5", "CREATED:20240301T000000Z", "COMPLETED:20240305T000000Z"))
	putRaw(t, e, "todo-completed", vtodo("t6", "COMPLETED:20240310T120000Z"))
	putRaw(t, e, "todo-created", vtodo("t7", "CREATED:20240305T000000Z"))
	putRaw(t, e, "todo-created-later", vtodo("t7b", "CREATED:20240312T000000Z"))
	putRaw(t, e, "todo-nothing", vtodo("t8"))
	putRaw(t, e, "todo-past", vtodo("t9", "DTSTART:20240301T100000Z", "DUE:20240302T100000Z"))
	// Journals.
	putRaw(t, e, "journal-day", "BEGIN:VJOURNAL\r\nUID:j1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;VALUE=DATE:20240310\r\nEND:VJOURNAL\r\n")
	putRaw(t, e, "journal-time", "BEGIN:VJOURNAL\r\nUID:j2\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240309T120000Z\r\nEND:VJOURNAL\r\n")
	putRaw(t, e, "journal-none", "BEGIN:VJOURNAL\r\nUID:j3\r\nDTSTAMP:20240101T000000Z\r\nEND:VJOURNAL\r\n")

	tr := `<c:time-range start="20240310T000000Z" end="20240311T000000Z"/>`
	comp := func(name string) string {
		return `<c:comp-filter name="VCALENDAR"><c:comp-filter name="` + name + `">` + tr + `</c:comp-filter></c:comp-filter>`
	}
	wantEvents := []string{"ev-allday", "ev-allday-multi", "ev-duration", "ev-fills", "ev-inside", "ev-overlaps-start", "ev-spans", "ev-tz", "ev-zero-at-start"}
	if got := queryNames(t, e, comp("VEVENT")); !slices.Equal(got, wantEvents) {
		t.Errorf("VEVENT time-range:\n got %v\nwant %v", got, wantEvents)
	}
	// Rows of RFC 4791 §9.9 for VTODO: start-dur (overlap), start-due
	// (due inside), start (inside), due (inside), due exactly at start (not:
	// start < DUE fails), completed+created (both before: no), completed
	// (inside), created before end (yes), created after (no), nothing (yes).
	wantTodos := []string{"todo-completed", "todo-created", "todo-due", "todo-nothing", "todo-start", "todo-start-due", "todo-start-dur"}
	if got := queryNames(t, e, comp("VTODO")); !slices.Equal(got, wantTodos) {
		t.Errorf("VTODO time-range:\n got %v\nwant %v", got, wantTodos)
	}
	if got := queryNames(t, e, comp("VJOURNAL")); !slices.Equal(got, []string{"journal-day"}) {
		t.Errorf("VJOURNAL time-range: got %v", got)
	}
	// Open-ended ranges.
	open := `<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20240310T230000Z"/></c:comp-filter></c:comp-filter>`
	if got := queryNames(t, e, open); !slices.Equal(got, []string{"ev-allday", "ev-allday-multi", "ev-fills", "ev-instant-at-end", "ev-spans", "ev-starts-at-end"}) {
		t.Errorf("start-only range: got %v", got)
	}
	// calendar-data in a query is the stored bytes.
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data/></d:prop><c:filter>` +
		`<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:prop-filter name="UID"><c:text-match collation="i;octet">a</c:text-match></c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	ms := decodeMS(t, e.do("alice", "REPORT", "/dav/calendars/alice/personal/", body, "Depth", "1", ct, xmlType))
	want := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + vevent("a", "DTSTART:20240310T100000Z", "DTEND:20240310T110000Z") + "END:VCALENDAR\r\n"
	if d := ms.prop("/dav/calendars/alice/personal/ev-inside.ics", nsCalDAV, "calendar-data"); d == nil || d.Text != want {
		t.Fatalf("calendar-data in query: %v", fmt.Sprint(d))
	}
}

func TestQueryAlarmAndRecurrence(t *testing.T) {
	e := newEnv(t)
	// A daily meeting with a 15-minute alarm, one moved instance and one
	// excluded instance.
	putRaw(t, e, "daily", vevent("daily", "DTSTART;TZID=Europe/Berlin:20240325T090000", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=10",
		"EXDATE;TZID=Europe/Berlin:20240328T090000", "SUMMARY:Standup",
		"BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "END:VALARM")+
		vevent("daily", "RECURRENCE-ID;TZID=Europe/Berlin:20240327T090000", "DTSTART;TZID=Europe/Berlin:20240327T150000", "DURATION:PT1H", "SUMMARY:Moved"))
	putRaw(t, e, "once", vevent("once", "DTSTART:20240401T120000Z", "DTEND:20240401T130000Z"))
	rng := func(start, end string) string {
		return `<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="` + start + `" end="` + end + `"/></c:comp-filter></c:comp-filter>`
	}
	for _, tc := range []struct {
		name, filter string
		want         []string
	}{
		// 2024-03-27 09:00 CET (08:00Z) was moved to 15:00 CET (14:00Z).
		{"moved away", rng("20240327T073000Z", "20240327T093000Z"), nil},
		{"moved to", rng("20240327T133000Z", "20240327T143000Z"), []string{"daily"}},
		{"excluded", rng("20240328T073000Z", "20240328T093000Z"), nil},
		// After the DST change on 2024-03-31 the instance is 07:00Z.
		{"after DST", rng("20240402T065900Z", "20240402T070100Z"), []string{"daily"}},
		{"after the last instance", rng("20240404T000000Z", "20240405T000000Z"), nil},
		{"one-off", rng("20240401T000000Z", "20240402T000000Z"), []string{"daily", "once"}},
		{"alarm", `<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:comp-filter name="VALARM"><c:time-range start="20240326T074000Z" end="20240326T075000Z"/></c:comp-filter></c:comp-filter></c:comp-filter>`, []string{"daily"}},
		{"no alarm", `<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:comp-filter name="VALARM"><c:time-range start="20240326T080000Z" end="20240326T090000Z"/></c:comp-filter></c:comp-filter></c:comp-filter>`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := queryNames(t, e, tc.filter); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPathologicalRuleOverHTTP stores rules that make recurrence
// libraries hang and queries and expands them: every answer comes back
// with at most the instance cap.
func TestPathologicalRuleOverHTTP(t *testing.T) {
	e := newEnv(t)
	before := runtime.NumGoroutine()
	rules := []string{
		"FREQ=HOURLY;INTERVAL=2;BYHOUR=1",
		"FREQ=SECONDLY",
		"FREQ=MINUTELY;COUNT=1000000000",
		"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31",
		"FREQ=DAILY;BYSETPOS=400",
	}
	for i, r := range rules {
		putRaw(t, e, fmt.Sprint("p", i), vevent(fmt.Sprint("p", i), "DTSTART:20240101T000000Z", "DURATION:PT1S", "RRULE:"+r))
	}
	body := cq + `<d:prop><c:calendar-data><c:expand start="20240101T000000Z" end="20250101T000000Z"/></c:calendar-data></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">` +
		`<c:time-range start="20240101T000000Z" end="20250101T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	ms := decodeMS(t, e.do("alice", "REPORT", "/dav/calendars/alice/personal/", body, "Depth", "1", ct, xmlType))
	for _, r := range ms.Responses {
		d := ms.prop(r.Href, nsCalDAV, "calendar-data")
		if d == nil {
			continue
		}
		if n := strings.Count(d.Text, "BEGIN:VEVENT"); n > e.h.maxInstances {
			t.Errorf("%s: %d instances, cap %d", r.Href, n, e.h.maxInstances)
		}
	}
	e.srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("%d goroutines left running (before: %d)", n, before)
	}
}

// TestFloatingTimes checks that floating times and all-day events are
// read in the calendar's calendar-timezone, or the query's own
// CALDAV:timezone (RFC 4791 §9.9).
func TestFloatingTimes(t *testing.T) {
	e := newEnv(t)
	// 09:00 floating; in New York (UTC-5 in January) that is 14:00Z.
	putRaw(t, e, "floating", vevent("fl", "DTSTART:20240110T090000", "DTEND:20240110T100000"))
	putRaw(t, e, "allday", vevent("ad", "DTSTART;VALUE=DATE:20240111"))
	nyTZ := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTIMEZONE\r\nTZID:America/New_York\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n"
	rng := func(start, end string) string {
		return `<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="` + start + `" end="` + end + `"/></c:comp-filter></c:comp-filter>`
	}
	// Without a zone: UTC.
	if got := queryNames(t, e, rng("20240110T083000Z", "20240110T093000Z")); !slices.Equal(got, []string{"floating"}) {
		t.Fatalf("UTC reading: %v", got)
	}
	// The query's own timezone.
	body := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter>` +
		rng("20240110T133000Z", "20240110T143000Z") + `</c:filter><c:timezone>` + escape(nyTZ) + `</c:timezone></c:calendar-query>`
	names, _ := reportNames(t, e, "/dav/calendars/alice/personal/", body)
	if !slices.Equal(names, []string{"floating.ics"}) {
		t.Fatalf("query timezone: %v", names)
	}
	// The calendar's calendar-timezone.
	patch := `<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><c:calendar-timezone>` + escape(nyTZ) + `</c:calendar-timezone></d:prop></d:set></d:propertyupdate>`
	decodeMS(t, e.do("alice", "PROPPATCH", "/dav/calendars/alice/personal/", patch, ct, xmlType))
	if got := queryNames(t, e, rng("20240110T133000Z", "20240110T143000Z")); !slices.Equal(got, []string{"floating"}) {
		t.Fatalf("calendar-timezone reading: %v", got)
	}
	if got := queryNames(t, e, rng("20240110T083000Z", "20240110T093000Z")); len(got) != 0 {
		t.Fatalf("09:00Z should not match a 09:00 New York event: %v", got)
	}
	// The all-day event covers Jan 11 in New York: 05:00Z to 05:00Z.
	if got := queryNames(t, e, rng("20240111T020000Z", "20240111T040000Z")); len(got) != 0 {
		t.Fatalf("all-day event matched before its New York day began: %v", got)
	}
	if got := queryNames(t, e, rng("20240112T020000Z", "20240112T040000Z")); !slices.Equal(got, []string{"allday"}) {
		t.Fatalf("all-day event in New York evening: %v", got)
	}
}
