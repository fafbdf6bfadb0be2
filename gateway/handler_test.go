package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	// The well-known URL redirects permanently, without credentials.
	req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/.well-known/caldav", nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/dav/" {
		t.Fatalf("well-known: %d Location %q, want 301 /dav/", resp.StatusCode, resp.Header.Get("Location"))
	}

	body := `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/></d:prop></d:propfind>`
	ms := decodeMS(t, e.do("alice", "PROPFIND", "/dav/", body, "Depth", "0", ct, xmlType))
	p := ms.prop("/dav/", "DAV:", "current-user-principal")
	if p == nil || p.child("DAV:", "href") == nil || p.child("DAV:", "href").Text != "/dav/principals/alice/" {
		t.Fatalf("current-user-principal: %+v", p)
	}

	body = `<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-home-set/><d:principal-URL/><d:resourcetype/><d:displayname/><c:calendar-user-address-set/></d:prop></d:propfind>`
	ms = decodeMS(t, e.do("alice", "PROPFIND", "/dav/principals/alice/", body, "Depth", "0"))
	if h := ms.prop("/dav/principals/alice/", nsCalDAV, "calendar-home-set"); h == nil || h.child("DAV:", "href").Text != "/dav/calendars/alice/" {
		t.Fatalf("calendar-home-set: %+v", h)
	}
	if rt := ms.prop("/dav/principals/alice/", "DAV:", "resourcetype"); rt == nil || rt.child("DAV:", "principal") == nil {
		t.Fatalf("principal resourcetype: %+v", rt)
	}

	// Depth 1 on the home lists the user's calendars only.
	body = `<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:resourcetype/><d:displayname/><cs:getctag/><d:sync-token/><c:supported-calendar-component-set/><d:current-user-privilege-set/><d:supported-report-set/></d:prop></d:propfind>`
	ms = decodeMS(t, e.do("alice", "PROPFIND", "/dav/calendars/alice/", body, "Depth", "1"))
	if got := ms.hrefs(); !slices.Equal(got, []string{"/dav/calendars/alice/", "/dav/calendars/alice/personal/"}) {
		t.Fatalf("home Depth 1 hrefs = %v", got)
	}
	cal := "/dav/calendars/alice/personal/"
	if rt := ms.prop(cal, "DAV:", "resourcetype"); rt == nil || rt.child(nsCalDAV, "calendar") == nil {
		t.Fatal("calendar resourcetype lacks CALDAV:calendar")
	}
	if dn := ms.prop(cal, "DAV:", "displayname"); dn == nil || dn.Text != "Personal" {
		t.Fatalf("displayname = %+v", dn)
	}
	for _, p := range [][2]string{{nsCS, "getctag"}, {"DAV:", "sync-token"}, {nsCalDAV, "supported-calendar-component-set"}, {"DAV:", "current-user-privilege-set"}, {"DAV:", "supported-report-set"}} {
		if ms.prop(cal, p[0], p[1]) == nil {
			t.Errorf("calendar lacks {%s}%s", p[0], p[1])
		}
	}
	var reports []string
	for _, sr := range ms.prop(cal, "DAV:", "supported-report-set").Children {
		for _, r := range sr.child("DAV:", "report").Children {
			reports = append(reports, r.XMLName.Local)
		}
	}
	slices.Sort(reports)
	if !slices.Equal(reports, []string{"calendar-multiget", "calendar-query", "free-busy-query", "sync-collection"}) {
		t.Errorf("supported reports = %v", reports)
	}
}

func TestOptions(t *testing.T) {
	e := newEnv(t)
	resp := e.do("", "OPTIONS", "/dav/calendars/alice/personal/", "")
	wantStatus(t, resp, http.StatusOK)
	if dav := resp.Header.Get("DAV"); !strings.Contains(dav, "calendar-access") || !strings.Contains(dav, "1") {
		t.Errorf("DAV header %q", dav)
	}
	allow := resp.Header.Get("Allow")
	for _, m := range []string{"PROPFIND", "REPORT", "PROPPATCH", "DELETE", "GET"} {
		if !strings.Contains(allow, m) {
			t.Errorf("Allow %q lacks %s", allow, m)
		}
	}
	if strings.Contains(allow, "PUT") {
		t.Errorf("Allow on a calendar %q offers PUT", allow)
	}
}

