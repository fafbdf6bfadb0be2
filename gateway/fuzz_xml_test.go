package gateway

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/calgate/calgate/cache"
)

// errXMLDirective marks a document with a DOCTYPE or another markup
// declaration, which xmlWellFormed does not judge (the gateway refuses
// them all).
var errXMLDirective = errors.New("markup declaration")

// xmlWellFormed is the fuzz targets' own judge of a request or response
// body: nil if b is one well-formed, namespace-well-formed XML document.
// It uses encoding/xml only as a tokenizer and checks itself what the
// tokenizer leaves to its callers: matching end tags, one root element,
// no text outside it, the XML declaration only at the start, no repeated
// attribute, and every prefix bound.
func xmlWellFormed(b []byte) error {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark may come first
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	type open struct {
		name  xml.Name          // as written: Space is the prefix
		bound map[string]string // prefixes in scope
	}
	stack := []open{{bound: map[string]string{"xml": "http://www.w3.org/XML/1998/namespace"}}}
	roots := 0
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			switch {
			case len(stack) > 1:
				return fmt.Errorf("<%s:%s> not closed", stack[len(stack)-1].name.Space, stack[len(stack)-1].name.Local)
			case roots == 0:
				return errors.New("no root element")
			}
			return nil
		}
		if err != nil {
			return err
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 1 {
				if roots++; roots > 1 {
					return fmt.Errorf("second root element <%s>", t.Name.Local)
				}
			}
			if !qname(t.Name) {
				return fmt.Errorf("<%s:%s> is not a qualified name", t.Name.Space, t.Name.Local)
			}
			bound, cloned := top.bound, false
			seen := make(map[xml.Name]bool, len(t.Attr))
			for _, a := range t.Attr {
				if !qname(a.Name) {
					return fmt.Errorf("attribute %s:%s is not a qualified name", a.Name.Space, a.Name.Local)
				}
				if seen[a.Name] {
					return fmt.Errorf("attribute %s:%s repeated", a.Name.Space, a.Name.Local)
				}
				seen[a.Name] = true
				if a.Name.Space == "xmlns" {
					if a.Value == "" || a.Name.Local == "xmlns" {
						return fmt.Errorf("xmlns:%s=%q cannot be declared", a.Name.Local, a.Value)
					}
					if !cloned {
						bound, cloned = maps.Clone(bound), true
					}
					bound[a.Name.Local] = a.Value
				}
			}
			if p := t.Name.Space; p != "" && bound[p] == "" {
				return fmt.Errorf("prefix %q of <%s:%s> not bound", p, p, t.Name.Local)
			}
			for _, a := range t.Attr {
				if p := a.Name.Space; p != "" && p != "xmlns" && bound[p] == "" {
					return fmt.Errorf("prefix %q of attribute %s:%s not bound", p, p, a.Name.Local)
				}
			}
			stack = append(stack, open{name: t.Name, bound: bound})
		case xml.EndElement:
			if len(stack) == 1 || top.name != t.Name {
				return fmt.Errorf("unexpected </%s:%s>", t.Name.Space, t.Name.Local)
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 1 && len(bytes.Trim(t, " \t\r\n")) != 0 {
				return errors.New("text outside the root element")
			}
		case xml.ProcInst:
			if strings.EqualFold(t.Target, "xml") && off != 0 {
				return errors.New("XML declaration not at the start")
			}
		case xml.Directive:
			return errXMLDirective
		}
	}
}

// qname is a conservative test of a qualified name as the tokenizer
// split it: no colon left in an unprefixed name, and a local part that
// does not start with an ASCII character only allowed inside names.
func qname(n xml.Name) bool {
	if n.Space == "" {
		return !strings.Contains(n.Local, ":")
	}
	return n.Local != "" && !strings.ContainsRune("-.0123456789", rune(n.Local[0]))
}

// fuzzTarget is a request path of the fuzzed calendar store.
type fuzzTarget struct {
	path string
	cal  string // the calendar of alice a request to path may create or change
}

var fuzzTargets = []fuzzTarget{
	{"/dav/calendars/alice/personal/", "personal"},
	{"/dav/calendars/alice/personal/weekly.ics", "personal"},
	{"/dav/calendars/alice/", ""},
	{"/dav/calendars/alice/new/", "new"},
	{"/dav/calendars/alice/all/", "all"},
	{"/dav/calendars/alice/all/personal~weekly.ics", "all"},
	{"/dav/principals/alice/", ""},
	{"/dav/calendars/bob/personal/", ""},
}

