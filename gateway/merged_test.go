package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/calgate/calgate/cache"
)

const mergedBase = "/dav/calendars/alice/everything/"

// eventWith is event with extra content lines (e.g. SEQUENCE) in the VEVENT.
func eventWith(uid, summary, start, end string, extra ...string) string {
	lines := ""
	for _, l := range extra {
		lines += l + "\r\n"
	}
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
		"\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:" + start + "\r\nDTEND:" + end + "\r\nSUMMARY:" + summary +
		"\r\n" + lines + "END:VEVENT\r\nEND:VCALENDAR\r\n"
}

// newMergedEnv sets up alice's calendars: personal and work (local, filled
// over HTTP), holidays (an ics mirror filled in the store), other (local,
// not a member) and everything, merging personal, work and holidays.
//
//	UID   personal         work                holidays
//	p1    p1.ics (Jan 10)
//	w1                     w1.ics (Jan 11)
//	h1                                         h1.ics (Jan 12)
//	dup   dup.ics SEQ 0    dup-w.ics SEQ 2 (wins)
//	dup2  dup2.ics LM Jan                      dup2-h.ics LM Jun (wins)
//	dup3  dup3.ics (ties: first member wins)   dup3.ics
func newMergedEnv(t *testing.T, writeTo string, opts ...func(*Options)) *env {
	t.Helper()
	e := newEnv(t, opts...)
	for _, c := range []cache.Calendar{
		{User: "alice", ID: "work", DisplayName: "Work", Components: []string{"VEVENT", "VTODO"}},
		{User: "alice", ID: "holidays", Kind: kindICS, Components: []string{"VEVENT"}},
		{User: "alice", ID: "other", Components: []string{"VEVENT"}},
		{User: "alice", ID: "everything", Kind: kindMerged, DisplayName: "Everything", Color: "#112233",
			Members: []string{"personal", "work", "holidays"}, WriteTo: writeTo},
	} {
		if _, err := e.store.CreateCalendar(c); err != nil {
			t.Fatal(err)
		}
	}
	put := func(cal, name, data string) {
		t.Helper()
		wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/"+cal+"/"+name, data, ct, icsType), http.StatusCreated)
	}
	put("personal", "p1.ics", event("p1", "Personal one", "20240110T100000Z", "20240110T110000Z"))
	put("work", "w1.ics", event("w1", "Work one", "20240111T100000Z", "20240111T110000Z"))
	put("personal", "dup.ics", eventWith("dup", "personal version", "20240301T100000Z", "20240301T110000Z", "SEQUENCE:0"))
	put("work", "dup-w.ics", eventWith("dup", "work version", "20240301T100000Z", "20240301T110000Z", "SEQUENCE:2"))
	put("personal", "dup2.ics", eventWith("dup2", "personal dup2", "20240401T100000Z", "20240401T110000Z", "LAST-MODIFIED:20240101T000000Z"))
	put("personal", "dup3.ics", event("dup3", "personal dup3", "20240501T100000Z", "20240501T110000Z"))
	put("work", "dup3.ics", event("dup3", "work dup3", "20240501T100000Z", "20240501T110000Z"))
	e.putICS("h1.ics", "h1", event("h1", "Holiday", "20240112T000000Z", "20240113T000000Z"),
		time.Date(2024, 1, 12, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 13, 0, 0, 0, 0, time.UTC))
	e.putICS("dup2-h.ics", "dup2", eventWith("dup2", "holiday dup2", "20240401T100000Z", "20240401T110000Z", "LAST-MODIFIED:20240601T000000Z"),
		time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC), time.Date(2024, 4, 1, 11, 0, 0, 0, time.UTC))
	return e
}

// putICS stores an object in the ics calendar holidays, as upstream sync does.
func (e *env) putICS(name, uid, data string, start, end time.Time) {
	e.t.Helper()
	if _, err := e.store.PutObjectUpstream("alice", "holidays", cache.Object{Name: name, UID: uid, Component: "VEVENT",
		Start: start, End: end, Data: []byte(data)}); err != nil {
		e.t.Fatal(err)
	}
}