func TestPropfindDepth(t *testing.T) {
	e := newEnv(t)
	resp := e.do("alice", "PROPFIND", "/dav/calendars/alice/", "", "Depth", "infinity")
	wantPrecondition(t, resp, http.StatusForbidden, "DAV:", "propfind-finite-depth")

	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/a.ics", event("a", "A", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	// allprop: DAV properties and no calendar-data.
	ms := decodeMS(t, e.do("alice", "PROPFIND", "/dav/calendars/alice/personal/", `<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>`, "Depth", "1"))
	obj := "/dav/calendars/alice/personal/a.ics"
	for _, p := range []string{"getetag", "getcontenttype", "getcontentlength", "getlastmodified", "resourcetype"} {
		if ms.prop(obj, "DAV:", p) == nil {
			t.Errorf("allprop lacks %s", p)
		}
	}
	if ms.prop(obj, nsCalDAV, "calendar-data") != nil {
		t.Error("allprop returned calendar-data")
	}
	// propname lists names with empty values.
	ms = decodeMS(t, e.do("alice", "PROPFIND", obj, `<d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>`, "Depth", "0"))
	if p := ms.prop(obj, "DAV:", "getetag"); p == nil || p.Text != "" {
		t.Errorf("propname getetag = %+v", p)
	}
	// An unknown property is reported 404.
	ms = decodeMS(t, e.do("alice", "PROPFIND", obj, `<d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><x:nope/><d:getetag/></d:prop></d:propfind>`, "Depth", "0"))
	if st := ms.propStatus(obj, "urn:x", "nope"); !strings.Contains(st, "404") {
		t.Errorf("unknown prop status %q", st)
	}
	// Empty body is allprop.
	ms = decodeMS(t, e.do("alice", "PROPFIND", obj, "", "Depth", "0"))
	if ms.prop(obj, "DAV:", "getetag") == nil {
		t.Error("empty PROPFIND body did not give allprop")
	}
}

func TestPutGetConditional(t *testing.T) {
	e := newEnv(t)
	path := "/dav/calendars/alice/personal/ev1.ics"
	data := event("ev1", "Lunch", "20240301T120000Z", "20240301T130000Z")
	resp := e.do("alice", "PUT", path, data, ct, icsType, "If-None-Match", "*")
	wantStatus(t, resp, http.StatusCreated)
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("PUT ETag %q is not a strong tag", etag)
	}
	// If-None-Match: * on an existing resource fails.
	wantStatus(t, e.do("alice", "PUT", path, data, ct, icsType, "If-None-Match", "*"), http.StatusPreconditionFailed)

	resp = e.do("alice", "GET", path, "")
	wantStatus(t, resp, http.StatusOK)
	if got := readAll(t, resp); got != data {
		t.Fatalf("GET returned different bytes:\n%q\nwant\n%q", got, data)
	}
	if resp.Header.Get("ETag") != etag {
		t.Fatalf("GET ETag %q, PUT gave %q", resp.Header.Get("ETag"), etag)
	}
	wantStatus(t, e.do("alice", "GET", path, "", "If-None-Match", etag), http.StatusNotModified)
	resp = e.do("alice", "HEAD", path, "")
	wantStatus(t, resp, http.StatusOK)
	if resp.Header.Get("ETag") != etag || readAll(t, resp) != "" {
		t.Fatal("HEAD: wrong ETag or a body")
	}

	// Replace: If-Match with a stale tag fails; with the right one, 204.
	data2 := event("ev1", "Long lunch", "20240301T120000Z", "20240301T140000Z")
	wantStatus(t, e.do("alice", "PUT", path, data2, ct, icsType, "If-Match", `"stale"`), http.StatusPreconditionFailed)
	resp = e.do("alice", "PUT", path, data2, ct, icsType, "If-Match", etag)
	wantStatus(t, resp, http.StatusNoContent)
	etag2 := resp.Header.Get("ETag")
	if etag2 == "" || etag2 == etag {
		t.Fatalf("replace ETag %q (was %q)", etag2, etag)
	}
	// Same bytes again: same ETag.
	resp = e.do("alice", "PUT", path, data2, ct, icsType)
	wantStatus(t, resp, http.StatusNoContent)
	if resp.Header.Get("ETag") != etag2 {
		t.Fatal("identical content got a different ETag")
	}

	// DELETE with a stale If-Match fails and keeps the object.
	wantStatus(t, e.do("alice", "DELETE", path, "", "If-Match", etag), http.StatusPreconditionFailed)
	wantStatus(t, e.do("alice", "DELETE", path, "", "If-Match", etag2), http.StatusNoContent)
	wantStatus(t, e.do("alice", "GET", path, ""), http.StatusNotFound)
	wantStatus(t, e.do("alice", "DELETE", path, ""), http.StatusNotFound)
	// PUT into a calendar that does not exist.
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/nope/x.ics", data, ct, icsType), http.StatusConflict)
}