var fuzzMethods = []string{"PROPFIND", "REPORT", "PROPPATCH", "MKCALENDAR", "MKCOL"}

// fuzzSel packs a method, a target and a Depth into the byte the fuzz
// target reads them from.
func fuzzSel(method, target, depth int) uint8 {
	return uint8(method + len(fuzzMethods)*(target+len(fuzzTargets)*depth))
}

func fuzzUnpack(sel uint8) (method string, t fuzzTarget, depth string) {
	n := int(sel)
	method = fuzzMethods[n%len(fuzzMethods)]
	n /= len(fuzzMethods)
	t = fuzzTargets[n%len(fuzzTargets)]
	n /= len(fuzzTargets)
	depth = []string{"0", "1"}[n%2]
	return method, t, depth
}

// fuzzObjects are stored in alice/personal before fuzzing: a one-off
// event, a weekly event in Europe/Berlin with an override and an EXDATE,
// and a task.
var fuzzObjects = map[string]string{
	"once.ics": event("once", "One-off", "20240110T100000Z", "20240110T110000Z"),
	"weekly.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" +
		"BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n" +
		"RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n" +
		"BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n" +
		"TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n" +
		"BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20240102T090000\r\n" +
		"DURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nEXDATE;TZID=Europe/Berlin:20240116T090000\r\n" +
		"SUMMARY:Weekly\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:x\r\nEND:VALARM\r\nEND:VEVENT\r\n" +
		"BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20240101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20240109T090000\r\n" +
		"DTSTART;TZID=Europe/Berlin:20240109T140000\r\nDURATION:PT1H\r\nSUMMARY:Moved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
	"task.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\nUID:task\r\n" +
		"DTSTAMP:20240101T000000Z\r\nDUE;VALUE=DATE:20240120\r\nSUMMARY:Task\r\nSTATUS:NEEDS-ACTION\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
}