// wantVisible are the hrefs newMergedEnv's merged calendar lists.
var wantVisible = []string{
	mergedBase + "personal~dup3.ics",
	mergedBase + "personal~p1.ics",
	mergedBase + "work~dup-w.ics",
	mergedBase + "work~w1.ics",
	mergedBase + "holidays~dup2-h.ics",
	mergedBase + "holidays~h1.ics",
}

const propfindData = `<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop></d:propfind>`

func objectHrefs(ms msResp, base string) []string {
	var out []string
	for _, h := range ms.hrefs() {
		if h != base {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestMergedListing(t *testing.T) {
	e := newMergedEnv(t, "")
	ms := decodeMS(t, e.do("alice", "PROPFIND", mergedBase, propfindData, "Depth", "1"))
	if got := objectHrefs(ms, mergedBase); !slices.Equal(got, sorted(wantVisible)) {
		t.Fatalf("hrefs = %v\nwant %v", got, sorted(wantVisible))
	}
	for href, want := range map[string]string{
		mergedBase + "work~dup-w.ics":      "work version",
		mergedBase + "holidays~dup2-h.ics": "holiday dup2",
		mergedBase + "personal~dup3.ics":   "personal dup3",
		mergedBase + "personal~p1.ics":     "Personal one",
	} {
		cd := ms.prop(href, nsCalDAV, "calendar-data")
		if cd == nil || !strings.Contains(cd.Text, "SUMMARY:"+want) {
			t.Errorf("%s: calendar-data %+v, want SUMMARY %q", href, cd, want)
		}
	}
	// Each href's ETag is the member object's.
	w1, err := e.store.GetObject("alice", "work", "w1.ics")
	if err != nil {
		t.Fatal(err)
	}
	if et := ms.prop(mergedBase+"work~w1.ics", "DAV:", "getetag"); et == nil || et.Text != `"`+w1.ETag+`"` {
		t.Errorf("getetag = %+v, want %q", et, w1.ETag)
	}

	// The collection's own properties.
	body := `<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" xmlns:a="http://apple.com/ns/ical/"><d:prop><d:resourcetype/><d:displayname/><a:calendar-color/><cs:getctag/><d:sync-token/><c:supported-calendar-component-set/><d:current-user-privilege-set/></d:prop></d:propfind>`
	ms = decodeMS(t, e.do("alice", "PROPFIND", "/dav/calendars/alice/", body, "Depth", "1"))
	if rt := ms.prop(mergedBase, "DAV:", "resourcetype"); rt == nil || rt.child(nsCalDAV, "calendar") == nil {
		t.Fatalf("resourcetype = %+v", rt)
	}
	if dn := ms.prop(mergedBase, "DAV:", "displayname"); dn == nil || dn.Text != "Everything" {
		t.Errorf("displayname = %+v", dn)
	}
	if c := ms.prop(mergedBase, nsApple, "calendar-color"); c == nil || c.Text != "#112233" {
		t.Errorf("calendar-color = %+v", c)
	}
	var comps []string
	for _, c := range ms.prop(mergedBase, nsCalDAV, "supported-calendar-component-set").Children {
		for _, a := range c.Attrs {
			comps = append(comps, a.Value)
		}
	}
	if !slices.Equal(comps, []string{"VEVENT", "VTODO", "VJOURNAL"}) {
		t.Errorf("supported-calendar-component-set = %v", comps)
	}
	ctag := ms.prop(mergedBase, nsCS, "getctag")
	tok := ms.prop(mergedBase, "DAV:", "sync-token")
	if ctag == nil || !strings.HasPrefix(ctag.Text, "m-") || tok == nil || !strings.HasPrefix(tok.Text, "urn:calgate:sync:m:") {
		t.Errorf("getctag %+v sync-token %+v", ctag, tok)
	}
	if privs := privileges(ms, mergedBase); slices.Contains(privs, "write-content") || slices.Contains(privs, "bind") || !slices.Contains(privs, "read") {
		t.Errorf("privileges of a read-only merged calendar: %v", privs)
	}

	// GET of the collection: each UID once, the winning versions.
	resp := e.do("alice", "GET", mergedBase, "")
	wantStatus(t, resp, http.StatusOK)
	ics := readAll(t, resp)
	for _, uid := range []string{"p1", "w1", "h1", "dup", "dup2", "dup3"} {
		if n := strings.Count(ics, "UID:"+uid+"\r\n"); n != 1 {
			t.Errorf("GET collection: UID %s appears %d times", uid, n)
		}
	}
	if !strings.Contains(ics, "SUMMARY:work version") || strings.Contains(ics, "SUMMARY:personal version") {
		t.Errorf("GET collection has the wrong dup version:\n%s", ics)
	}
	if resp.Header.Get("ETag") != `"`+ctag.Text+`"` {
		t.Errorf("collection ETag %q, ctag %q", resp.Header.Get("ETag"), ctag.Text)
	}

	// A loser and a foreign name are not there.
	for _, p := range []string{"personal~dup.ics", "personal~dup2.ics", "work~dup3.ics", "nosuch~p1.ics", "p1.ics"} {
		wantStatus(t, e.do("alice", "GET", mergedBase+p, ""), http.StatusNotFound)
	}
	// GET of a member object through the merged href: the member's bytes.
	resp = e.do("alice", "GET", mergedBase+"work~w1.ics", "")
	wantStatus(t, resp, http.StatusOK)
	if got := readAll(t, resp); got != string(w1.Data) || resp.Header.Get("ETag") != `"`+w1.ETag+`"` {
		t.Errorf("GET through the merged href: %q ETag %s", got, resp.Header.Get("ETag"))
	}
}

func privileges(ms msResp, href string) []string {
	var out []string
	if p := ms.prop(href, "DAV:", "current-user-privilege-set"); p != nil {
		for _, priv := range p.Children {
			for _, c := range priv.Children {
				out = append(out, c.XMLName.Local)
			}
		}
	}
	return out
}

// versionOf returns the merged calendar's getctag and sync-token.
func (e *env) versionOf(base string) (string, string) {
	e.t.Helper()
	body := `<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/><d:sync-token/></d:prop></d:propfind>`
	ms := decodeMS(e.t, e.do("alice", "PROPFIND", base, body, "Depth", "0"))
	c, s := ms.prop(base, nsCS, "getctag"), ms.prop(base, "DAV:", "sync-token")
	if c == nil || s == nil {
		e.t.Fatalf("%s: no getctag or sync-token", base)
	}
	return c.Text, s.Text
}

func TestMergedHrefsStableAcrossRestart(t *testing.T) {
	e := newMergedEnv(t, "")
	before := objectHrefs(decodeMS(t, e.do("alice", "PROPFIND", mergedBase, propfindData, "Depth", "1")), mergedBase)
	ctag, tok := e.versionOf(mergedBase)

	path := e.store.Path()
	e.srv.Close()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := cache.Open(path, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Store: st, Users: []User{{Name: "alice", PasswordHash: string(hash)}}, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	e2 := &env{t: t, store: st, h: h, srv: httptest.NewServer(h)}
	t.Cleanup(e2.srv.Close)

	after := objectHrefs(decodeMS(t, e2.do("alice", "PROPFIND", mergedBase, propfindData, "Depth", "1")), mergedBase)
	if !slices.Equal(before, after) {
		t.Fatalf("hrefs after restart %v, before %v", after, before)
	}
	if c, s := e2.versionOf(mergedBase); c != ctag || s != tok {
		t.Errorf("version after restart %s %s, before %s %s", c, s, ctag, tok)
	}
	// The old token still syncs: nothing changed.
	ms := decodeMS(t, e2.do("alice", "REPORT", mergedBase, syncBody(tok), "Depth", "1"))
	if len(ms.Responses) != 0 || ms.SyncToken != tok {
		t.Errorf("sync after restart: %v token %s", ms.hrefs(), ms.SyncToken)
	}
}

func syncBody(token string) string {
	return `<d:sync-collection xmlns:d="DAV:"><d:sync-token>` + token + `</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
}

func TestMergedVersion(t *testing.T) {
	e := newMergedEnv(t, "")
	ctag0, tok0 := e.versionOf(mergedBase)

	// A calendar that is not a member changes: nothing changes.
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/other/o.ics", event("o", "x", "20240101T000000Z", "20240101T010000Z"), ct, icsType), http.StatusCreated)
	wantStatus(t, e.do("bob", "PUT", "/dav/calendars/bob/personal/b.ics", event("b", "x", "20240101T000000Z", "20240101T010000Z"), ct, icsType), http.StatusCreated)
	if c, s := e.versionOf(mergedBase); c != ctag0 || s != tok0 {
		t.Fatalf("an unrelated write changed the version: %s %s -> %s %s", ctag0, tok0, c, s)
	}
	// The merged calendar's own properties: the version stays.
	wantStatus(t, e.do("alice", "PROPPATCH", mergedBase, `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>All of it</d:displayname></d:prop></d:set></d:propertyupdate>`, ct, xmlType), http.StatusMultiStatus)
	if c, _ := e.versionOf(mergedBase); c != ctag0 {
		t.Fatalf("PROPPATCH of the merged calendar changed the ctag")
	}

	// Each member's change changes both.
	seen := map[string]bool{ctag0: true, tok0: true}
	for _, change := range []func(){
		func() {
			wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/work/w2.ics", event("w2", "x", "20240101T000000Z", "20240101T010000Z"), ct, icsType), http.StatusCreated)
		},
		func() {
			wantStatus(t, e.do("alice", "DELETE", "/dav/calendars/alice/personal/p1.ics", ""), http.StatusNoContent)
		},
		func() {
			e.putICS("h2.ics", "h2", event("h2", "x", "20240101T000000Z", "20240101T010000Z"), time.Time{}, time.Time{})
		},
	} {
		change()
		c, s := e.versionOf(mergedBase)
		if seen[c] || seen[s] {
			t.Fatalf("a member write left the version at %s %s", c, s)
		}
		seen[c], seen[s] = true, true
	}
}

func TestMergedSyncCollection(t *testing.T) {
	e := newMergedEnv(t, "")
	ms := decodeMS(t, e.do("alice", "REPORT", mergedBase, syncBody(""), "Depth", "1"))
	if got := sorted(ms.hrefs()); !slices.Equal(got, sorted(wantVisible)) {
		t.Fatalf("initial sync = %v", got)
	}
	tok := ms.SyncToken

	// A member write and a member delete.
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/p2.ics", event("p2", "new", "20240115T100000Z", "20240115T110000Z"), ct, icsType), http.StatusCreated)
	wantStatus(t, e.do("alice", "DELETE", "/dav/calendars/alice/work/w1.ics", ""), http.StatusNoContent)
	ms = decodeMS(t, e.do("alice", "REPORT", mergedBase, syncBody(tok), "Depth", "1"))
	status := make(map[string]string)
	for _, r := range ms.Responses {
		status[r.Href] = r.Status
		if r.Status == "" && len(r.Propstats) > 0 {
			status[r.Href] = "200"
		}
	}
	if len(status) != 2 || status[mergedBase+"personal~p2.ics"] != "200" || !strings.Contains(status[mergedBase+"work~w1.ics"], "404") {
		t.Fatalf("delta = %v", status)
	}
	if ms.SyncToken == tok {
		t.Fatal("the sync token did not change")
	}
	tok = ms.SyncToken

	// The winner of a collision is deleted: the loser, unchanged, shows up.
	wantStatus(t, e.do("alice", "DELETE", "/dav/calendars/alice/work/dup-w.ics", ""), http.StatusNoContent)
	ms = decodeMS(t, e.do("alice", "REPORT", mergedBase, syncBody(tok), "Depth", "1"))
	var found, gone bool
	for _, r := range ms.Responses {
		switch {
		case r.Href == mergedBase+"personal~dup.ics" && len(r.Propstats) > 0:
			found = true
		case r.Href == mergedBase+"work~dup-w.ics" && strings.Contains(r.Status, "404"):
			gone = true
		case len(r.Propstats) > 0 && !slices.Contains(wantVisible, r.Href) && r.Href != mergedBase+"personal~p2.ics":
			t.Errorf("sync reports %s, which is not visible", r.Href)
		}
	}
	if !found || !gone {
		t.Fatalf("after deleting a winner: loser reported %v, winner gone %v (%v)", found, gone, ms.hrefs())
	}
	tok = ms.SyncToken

	// Nothing changed: an empty delta.
	ms = decodeMS(t, e.do("alice", "REPORT", mergedBase, syncBody(tok), "Depth", "1"))
	if len(ms.Responses) != 0 || ms.SyncToken != tok {
		t.Fatalf("idle sync = %v %s", ms.hrefs(), ms.SyncToken)
	}

	// Tokens of another calendar, garbage, or from before a member was
	// re-created are refused.
	_, plain := e.versionOf("/dav/calendars/alice/personal/")
	for _, bad := range []string{plain, "urn:calgate:sync:m:0000:1.2.3:0", "nonsense"} {
		wantPrecondition(t, e.do("alice", "REPORT", mergedBase, syncBody(bad), "Depth", "1"), http.StatusForbidden, "DAV:", "valid-sync-token")
	}
	if err := e.store.DeleteCalendar("alice", "holidays"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateCalendar(cache.Calendar{User: "alice", ID: "holidays", Kind: kindICS, Components: []string{"VEVENT"}}); err != nil {
		t.Fatal(err)
	}
	wantPrecondition(t, e.do("alice", "REPORT", mergedBase, syncBody(tok), "Depth", "1"), http.StatusForbidden, "DAV:", "valid-sync-token")
}

func TestMergedQueryAndMultiget(t *testing.T) {
	e := newMergedEnv(t, "")
	// January 10-12: one object of each member.
	query := `<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop>
<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20240110T000000Z" end="20240113T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`
	ms := decodeMS(t, e.do("alice", "REPORT", mergedBase, query, "Depth", "1"))
	want := sorted([]string{mergedBase + "personal~p1.ics", mergedBase + "work~w1.ics", mergedBase + "holidays~h1.ics"})
	if got := sorted(ms.hrefs()); !slices.Equal(got, want) {
		t.Fatalf("time-range query = %v, want %v", got, want)
	}
	// March 1: the colliding UID once, as the winner.
	query = strings.Replace(strings.Replace(query, "20240110T000000Z", "20240301T000000Z", 1), "20240113T000000Z", "20240302T000000Z", 1)
	ms = decodeMS(t, e.do("alice", "REPORT", mergedBase, query, "Depth", "1"))
	if got := ms.hrefs(); !slices.Equal(got, []string{mergedBase + "work~dup-w.ics"}) {
		t.Fatalf("query over a collision = %v", got)
	}

	multiget := `<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>` +
		`<d:href>` + mergedBase + `work~w1.ics</d:href><d:href>` + mergedBase + `holidays~h1.ics</d:href><d:href>` + mergedBase + `personal~dup.ics</d:href>` +
		`<d:href>` + mergedBase + `nosuch~x.ics</d:href><d:href>/dav/calendars/alice/personal/p1.ics</d:href></c:calendar-multiget>`
	ms = decodeMS(t, e.do("alice", "REPORT", mergedBase, multiget, "Depth", "1"))
	if cd := ms.prop(mergedBase+"work~w1.ics", nsCalDAV, "calendar-data"); cd == nil || !strings.Contains(cd.Text, "UID:w1") {
		t.Errorf("multiget work~w1.ics: %+v", cd)
	}
	if cd := ms.prop(mergedBase+"holidays~h1.ics", nsCalDAV, "calendar-data"); cd == nil || !strings.Contains(cd.Text, "UID:h1") {
		t.Errorf("multiget holidays~h1.ics: %+v", cd)
	}
	for _, r := range ms.Responses {
		switch r.Href {
		case mergedBase + "personal~dup.ics", mergedBase + "nosuch~x.ics", "/dav/calendars/alice/personal/p1.ics":
			if !strings.Contains(r.Status, "404") {
				t.Errorf("multiget %s: status %q, want 404 (a loser, an unknown member, another calendar)", r.Href, r.Status)
			}
		}
	}
	if len(ms.Responses) != 5 {
		t.Errorf("multiget answered %d hrefs, want 5", len(ms.Responses))
	}
	// Multiget on the home reaches merged hrefs too.
	ms = decodeMS(t, e.do("alice", "REPORT", "/dav/calendars/alice/", multiget, "Depth", "1"))
	if ms.prop("/dav/calendars/alice/personal/p1.ics", "DAV:", "getetag") == nil || ms.prop(mergedBase+"work~w1.ics", "DAV:", "getetag") == nil {
		t.Errorf("multiget on the home: %v", ms.hrefs())
	}

	// free-busy-query sees the merged calendar's visible events.
	fb := `<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav"><c:time-range start="20240110T000000Z" end="20240113T000000Z"/></c:free-busy-query>`
	resp := e.do("alice", "REPORT", mergedBase, fb, "Depth", "1")
	wantStatus(t, resp, http.StatusOK)
	if body := readAll(t, resp); !strings.Contains(body, "20240110T100000Z/") || !strings.Contains(body, "20240111T100000Z/") {
		t.Errorf("free-busy:\n%s", body)
	}
}

func TestMergedReadOnly(t *testing.T) {
	e := newMergedEnv(t, "")
	data := event("n1", "new", "20240101T000000Z", "20240101T010000Z")
	for _, tc := range []struct {
		method, path, body string
		hdr                []string
	}{
		{"PUT", mergedBase + "n1.ics", data, []string{ct, icsType}},
		{"PUT", mergedBase + "personal~n1.ics", data, []string{ct, icsType}},
		{"PUT", mergedBase + "personal~p1.ics", event("p1", "changed", "20240110T100000Z", "20240110T110000Z"), []string{ct, icsType}},
		{"DELETE", mergedBase + "personal~p1.ics", "", nil},
		{"DELETE", mergedBase + "work~w1.ics", "", nil},
		{"DELETE", mergedBase, "", nil},
		{"PROPPATCH", mergedBase + "personal~p1.ics", `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>x</d:displayname></d:prop></d:set></d:propertyupdate>`, []string{ct, xmlType}},
		{"MOVE", mergedBase + "personal~p1.ics", "", []string{"Destination", "/dav/calendars/alice/other/p1.ics"}},
		{"MOVE", "/dav/calendars/alice/other/o.ics", "", []string{"Destination", mergedBase + "o.ics"}},
		{"COPY", "/dav/calendars/alice/other/o.ics", "", []string{"Destination", mergedBase + "personal~o.ics"}},
	} {
		if tc.path == "/dav/calendars/alice/other/o.ics" {
			e.do("alice", "PUT", tc.path, event("o", "x", "20240101T000000Z", "20240101T010000Z"), ct, icsType)
		}
		wantPrecondition(t, e.do("alice", tc.method, tc.path, tc.body, tc.hdr...), http.StatusForbidden, "DAV:", "need-privileges")
	}
	if _, err := e.store.GetObject("alice", "personal", "n1.ics"); err == nil {
		t.Error("a refused PUT was stored")
	}
	if o, err := e.store.GetObject("alice", "personal", "p1.ics"); err != nil || !strings.Contains(string(o.Data), "Personal one") {
		t.Errorf("a refused PUT changed p1: %v", err)
	}
	// COPY out of it is a read.
	wantStatus(t, e.do("alice", "COPY", mergedBase+"work~w1.ics", "", "Destination", "/dav/calendars/alice/other/w1.ics"), http.StatusCreated)
	// PROPPATCH of the merged calendar's own properties is stored on its
	// record; members are untouched.
	ms := decodeMS(t, e.do("alice", "PROPPATCH", mergedBase, `<d:propertyupdate xmlns:d="DAV:" xmlns:a="http://apple.com/ns/ical/"><d:set><d:prop><d:displayname>All</d:displayname><a:calendar-color>#ff0000</a:calendar-color></d:prop></d:set></d:propertyupdate>`, ct, xmlType))
	if st := ms.propStatus(mergedBase, "DAV:", "displayname"); !strings.Contains(st, "200") {
		t.Fatalf("PROPPATCH displayname: %q", st)
	}
	cal, err := e.store.GetCalendar("alice", "everything")
	if err != nil || cal.DisplayName != "All" || cal.Color != "#ff0000" || !slices.Equal(cal.Members, []string{"personal", "work", "holidays"}) {
		t.Errorf("merged record after PROPPATCH: %+v, %v", cal, err)
	}
	if p, _ := e.store.GetCalendar("alice", "personal"); p.DisplayName != "Personal" {
		t.Errorf("member displayname changed to %q", p.DisplayName)
	}
}

func TestMergedWriteTo(t *testing.T) {
	var mu sync.Mutex
	var changed []string
	e := newMergedEnv(t, "personal", func(o *Options) {
		o.OnChange = func(user, cal string) {
			mu.Lock()
			defer mu.Unlock()
			changed = append(changed, cal)
		}
	})
	lastChange := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(changed) == 0 {
			return ""
		}
		return changed[len(changed)-1]
	}
	data := event("n1", "new", "20240120T100000Z", "20240120T110000Z")
	resp := e.do("alice", "PUT", mergedBase+"n1.ics", data, ct, icsType)
	wantStatus(t, resp, http.StatusCreated)
	if loc := resp.Header.Get("Location"); loc != mergedBase+"personal~n1.ics" {
		t.Errorf("Location = %q", loc)
	}
	if c := lastChange(); c != "personal" {
		t.Errorf("OnChange reported %q, want the member personal", c)
	}
	stored, err := e.store.GetObject("alice", "personal", "n1.ics")
	if err != nil || string(stored.Data) != data {
		t.Fatalf("PUT did not land in the member: %v", err)
	}
	// GET through both paths: the same bytes and ETag.
	r1 := e.do("alice", "GET", mergedBase+"personal~n1.ics", "")
	r2 := e.do("alice", "GET", "/dav/calendars/alice/personal/n1.ics", "")
	wantStatus(t, r1, http.StatusOK)
	wantStatus(t, r2, http.StatusOK)
	if b1, b2 := readAll(t, r1), readAll(t, r2); b1 != b2 || b1 != data || r1.Header.Get("ETag") != r2.Header.Get("ETag") {
		t.Errorf("GET through the merged calendar %q (%s), through the member %q (%s)", b1, r1.Header.Get("ETag"), b2, r2.Header.Get("ETag"))
	}
	// The listing shows it once, under the member's prefix.
	ms := decodeMS(t, e.do("alice", "PROPFIND", mergedBase, propfindData, "Depth", "1"))
	if got := objectHrefs(ms, mergedBase); !slices.Contains(got, mergedBase+"personal~n1.ics") || slices.Contains(got, mergedBase+"n1.ics") {
		t.Errorf("listing after PUT: %v", got)
	}
	// Privileges: the collection and WriteTo's objects are writable,
	// others' are not.
	privBody := `<d:propfind xmlns:d="DAV:"><d:prop><d:current-user-privilege-set/></d:prop></d:propfind>`
	ms = decodeMS(t, e.do("alice", "PROPFIND", mergedBase, privBody, "Depth", "1"))
	for href, writable := range map[string]bool{mergedBase: true, mergedBase + "personal~n1.ics": true, mergedBase + "work~w1.ics": false, mergedBase + "holidays~h1.ics": false} {
		if got := slices.Contains(privileges(ms, href), "write-content"); got != writable {
			t.Errorf("%s: write-content %v, want %v", href, got, writable)
		}
	}

	// Updating through either name updates the one object.
	updated := event("n1", "updated", "20240120T100000Z", "20240120T110000Z")
	wantStatus(t, e.do("alice", "PUT", mergedBase+"personal~n1.ics", updated, ct, icsType, "If-Match", r1.Header.Get("ETag")), http.StatusNoContent)
	if o, _ := e.store.GetObject("alice", "personal", "n1.ics"); string(o.Data) != updated {
		t.Errorf("update through the merged href: %q", o.Data)
	}
	// Other members stay read-only; a UID another member holds is a conflict.
	wantPrecondition(t, e.do("alice", "PUT", mergedBase+"work~w1.ics", event("w1", "x", "20240111T100000Z", "20240111T110000Z"), ct, icsType), http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "DELETE", mergedBase+"holidays~h1.ics", ""), http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "PUT", mergedBase+"w1copy.ics", event("w1", "x", "20240111T100000Z", "20240111T110000Z"), ct, icsType), http.StatusForbidden, nsCalDAV, "no-uid-conflict")
	// A loser of the same member can be rewritten (the collision predates it).
	wantStatus(t, e.do("alice", "PUT", mergedBase+"personal~dup.ics", eventWith("dup", "personal wins", "20240301T100000Z", "20240301T110000Z", "SEQUENCE:5"), ct, icsType), http.StatusNoContent)
	ms = decodeMS(t, e.do("alice", "PROPFIND", mergedBase, propfindData, "Depth", "1"))
	if got := objectHrefs(ms, mergedBase); !slices.Contains(got, mergedBase+"personal~dup.ics") || slices.Contains(got, mergedBase+"work~dup-w.ics") {
		t.Errorf("after a higher SEQUENCE the winner did not switch: %v", got)
	}
	// MOVE within: from the member into the merged calendar.
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/m.ics", event("m", "m", "20240101T000000Z", "20240101T010000Z"), ct, icsType), http.StatusCreated)
	resp = e.do("alice", "MOVE", "/dav/calendars/alice/personal/m.ics", "", "Destination", mergedBase+"m2.ics")
	wantStatus(t, resp, http.StatusCreated)
	if loc := resp.Header.Get("Location"); loc != mergedBase+"personal~m2.ics" {
		t.Errorf("MOVE Location = %q", loc)
	}
	// DELETE through the merged href removes the member's object.
	wantStatus(t, e.do("alice", "DELETE", mergedBase+"personal~n1.ics", ""), http.StatusNoContent)
	if _, err := e.store.GetObject("alice", "personal", "n1.ics"); err == nil {
		t.Error("DELETE through the merged href left the object")
	}
	if c := lastChange(); c != "personal" {
		t.Errorf("OnChange after DELETE reported %q", c)
	}
}

// TestMergedWriteToCalDAVMember: a write through the merged calendar into
// a mirrored CalDAV member takes the member's normal path: the outbox.
func TestMergedWriteToCalDAVMember(t *testing.T) {
	e := newEnv(t)
	for _, c := range []cache.Calendar{
		{User: "alice", ID: "work", Kind: kindCalDAV, Source: "work", Components: []string{"VEVENT"}},
		{User: "alice", ID: "both", Kind: kindMerged, Members: []string{"personal", "work"}, WriteTo: "work"},
	} {
		if _, err := e.store.CreateCalendar(c); err != nil {
			t.Fatal(err)
		}
	}
	resp := e.do("alice", "PUT", "/dav/calendars/alice/both/x.ics", event("x", "x", "20240101T000000Z", "20240101T010000Z"), ct, icsType)
	wantStatus(t, resp, http.StatusCreated)
	if loc := resp.Header.Get("Location"); loc != "/dav/calendars/alice/both/work~x.ics" {
		t.Errorf("Location = %q", loc)
	}
	pending, err := e.store.PendingOutbox("alice", "work")
	if err != nil || len(pending) != 1 || pending[0].Name != "x.ics" {
		t.Fatalf("outbox of work = %+v, %v", pending, err)
	}
}
