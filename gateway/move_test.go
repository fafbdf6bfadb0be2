package gateway

import (
	"net/http"
	"testing"
)

func TestMoveCopy(t *testing.T) {
	e := newEnv(t)
	wantStatus(t, e.do("alice", "MKCALENDAR", "/dav/calendars/alice/work/", ""), http.StatusCreated)
	body := event("mv", "Move me", "20240101T100000Z", "20240101T110000Z")
	src := "/dav/calendars/alice/personal/mv.ics"
	wantStatus(t, e.do("alice", "PUT", src, body, ct, icsType), http.StatusCreated)

	resp := e.do("alice", "MOVE", src, "", "Destination", e.srv.URL+"/dav/calendars/alice/work/moved.ics")
	wantStatus(t, resp, http.StatusCreated)
	wantStatus(t, e.do("alice", "GET", src, ""), http.StatusNotFound)
	g := e.do("alice", "GET", "/dav/calendars/alice/work/moved.ics", "")
	wantStatus(t, g, http.StatusOK)
	if readAll(t, g) != body {
		t.Fatal("moved object changed its bytes")
	}
	// COPY back; Overwrite: F refuses an existing destination.
	wantStatus(t, e.do("alice", "COPY", "/dav/calendars/alice/work/moved.ics", "", "Destination", src), http.StatusCreated)
	wantStatus(t, e.do("alice", "COPY", "/dav/calendars/alice/work/moved.ics", "", "Destination", src, "Overwrite", "F"), http.StatusPreconditionFailed)
	wantStatus(t, e.do("alice", "GET", "/dav/calendars/alice/work/moved.ics", ""), http.StatusOK)
	// Moving onto another name in a calendar that has the UID: no-uid-conflict.
	wantPrecondition(t, e.do("alice", "MOVE", "/dav/calendars/alice/work/moved.ics", "", "Destination", "/dav/calendars/alice/personal/other.ics"),
		http.StatusForbidden, nsCalDAV, "no-uid-conflict")
	// Never into another user's calendar.
	resp = e.do("alice", "MOVE", src, "", "Destination", "/dav/calendars/bob/personal/stolen.ics")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("MOVE to bob: %d", resp.StatusCode)
	}
	wantStatus(t, e.do("bob", "GET", "/dav/calendars/bob/personal/stolen.ics", ""), http.StatusNotFound)
	wantStatus(t, e.do("alice", "GET", src, ""), http.StatusOK)
	// Traversal in the Destination.
	resp = e.do("alice", "MOVE", src, "", "Destination", "/dav/calendars/alice/work/../../bob/personal/x.ics")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("MOVE with .. destination: %d", resp.StatusCode)
	}
}