// xmlSeeds are request bodies of real clients, the bodies of the
// gateway's tests (collected from its test files, so that new tests
// add seeds) and hostile ones.
func xmlSeeds(tb testing.TB) []string {
	seeds := []string{
		// DAVx5, discovery and calendar list.
		`<?xml version='1.0' encoding='UTF-8' ?><propfind xmlns="DAV:" xmlns:CAL="urn:ietf:params:xml:ns:caldav" xmlns:CS="http://calendarserver.org/ns/" xmlns:ical="http://apple.com/ns/ical/"><prop><current-user-privilege-set /><displayname /><CAL:calendar-description /><ical:calendar-color /><CAL:calendar-timezone /><CAL:supported-calendar-component-set /><resourcetype /><CS:source /><CAL:calendar-home-set /></prop></propfind>`,
		`<?xml version='1.0' encoding='UTF-8' ?><sync-collection xmlns="DAV:"><sync-token /><sync-level>1</sync-level><prop><getetag /></prop></sync-collection>`,
		// Thunderbird.
		`<?xml version="1.0" encoding="UTF-8"?>
<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:resourcetype/><D:owner/><D:current-user-principal/><D:current-user-privilege-set/><D:supported-report-set/><C:supported-calendar-component-set/><CS:getctag/></D:prop></D:propfind>`,
		`<?xml version="1.0" encoding="UTF-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop><D:href>/dav/calendars/alice/personal/once.ics</D:href><D:href>/dav/calendars/alice/personal/weekly.ics</D:href></C:calendar-multiget>`,
		// Apple Calendar.
		`<?xml version="1.0" encoding="UTF-8"?>
<B:calendar-query xmlns:B="urn:ietf:params:xml:ns:caldav">
  <A:prop xmlns:A="DAV:">
    <A:getetag/>
    <A:getcontenttype/>
  </A:prop>
  <B:filter>
    <B:comp-filter name="VCALENDAR">
      <B:comp-filter name="VEVENT">
        <B:time-range start="20240101T000000Z"/>
      </B:comp-filter>
    </B:comp-filter>
  </B:filter>
</B:calendar-query>`,
		`<?xml version="1.0" encoding="UTF-8"?>
<A:propertyupdate xmlns:A="DAV:"><A:set><A:prop><D:calendar-order xmlns:D="http://apple.com/ns/ical/">2</D:calendar-order><B:calendar-color xmlns:B="http://apple.com/ns/ical/" symbolic-color="custom">#FF2968FF</B:calendar-color></A:prop></A:set></A:propertyupdate>`,
		// Evolution, expand and limit.
		`<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data><C:comp name="VCALENDAR"><C:prop name="VERSION"/><C:comp name="VEVENT"><C:prop name="SUMMARY"/><C:prop name="UID"/><C:prop name="DTSTART"/></C:comp><C:comp name="VTIMEZONE"/></C:comp><C:expand start="20240101T000000Z" end="20240201T000000Z"/></C:calendar-data></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range start="20240101T000000Z" end="20240201T000000Z"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`,
		`<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data><C:limit-recurrence-set start="20240108T000000Z" end="20240115T000000Z"/></C:calendar-data></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY"><C:text-match collation="i;ascii-casemap" negate-condition="yes">moved</C:text-match></C:prop-filter><C:comp-filter name="VALARM"><C:time-range start="20240101T000000Z" end="20240301T000000Z"/></C:comp-filter></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`,
		`<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:allprop/><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VTODO"><C:prop-filter name="COMPLETED"><C:is-not-defined/></C:prop-filter><C:prop-filter name="DUE"><C:param-filter name="VALUE"><C:text-match>DATE</C:text-match></C:param-filter></C:prop-filter></C:comp-filter></C:comp-filter></C:filter><C:timezone>BEGIN:VCALENDAR&#13;
BEGIN:VTIMEZONE&#13;
TZID:Europe/Berlin&#13;
END:VTIMEZONE&#13;
END:VCALENDAR&#13;
</C:timezone></C:calendar-query>`,
		`<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20240101T000000Z" end="20240301T000000Z"/></C:free-busy-query>`,
		`<D:sync-collection xmlns:D="DAV:"><D:sync-token>http://calgate.invalid/sync/x-1</D:sync-token><D:sync-level>1</D:sync-level><D:limit><D:nresults>1</D:nresults></D:limit><D:prop><D:getetag/></D:prop></D:sync-collection>`,
		`<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>New</D:displayname><C:calendar-timezone><![CDATA[BEGIN:VCALENDAR
BEGIN:VTIMEZONE
TZID:UTC
END:VTIMEZONE
END:VCALENDAR
]]></C:calendar-timezone><C:supported-calendar-component-set><C:comp name="VTODO"/></C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>`,
		`<D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:resourcetype><D:collection/><C:calendar/></D:resourcetype><D:displayname>Via MKCOL</D:displayname></D:prop></D:set></D:mkcol>`,
		`<D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:example:dead"><D:set><D:prop><X:flavour lang="en">vanilla <X:b>bold</X:b></X:flavour></D:prop></D:set><D:remove><D:prop><D:displayname/></D:prop></D:remove></D:propertyupdate>`,
		`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getetag>"x"</D:getetag><D:displayname>refused with it</D:displayname></D:prop></D:set></D:propertyupdate>`,

		// Hostile: markup declarations, entities, depth, sizes.
		`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&lol2;</D:displayname></D:prop></D:propfind>`,
		`<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>&xxe;</D:displayname></D:prop></D:set></D:propertyupdate>`,
		`<!DOCTYPE D:propfind SYSTEM "http://127.0.0.1:1/dtd"><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`,
		`<?xml-stylesheet href="x"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`,
		`<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`,
		`<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>trailing`,
		`<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind><?xml version="1.0"?>`,
		`<D:propfind xmlns:D="DAV:"><D:prop><X:undeclared/></D:prop></D:propfind>`,
		`<D:propfind xmlns:D="DAV:" a="1" a="2"><D:allprop/></D:propfind>`,
		`<D:propfind xmlns:D="DAV:"><D:prop></D:propfind>`,
		`<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop>`,
		`</x><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`,
		`<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind></x><y>`,
		`<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&unknown;</D:displayname></D:prop></D:propfind>`,
		"<D:propfind xmlns:D=\"DAV:\"><D:prop><D:displayname>\x00\xff\xfe</D:displayname></D:prop></D:propfind>",
		"\xef\xbb\xbf<D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>",
		`<?xml version="1.0" encoding="ISO-8859-1"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`,
		"\u00a0", " \t\r\n", "", "BEGIN:VCALENDAR", "<", "<a", "<a/>", "<?xml version=\"1.0\"?>",
		strings.Repeat("<D:prop xmlns:D=\"DAV:\">", 70) + strings.Repeat("</D:prop>", 70),
		`<C:calendar-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:filter>` + strings.Repeat(`<C:comp-filter name="VCALENDAR">`, 12) +
			strings.Repeat(`</C:comp-filter>`, 12) + `</C:filter></C:calendar-query>`,
		`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname x="` + strings.Repeat("A", 64<<10) + `">n</D:displayname></D:prop></D:set></D:propertyupdate>`,
		`<D:propfind xmlns:D="DAV:"><D:prop>` + strings.Repeat(`<D:getetag xmlns:a="urn:a" xmlns:b="urn:b"/>`, 200) + `</D:prop></D:propfind>`,
	}
	// The bodies in the gateway's tests: every raw string literal that
	// starts like an XML element and declares a namespace.
	files, _ := filepath.Glob("*_test.go")
	lit := regexp.MustCompile("`(<[^`]*)`")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range lit.FindAllSubmatch(src, -1) {
			if s := string(m[1]); strings.Contains(s, "xmlns") && len(s) < 8<<10 {
				seeds = append(seeds, s)
			}
		}
	}
	return seeds
}

