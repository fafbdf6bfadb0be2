package gateway

import (
	"net/http"
	"testing"

	"github.com/calgate/calgate/cache"
)

func TestICSCalendarIsReadOnly(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateCalendar(cache.Calendar{User: "alice", ID: "holidays", Kind: kindICS, Components: []string{"VEVENT"}}); err != nil {
		t.Fatal(err)
	}
	data := event("h1", "Holiday", "20240101T000000Z", "20240102T000000Z")
	if _, _, err := e.store.PutObject("alice", "holidays", cache.Object{Name: "h1.ics", UID: "h1", Component: "VEVENT", Data: []byte(data)}, cache.PutConditions{}); err != nil {
		t.Fatal(err)
	}
	base := "/dav/calendars/alice/holidays/"
	wantStatus(t, e.do("alice", "GET", base+"h1.ics", ""), http.StatusOK)
	wantPrecondition(t, e.do("alice", "PUT", base+"h2.ics", event("h2", "x", "20240101T000000Z", "20240102T000000Z"), ct, icsType), http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "PUT", base+"h1.ics", data, ct, icsType), http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "DELETE", base+"h1.ics", ""), http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "DELETE", base, ""), http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "PROPPATCH", base, `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>x</d:displayname></d:prop></d:set></d:propertyupdate>`, ct, xmlType),
		http.StatusForbidden, "DAV:", "need-privileges")
	wantPrecondition(t, e.do("alice", "MOVE", base+"h1.ics", "", "Destination", "/dav/calendars/alice/personal/h1.ics"), http.StatusForbidden, "DAV:", "need-privileges")
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/p.ics", event("p", "x", "20240101T000000Z", "20240102T000000Z"), ct, icsType), http.StatusCreated)
	wantPrecondition(t, e.do("alice", "COPY", "/dav/calendars/alice/personal/p.ics", "", "Destination", base+"p.ics"), http.StatusForbidden, "DAV:", "need-privileges")
	// COPY out of it is fine.
	wantStatus(t, e.do("alice", "COPY", base+"h1.ics", "", "Destination", "/dav/calendars/alice/personal/h1.ics"), http.StatusCreated)
	wantStatus(t, e.do("alice", "GET", base+"h1.ics", ""), http.StatusOK)

	// The privilege set says read-only, for the calendar and its objects.
	ms := decodeMS(t, e.do("alice", "PROPFIND", base, `<d:propfind xmlns:d="DAV:"><d:prop><d:current-user-privilege-set/></d:prop></d:propfind>`, "Depth", "1"))
	for _, h := range []string{base, base + "h1.ics"} {
		p := ms.prop(h, "DAV:", "current-user-privilege-set")
		if p == nil {
			t.Fatalf("%s: no current-user-privilege-set", h)
		}
		for _, priv := range p.Children {
			for _, c := range priv.Children {
				if c.XMLName.Local != "read" && c.XMLName.Local != "read-current-user-privilege-set" && c.XMLName.Local != "read-free-busy" {
					t.Fatalf("%s: privilege %s on a read-only calendar", h, c.XMLName.Local)
				}
			}
		}
	}
}