func TestPutPreconditions(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxResourceSize = 4096 })
	base := "/dav/calendars/alice/personal/"
	wantStatus(t, e.do("alice", "PUT", base+"one.ics", event("same", "One", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)

	resp := e.do("alice", "PUT", base+"two.ics", event("same", "Two", "20240101T100000Z", "20240101T110000Z"), ct, icsType)
	wantStatus(t, resp, http.StatusForbidden)
	var e2 anyXML
	if err := decodeXML(resp, &e2); err != nil {
		t.Fatal(err)
	}
	c := e2.child(nsCalDAV, "no-uid-conflict")
	if c == nil || c.child("DAV:", "href") == nil || c.child("DAV:", "href").Text != base+"one.ics" {
		t.Fatalf("no-uid-conflict body: %+v", e2)
	}

	for _, tc := range []struct {
		name, body, ctype string
		code              int
		cond              string
	}{
		{"not ical", "hello", icsType, 403, "valid-calendar-data"},
		{"truncated", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n", icsType, 403, "valid-calendar-data"},
		{"unbalanced", "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n", icsType, 403, "valid-calendar-data"},
		{"bad date", strings.Replace(event("bd", "x", "20240101T100000Z", "20240101T110000Z"), "DTSTART:20240101T100000Z", "DTSTART:2024-01-01", 1), icsType, 403, "valid-calendar-data"},
		{"no uid", strings.Replace(event("nouid", "x", "20240101T100000Z", "20240101T110000Z"), "UID:nouid\r\n", "", 1), icsType, 403, "valid-calendar-object-resource"},
		{"two uids", strings.Replace(event("u1", "x", "20240101T100000Z", "20240101T110000Z"), "END:VCALENDAR", "BEGIN:VEVENT\r\nUID:u2\r\nDTSTART:20240101T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR", 1), icsType, 403, "valid-calendar-object-resource"},
		{"method", strings.Replace(event("m", "x", "20240101T100000Z", "20240101T110000Z"), "VERSION:2.0", "VERSION:2.0\r\nMETHOD:REQUEST", 1), icsType, 403, "valid-calendar-object-resource"},
		{"freebusy", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VFREEBUSY\r\nUID:fb\r\nDTSTART:20240101T000000Z\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n", icsType, 403, "supported-calendar-component"},
		{"wrong type", event("wt", "x", "20240101T100000Z", "20240101T110000Z"), "application/json", 415, "supported-calendar-data"},
		{"too big", event("big", strings.Repeat("x", 5000), "20240101T100000Z", "20240101T110000Z"), icsType, 413, "max-resource-size"},
		{"binary", "BEGIN:VCALENDAR\r\n\x00\x01\x02END:VCALENDAR\r\n", icsType, 403, "valid-calendar-data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do("alice", "PUT", base+"bad.ics", tc.body, ct, tc.ctype)
			wantPrecondition(t, resp, tc.code, nsCalDAV, tc.cond)
			wantStatus(t, e.do("alice", "GET", base+"bad.ics", ""), http.StatusNotFound)
		})
	}
}

func TestTasksCalendarRefusesEvents(t *testing.T) {
	e := newEnv(t)
	body := `<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>Tasks</d:displayname><c:supported-calendar-component-set><c:comp name="VTODO"/></c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>`
	wantStatus(t, e.do("alice", "MKCALENDAR", "/dav/calendars/alice/tasks/", body, ct, xmlType), http.StatusCreated)
	resp := e.do("alice", "PUT", "/dav/calendars/alice/tasks/e.ics", event("e", "x", "20240101T100000Z", "20240101T110000Z"), ct, icsType)
	wantPrecondition(t, resp, http.StatusForbidden, nsCalDAV, "supported-calendar-component")
	todo := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:t1\r\nSUMMARY:Buy milk\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/tasks/t1.ics", todo, ct, icsType), http.StatusCreated)
}

func TestMkcalendarProppatch(t *testing.T) {
	e := newEnv(t)
	body := `<?xml version="1.0" encoding="utf-8"?>
<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:ic="http://apple.com/ns/ical/" xmlns:x="urn:example:dead">
  <d:set><d:prop>
    <d:displayname>Work &amp; play</d:displayname>
    <c:calendar-description>Things to do</c:calendar-description>
    <ic:calendar-color>#FF0000FF</ic:calendar-color>
    <x:flavour lang="en">vanilla <x:b>bold</x:b></x:flavour>
  </d:prop></d:set>
</c:mkcalendar>`
	path := "/dav/calendars/alice/work/"
	wantStatus(t, e.do("alice", "MKCALENDAR", path, body, ct, xmlType), http.StatusCreated)
	wantPrecondition(t, e.do("alice", "MKCALENDAR", path, body, ct, xmlType), http.StatusMethodNotAllowed, "DAV:", "resource-must-be-null")

	get := `<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:ic="http://apple.com/ns/ical/" xmlns:x="urn:example:dead"><d:prop><d:displayname/><c:calendar-description/><ic:calendar-color/><ic:calendar-order/><x:flavour/></d:prop></d:propfind>`
	ms := decodeMS(t, e.do("alice", "PROPFIND", path, get, "Depth", "0"))
	if dn := ms.prop(path, "DAV:", "displayname"); dn == nil || dn.Text != "Work & play" {
		t.Fatalf("displayname %+v", dn)
	}
	if c := ms.prop(path, nsApple, "calendar-color"); c == nil || c.Text != "#FF0000FF" {
		t.Fatalf("color %+v", c)
	}
	fl := ms.prop(path, "urn:example:dead", "flavour")
	if fl == nil || fl.child("urn:example:dead", "b") == nil || fl.child("urn:example:dead", "b").Text != "bold" || !strings.Contains(fl.Text, "vanilla") {
		t.Fatalf("dead property not returned intact: %+v", fl)
	}
	if st := ms.propStatus(path, nsApple, "calendar-order"); !strings.Contains(st, "404") {
		t.Fatalf("unset calendar-order status %q", st)
	}

	// PROPPATCH: set order and color, remove the dead property.
	patch := `<d:propertyupdate xmlns:d="DAV:" xmlns:ic="http://apple.com/ns/ical/" xmlns:x="urn:example:dead"><d:set><d:prop><ic:calendar-order>3</ic:calendar-order><ic:calendar-color>#00FF00</ic:calendar-color></d:prop></d:set><d:remove><d:prop><x:flavour/></d:prop></d:remove></d:propertyupdate>`
	ms = decodeMS(t, e.do("alice", "PROPPATCH", path, patch, ct, xmlType))
	if st := ms.propStatus(path, nsApple, "calendar-order"); !strings.Contains(st, "200") {
		t.Fatalf("PROPPATCH calendar-order status %q", st)
	}
	ms = decodeMS(t, e.do("alice", "PROPFIND", path, get, "Depth", "0"))
	if o := ms.prop(path, nsApple, "calendar-order"); o == nil || o.Text != "3" {
		t.Fatalf("order after PROPPATCH: %+v", o)
	}
	if ms.prop(path, "urn:example:dead", "flavour") != nil {
		t.Fatal("removed dead property still returned")
	}

	// A protected property fails, and the whole update is not applied.
	patch = `<d:propertyupdate xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:set><d:prop><d:displayname>Renamed</d:displayname><cs:getctag>1</cs:getctag></d:prop></d:set></d:propertyupdate>`
	ms = decodeMS(t, e.do("alice", "PROPPATCH", path, patch, ct, xmlType))
	if st := ms.propStatus(path, nsCS, "getctag"); !strings.Contains(st, "403") {
		t.Fatalf("protected property status %q", st)
	}
	if st := ms.propStatus(path, "DAV:", "displayname"); !strings.Contains(st, "424") {
		t.Fatalf("dependent property status %q", st)
	}
	ms = decodeMS(t, e.do("alice", "PROPFIND", path, get, "Depth", "0"))
	if dn := ms.prop(path, "DAV:", "displayname"); dn.Text != "Work & play" {
		t.Fatalf("failed PROPPATCH changed displayname to %q", dn.Text)
	}

	// Extended MKCOL creates a calendar too.
	mkcol := `<d:mkcol xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:resourcetype><d:collection/><c:calendar/></d:resourcetype><d:displayname>Via MKCOL</d:displayname></d:prop></d:set></d:mkcol>`
	wantStatus(t, e.do("alice", "MKCOL", "/dav/calendars/alice/viamkcol/", mkcol, ct, xmlType), http.StatusCreated)
	ms = decodeMS(t, e.do("alice", "PROPFIND", "/dav/calendars/alice/viamkcol/", "", "Depth", "0"))
	if dn := ms.prop("/dav/calendars/alice/viamkcol/", "DAV:", "displayname"); dn == nil || dn.Text != "Via MKCOL" {
		t.Fatalf("MKCOL displayname %+v", dn)
	}

	// GET of the calendar returns one VCALENDAR with every object.
	wantStatus(t, e.do("alice", "PUT", path+"a.ics", event("a", "Alpha", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	wantStatus(t, e.do("alice", "PUT", path+"b.ics", event("b", "Beta", "20240102T100000Z", "20240102T110000Z"), ct, icsType), http.StatusCreated)
	resp := e.do("alice", "GET", path, "")
	wantStatus(t, resp, http.StatusOK)
	all := readAll(t, resp)
	if strings.Count(all, "BEGIN:VCALENDAR") != 1 || strings.Count(all, "BEGIN:VEVENT") != 2 || !strings.Contains(all, "SUMMARY:Beta") {
		t.Fatalf("collection GET:\n%s", all)
	}

	// DELETE of the calendar removes it and its objects.
	wantStatus(t, e.do("alice", "DELETE", path, ""), http.StatusNoContent)
	wantStatus(t, e.do("alice", "PROPFIND", path, "", "Depth", "0"), http.StatusNotFound)
	wantStatus(t, e.do("alice", "GET", path+"a.ics", ""), http.StatusNotFound)
}

func TestMultiget(t *testing.T) {
	e := newEnv(t)
	base := "/dav/calendars/alice/personal/"
	var want []string
	for i := range 5 {
		body := event(fmt.Sprint("m", i), fmt.Sprint("Event ", i), "20240101T100000Z", "20240101T110000Z")
		want = append(want, body)
		wantStatus(t, e.do("alice", "PUT", fmt.Sprintf("%sm%d.ics", base, i), body, ct, icsType), http.StatusCreated)
	}
	q := `<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>` +
		`<d:href>` + base + `m1.ics</d:href><d:href>` + base + `m3.ics</d:href><d:href>` + base + `missing.ics</d:href><d:href>/dav/calendars/bob/personal/m1.ics</d:href></c:calendar-multiget>`
	ms := decodeMS(t, e.do("alice", "REPORT", base, q, "Depth", "1", ct, xmlType))
	if len(ms.Responses) != 4 {
		t.Fatalf("multiget returned %d responses", len(ms.Responses))
	}
	for i, idx := range []int{1, 3} {
		href := fmt.Sprintf("%sm%d.ics", base, idx)
		d := ms.prop(href, nsCalDAV, "calendar-data")
		if d == nil || d.Text != want[idx] {
			t.Fatalf("multiget %d: calendar-data differs from the PUT bytes", i)
		}
	}
	for _, r := range ms.Responses {
		if strings.HasSuffix(r.Href, "missing.ics") || strings.Contains(r.Href, "/bob/") {
			if !strings.Contains(r.Status, "404") {
				t.Errorf("%s: status %q, want 404", r.Href, r.Status)
			}
		}
	}
}

func TestSyncCollection(t *testing.T) {
	e := newEnv(t)
	base := "/dav/calendars/alice/personal/"
	put := func(name, uid, summary string) {
		t.Helper()
		wantStatus(t, e.do("alice", "PUT", base+name, event(uid, summary, "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	}
	sync := func(token string, limit int, hdr ...string) msResp {
		t.Helper()
		lim := ""
		if limit > 0 {
			lim = fmt.Sprintf("<d:limit><d:nresults>%d</d:nresults></d:limit>", limit)
		}
		body := `<d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token + `</d:sync-token><d:sync-level>1</d:sync-level>` + lim + `<d:prop><d:getetag/></d:prop></d:sync-collection>`
		return decodeMS(t, e.do("alice", "REPORT", base, body, append([]string{ct, xmlType}, hdr...)...))
	}
	ctagOf := func() string {
		ms := decodeMS(t, e.do("alice", "PROPFIND", base, `<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/></d:prop></d:propfind>`, "Depth", "0"))
		return ms.prop(base, nsCS, "getctag").Text
	}
	c0 := ctagOf()
	put("a.ics", "a", "A")
	put("b.ics", "b", "B")
	put("c.ics", "c", "C")
	c1 := ctagOf()
	if c0 == c1 {
		t.Fatal("getctag did not change after writes")
	}
	if ctagOf() != c1 {
		t.Fatal("getctag changed without a write")
	}

	first := sync("", 0)
	if got := first.hrefs(); len(got) != 3 {
		t.Fatalf("initial sync: %v", got)
	}
	tok1 := first.SyncToken
	// Nothing changed: nothing reported, same token.
	again := sync(tok1, 0, "Depth", "1")
	if len(again.Responses) != 0 || again.SyncToken != tok1 {
		t.Fatalf("no-op sync: %v, token %q vs %q", again.hrefs(), again.SyncToken, tok1)
	}
	wantStatus(t, e.do("alice", "DELETE", base+"b.ics", ""), http.StatusNoContent)
	wantStatus(t, e.do("alice", "PUT", base+"c.ics", event("c", "C2", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusNoContent)
	put("d.ics", "d", "D")
	delta := sync(tok1, 0)
	got := map[string]string{}
	for _, r := range delta.Responses {
		st := r.Status
		if st == "" && len(r.Propstats) > 0 {
			st = r.Propstats[0].Status
		}
		got[r.Href] = st
	}
	if len(got) != 3 || !strings.Contains(got[base+"b.ics"], "404") || !strings.Contains(got[base+"c.ics"], "200") || !strings.Contains(got[base+"d.ics"], "200") {
		t.Fatalf("delta sync: %v", got)
	}
	// Truncation: limit 1 gives one member, a 507 for the collection, and a
	// token from which the rest follows.
	part := sync(tok1, 1)
	members, saw507 := 0, false
	for _, r := range part.Responses {
		if r.Href == base && strings.Contains(r.Status, "507") {
			saw507 = true
		} else {
			members++
		}
	}
	if members != 1 || !saw507 {
		t.Fatalf("truncated sync: %d members, 507 %v", members, saw507)
	}
	rest := sync(part.SyncToken, 0)
	if len(rest.Responses) != 2 {
		t.Fatalf("after truncation: %v", rest.hrefs())
	}
	// Unknown tokens.
	for _, tok := range []string{"bogus", syncTokenPrefix + "0000-1", syncTokenPrefix + "x-99999"} {
		body := `<d:sync-collection xmlns:d="DAV:"><d:sync-token>` + tok + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
		wantPrecondition(t, e.do("alice", "REPORT", base, body, ct, xmlType), http.StatusForbidden, "DAV:", "valid-sync-token")
	}
}

func TestAuthAndIsolation(t *testing.T) {
	e := newEnv(t)
	resp := e.do("", "PROPFIND", "/dav/", "", "Depth", "0")
	wantStatus(t, resp, http.StatusUnauthorized)
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/dav/", nil)
	req.SetBasicAuth("alice", "wrong")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}

	wantStatus(t, e.do("bob", "PUT", "/dav/calendars/bob/personal/secret.ics", event("s", "Bob's secret", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	var bodies []string
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/dav/calendars/bob/personal/secret.ics", ""},
		{"GET", "/dav/calendars/bob/personal/", ""},
		{"PROPFIND", "/dav/calendars/bob/", ""},
		{"PROPFIND", "/dav/principals/bob/", ""},
		{"PUT", "/dav/calendars/bob/personal/new.ics", event("n", "x", "20240101T100000Z", "20240101T110000Z")},
		{"DELETE", "/dav/calendars/bob/personal/secret.ics", ""},
		{"DELETE", "/dav/calendars/bob/personal/", ""},
		{"PROPPATCH", "/dav/calendars/bob/personal/", `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>x</d:displayname></d:prop></d:set></d:propertyupdate>`},
		{"MKCALENDAR", "/dav/calendars/bob/evil/", ""},
		{"REPORT", "/dav/calendars/bob/personal/", `<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:prop><d:getetag/></d:prop></d:sync-collection>`},
		{"GET", "/dav/calendars/nobody/personal/x.ics", ""},
	} {
		resp := e.do("alice", tc.method, tc.path, tc.body, ct, "text/calendar")
		if tc.method == "PROPPATCH" || tc.method == "REPORT" {
			resp = e.do("alice", tc.method, tc.path, tc.body, ct, xmlType)
		}
		wantStatus(t, resp, http.StatusNotFound)
		bodies = append(bodies, readAll(t, resp))
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Fatalf("404 bodies differ:\n%s\n%s", bodies[0], b)
		}
	}
	// Bob's data is untouched.
	wantStatus(t, e.do("bob", "GET", "/dav/calendars/bob/personal/secret.ics", ""), http.StatusOK)
	// Alice's home never lists bob's calendars.
	ms := decodeMS(t, e.do("alice", "PROPFIND", "/dav/calendars/", "", "Depth", "1"))
	for _, h := range ms.hrefs() {
		if strings.Contains(h, "bob") {
			t.Fatalf("alice sees %s", h)
		}
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxResourceSize = 64 << 10 })
	base := "/dav/calendars/alice/personal/"
	pf := func(body string) *http.Response {
		return e.do("alice", "PROPFIND", base, body, "Depth", "0", ct, xmlType)
	}
	for name, body := range map[string]string{
		"malformed":      `<d:propfind xmlns:d="DAV:"><d:prop>`,
		"mismatched":     `<d:propfind xmlns:d="DAV:"><d:prop></d:propfind>`,
		"doctype":        `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`,
		"billion laughs": `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><d:propfind xmlns:d="DAV:">&lol2;</d:propfind>`,
		"external":       `<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><d:propfind xmlns:d="DAV:">&xxe;</d:propfind>`,
		"deep":           strings.Repeat("<a>", 5000) + strings.Repeat("</a>", 5000),
		"not xml":        "BEGIN:VCALENDAR",
	} {
		t.Run(name, func(t *testing.T) {
			resp := pf(body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
		})
	}
	// Wrong content type for an XML method.
	wantStatus(t, e.do("alice", "PROPFIND", base, `<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>`, "Depth", "0", ct, "text/calendar"), http.StatusUnsupportedMediaType)
	// Oversized XML body: 413, announced by Content-Length.
	huge := `<d:propfind xmlns:d="DAV:"><d:prop>` + strings.Repeat("<d:getetag/>", 10000) + `</d:prop></d:propfind>`
	wantPrecondition(t, pf(huge), http.StatusRequestEntityTooLarge, nsCalDAV, "max-resource-size")

	// Traversal spellings never reach anything.
	for _, p := range []string{
		"/dav/calendars/alice/personal/../../bob/personal/",
		"/dav/calendars/alice/%2e%2e/bob/personal/",
		"/dav/calendars/alice/personal/%2e%2e%2fx.ics",
		"/dav/calendars/alice/personal/..%2Fx.ics",
		"/dav/calendars/alice/personal/a%5cb.ics",
		"/dav/calendars/alice/personal/a%00.ics",
	} {
		req, _ := http.NewRequest("PUT", e.srv.URL+"/x", strings.NewReader(event("tr", "x", "20240101T100000Z", "20240101T110000Z")))
		req.URL.RawPath = ""
		req.URL.Opaque = p
		req.SetBasicAuth("alice", testPassword)
		req.Header.Set(ct, icsType)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: status %d, want 4xx", p, resp.StatusCode)
		}
	}
	objs, err := e.store.ListObjects("alice", "personal")
	if err != nil || len(objs) != 0 {
		t.Fatalf("bad input stored objects: %v %v", objs, err)
	}
	if objs, _ := e.store.ListObjects("bob", "personal"); len(objs) != 0 {
		t.Fatalf("traversal stored into bob's calendar: %v", objs)
	}
}