// guessSel picks a method and target for a seed body from its root.
func guessSel(body string, i int) uint8 {
	m, tgt := 1, 0 // REPORT on the calendar
	switch {
	case strings.Contains(body, "propfind"):
		m = 0
	case strings.Contains(body, "propertyupdate"):
		m = 2
	case strings.Contains(body, "mkcalendar"):
		m, tgt = 3, 3
	case strings.Contains(body, ":mkcol"):
		m, tgt = 4, 3
	}
	if i%3 == 1 && tgt == 0 {
		tgt = 4 // the merged calendar
	}
	return fuzzSel(m, tgt, i%2)
}

// fuzzState is what a request may not change unless it succeeded: the
// calendar records and object lists of both users.
type fuzzState struct {
	cals map[string][]cache.Calendar
	objs map[string][]cache.Object
}

func fuzzSnapshot(t *testing.T, st *cache.Store) fuzzState {
	t.Helper()
	s := fuzzState{cals: map[string][]cache.Calendar{}, objs: map[string][]cache.Object{}}
	for _, u := range []string{"alice", "bob"} {
		cals, err := st.ListCalendars(u)
		if err != nil {
			t.Fatal(err)
		}
		s.cals[u] = cals
		for _, c := range cals {
			objs, err := st.ListObjects(u, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) > 0 {
				s.objs[u+"/"+c.ID] = objs
			}
		}
	}
	return s
}

// fuzzRestore undoes what a successful request changed: it deletes created
// calendars and puts back the properties of changed ones.
func fuzzRestore(t *testing.T, st *cache.Store, before fuzzState) {
	t.Helper()
	after := fuzzSnapshot(t, st)
	for u, cals := range after.cals {
		old := make(map[string]cache.Calendar)
		for _, c := range before.cals[u] {
			old[c.ID] = c
		}
		for _, c := range cals {
			o, ok := old[c.ID]
			switch {
			case !ok:
				if err := st.DeleteCalendar(u, c.ID); err != nil {
					t.Fatal(err)
				}
			case !reflect.DeepEqual(o, c):
				if _, err := st.UpdateCalendar(u, c.ID, func(c *cache.Calendar) error {
					c.DisplayName, c.Description, c.Color, c.Order, c.Timezone = o.DisplayName, o.Description, o.Color, o.Order, o.Timezone
					c.Components, c.DeadProps, c.Kind, c.Members, c.WriteTo = o.Components, o.DeadProps, o.Kind, o.Members, o.WriteTo
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// FuzzXMLBody sends arbitrary bytes as the body of PROPFIND, REPORT,
// PROPPATCH, MKCALENDAR and MKCOL requests through the real handler over
// a real store, and checks that the answer is never a 5xx, is a 4xx for
// a body that is not well-formed XML or declares a DOCTYPE, is itself
// well-formed XML, and that a refused request changed nothing (and no
// request changed any object).
func FuzzXMLBody(f *testing.F) {
	for i, s := range xmlSeeds(f) {
		f.Add(guessSel(s, i), []byte(s))
	}
	f.Add(fuzzSel(2, 1, 0), []byte(`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>x</D:displayname></D:prop></D:set></D:propertyupdate>`))
	f.Add(fuzzSel(0, 7, 1), []byte(`<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`))
	f.Add(fuzzSel(0, 6, 1), []byte(`<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`))

	// NoSync: the fuzzer writes (PROPPATCH, MKCALENDAR) and undoes them
	// at every input; durability is not under test here.
	st, err := cache.Open(filepath.Join(f.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	h, err := New(Options{
		Store:           st,
		Users:           []User{{Name: "alice", PasswordHash: string(hash)}, {Name: "bob", PasswordHash: string(hash)}},
		Logger:          slog.New(slog.DiscardHandler),
		MaxResourceSize: 256 << 10,
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []cache.Calendar{
		{User: "alice", ID: "personal", DisplayName: "Personal", Components: []string{"VEVENT", "VTODO", "VJOURNAL"}},
		{User: "alice", ID: "all", DisplayName: "All", Kind: kindMerged, Members: []string{"personal"}, WriteTo: "personal"},
		{User: "bob", ID: "personal", DisplayName: "Bob's"},
	} {
		if _, err := st.CreateCalendar(c); err != nil {
			f.Fatal(err)
		}
	}
	do := func(method, path, depth string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.SetBasicAuth("alice", testPassword)
		r.Header.Set("Content-Type", xmlType)
		if method == http.MethodPut {
			r.Header.Set("Content-Type", icsType)
		}
		r.Header.Set("Depth", depth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for name, data := range fuzzObjects {
		if w := do("PUT", "/dav/calendars/alice/personal/"+name, "0", []byte(data)); w.Code != http.StatusCreated {
			f.Fatalf("PUT %s: %d %s", name, w.Code, w.Body)
		}
	}

	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		method, tgt, depth := fuzzUnpack(sel)
		before := fuzzSnapshot(t, st)
		w := do(method, tgt.path, depth, body)
		after := fuzzSnapshot(t, st)
		defer fuzzRestore(t, st, before)

		desc := fmt.Sprintf("%s %s (Depth %s) with %q", method, tgt.path, depth, body)
		if w.Code >= 500 {
			t.Fatalf("%s: status %d: %s", desc, w.Code, w.Body)
		}
		wfErr := xmlWellFormed(body)
		empty := len(bytes.Trim(body, " \t\r\n")) == 0
		refused := w.Code >= 400
		if !empty && wfErr != nil && !refused {
			t.Fatalf("%s: the body is not well-formed XML (%v), but the status is %d:\n%s", desc, wfErr, w.Code, w.Body)
		}
		if ct := w.Header().Get("Content-Type"); strings.Contains(ct, "xml") {
			if err := xmlWellFormed(w.Body.Bytes()); err != nil {
				t.Fatalf("%s: status %d, the response is not well-formed XML (%v):\n%s", desc, w.Code, err, w.Body)
			}
		}
		// A PROPPATCH is all or nothing (RFC 4918 §9.2): one property
		// refused in the multistatus refuses the whole request.
		if w.Code == http.StatusMultiStatus && method == "PROPPATCH" {
			var ms msResp
			if err := xml.Unmarshal(w.Body.Bytes(), &ms); err != nil {
				t.Fatalf("%s: multistatus does not decode: %v", desc, err)
			}
			for _, r := range ms.Responses {
				for _, ps := range r.Propstats {
					refused = refused || !strings.Contains(ps.Status, " 200 ")
				}
			}
		}
		if !reflect.DeepEqual(before.objs, after.objs) {
			t.Fatalf("%s: status %d, and the objects changed:\nbefore %+v\nafter  %+v", desc, w.Code, before.objs, after.objs)
		}
		if refused && !reflect.DeepEqual(before.cals, after.cals) {
			t.Fatalf("%s: refused with %d, but the calendars changed:\nbefore %+v\nafter  %+v\n%s", desc, w.Code, before.cals, after.cals, w.Body)
		}
		if others := func(s fuzzState) []cache.Calendar {
			return slices.DeleteFunc(slices.Clone(s.cals["alice"]), func(c cache.Calendar) bool { return c.ID == tgt.cal })
		}; !reflect.DeepEqual(others(before), others(after)) || !reflect.DeepEqual(before.cals["bob"], after.cals["bob"]) {
			t.Fatalf("%s: status %d changed a calendar it does not name", desc, w.Code)
		}
	})
}
