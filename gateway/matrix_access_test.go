package gateway

import (
	"bufio"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// The isolation, authentication and feed-token rows of issue 8's
// adversarial matrix, against the real handler over a real store.

// Bob's secrets: none may appear in any answer to alice.
const (
	bobUID     = "bob-uid-Qm7Rt2"
	bobSummary = "Bob hidden summary Zx9Kp"
	bobCalName = "Bob private calendar Wv4Lh"
	bobObject  = "/dav/calendars/bob/personal/secret.ics"
)

// rawConn is one client connection to the test server on which requests
// are written by hand, so that request targets reach the server exactly
// as spelled and several requests share one connection.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, e *env) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.Listener.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// basic is the Authorization header value of user with testPassword.
func basic(user string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, testPassword)
	return r.Header.Get("Authorization")
}

// send writes one request (auth: the whole Authorization value, "" for
// none; hdr: name, value pairs) and reads its answer.
func (rc *rawConn) send(method, target, auth, body string, hdr ...string) (*http.Response, string) {
	rc.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, target)
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(rc.c, b.String()); err != nil {
		rc.t.Fatalf("%s %q: write: %v", method, target, err)
	}
	return rc.read(method, target)
}

func (rc *rawConn) read(method, target string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("%s %q: reading the answer: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		rc.t.Fatalf("%s %q: reading the body: %v", method, target, err)
	}
	return resp, string(b)
}

// userState is what the store holds for one user: calendars (with their
// revisions, i.e. ctags and sync tokens) and objects (with ETags).
func userState(t *testing.T, st *cache.Store, user string) fuzzState {
	t.Helper()
	s := fuzzSnapshot(t, st)
	out := fuzzState{cals: map[string][]cache.Calendar{user: s.cals[user]}, objs: map[string][]cache.Object{}}
	for k, v := range s.objs {
		if strings.HasPrefix(k, user+"/") {
			out.objs[k] = v
		}
	}
	return out
}

// leaks returns the first of bob's secrets (with more, e.g. his ETag)
// that s contains, or "". Only an answer that echoes a request's hrefs
// (a multiget) may name bob's hrefs; leaksHref also looks for them.
func leaks(s string, more ...string) string {
	for _, x := range append([]string{bobUID, bobSummary, bobCalName}, more...) {
		if x != "" && strings.Contains(s, x) {
			return x
		}
	}
	return ""
}

func leaksHref(s string, more ...string) string {
	return leaks(s, append(more, "/dav/calendars/bob/", "/dav/principals/bob/")...)
}

// bobEnv is a gateway where bob has a secret object in his personal
// calendar, a named calendar and a second one, and alice an object of
// her own.
func bobEnv(t *testing.T, opts ...func(*Options)) (e *env, bobETag string) {
	t.Helper()
	e = newEnv(t, opts...)
	resp := e.do("bob", "PUT", bobObject, event(bobUID, bobSummary, "20240101T100000Z", "20240101T110000Z"), ct, icsType)
	wantStatus(t, resp, http.StatusCreated)
	bobETag = strings.Trim(resp.Header.Get("ETag"), `"`)
	wantStatus(t, e.do("bob", "PROPPATCH", "/dav/calendars/bob/personal/", `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>`+
		bobCalName+`</d:displayname></d:prop></d:set></d:propertyupdate>`, ct, xmlType), http.StatusMultiStatus)
	wantStatus(t, e.do("bob", "MKCALENDAR", "/dav/calendars/bob/work/", ""), http.StatusCreated)
	wantStatus(t, e.do("alice", "PUT", "/dav/calendars/alice/personal/mine.ics",
		event("alice-uid", "Alice's own", "20240101T100000Z", "20240101T110000Z"), ct, icsType), http.StatusCreated)
	return e, bobETag
}

// isoMethod is a request of the isolation matrix: a method with the
// headers and body that make it a well-formed request of its kind.
type isoMethod struct {
	name, method, body string
	hdr                []string
}

func isoMethods() []isoMethod {
	props := `<d:prop><d:getetag/><d:displayname/><cs:getctag/><d:sync-token/><c:calendar-data/><d:resourcetype/>` +
		`<d:current-user-principal/><c:calendar-home-set/><d:owner/></d:prop>`
	ns := ` xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/"`
	x := []string{ct, xmlType}
	return []isoMethod{
		{"OPTIONS", "OPTIONS", "", nil},
		{"GET", "GET", "", nil},
		{"HEAD", "HEAD", "", nil},
		{"PUT", "PUT", event("intruder-uid", "Alice was here", "20240101T100000Z", "20240101T110000Z"), []string{ct, icsType}},
		{"DELETE", "DELETE", "", nil},
		{"PROPFIND0", "PROPFIND", `<d:propfind` + ns + `>` + props + `</d:propfind>`, append([]string{"Depth", "0"}, x...)},
		{"PROPFIND1", "PROPFIND", `<d:propfind` + ns + `>` + props + `</d:propfind>`, append([]string{"Depth", "1"}, x...)},
		{"PROPFIND1-allprop", "PROPFIND", "", []string{"Depth", "1"}},
		{"PROPPATCH", "PROPPATCH", `<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>owned</d:displayname></d:prop></d:set></d:propertyupdate>`, x},
		{"MKCALENDAR", "MKCALENDAR", "", nil},
		{"MKCOL", "MKCOL", `<d:mkcol` + ns + `><d:set><d:prop><d:resourcetype><d:collection/><c:calendar/></d:resourcetype></d:prop></d:set></d:mkcol>`, x},
		{"REPORT-query", "REPORT", `<c:calendar-query` + ns + `>` + props + `<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter></c:filter></c:calendar-query>`,
			append([]string{"Depth", "1"}, x...)},
		{"REPORT-multiget", "REPORT", `<c:calendar-multiget` + ns + `>` + props + `<d:href>` + bobObject + `</d:href></c:calendar-multiget>`, x},
		{"REPORT-sync", "REPORT", `<d:sync-collection` + ns + `><d:sync-token/><d:sync-level>1</d:sync-level>` + props + `</d:sync-collection>`, x},
		{"REPORT-freebusy", "REPORT", `<c:free-busy-query` + ns + `><c:time-range start="20231201T000000Z" end="20240301T000000Z"/></c:free-busy-query>`, x},
		{"MOVE", "MOVE", "", []string{"Destination", "/dav/calendars/alice/personal/taken.ics"}},
		{"COPY", "COPY", "", []string{"Destination", "/dav/calendars/alice/personal/taken.ics"}},
		{"POST", "POST", "x=1", []string{ct, "application/x-www-form-urlencoded"}},
		{"LOCK", "LOCK", `<d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype></d:lockinfo>`, x},
		{"UNLOCK", "UNLOCK", "", []string{"Lock-Token", "<urn:uuid:0>"}},
		{"ACL", "ACL", `<d:acl xmlns:d="DAV:"/>`, x},
	}
}

// answer is what a client learns from a response: status, headers but
// Date, and body.
type answer struct {
	status int
	hdr    http.Header
	body   string
}

func answerOf(t *testing.T, resp *http.Response) answer {
	t.Helper()
	h := resp.Header.Clone()
	h.Del("Date")
	return answer{resp.StatusCode, h, readAll(t, resp)}
}

// TestMatrixIsolation: every method calgate serves, sent by alice to
// bob's principal, home, calendar and object, gets exactly the answer a
// resource that does not exist gets (status, headers and body), never
// carries bob's data, and changes nothing of bob's. MOVE and COPY cannot
// reach bob's calendars whatever the Destination spelling, a multiget
// cannot read bob's objects, no path spelling leaves alice's subtree,
// and user names that differ only in case, encoding or punctuation stay
// apart.
func TestMatrixIsolation(t *testing.T) {
	t.Run("methods", func(t *testing.T) {
		e, bobETag := bobEnv(t)
		before := userState(t, e.store, "bob")
		targets := []struct {
			kind    string
			foreign string
			absent  []string // the same shape, not existing: no user, or no such child of bob
			own     string   // alice's own resource of this shape that does not exist ("" if none)
		}{
			{"principal", "/dav/principals/bob/", []string{"/dav/principals/nobody/", "/dav/principals/bob2/"}, ""},
			{"home", "/dav/calendars/bob/", []string{"/dav/calendars/nobody/"}, ""},
			{"calendar", "/dav/calendars/bob/personal/", []string{"/dav/calendars/nobody/personal/", "/dav/calendars/bob/nosuch/"}, "/dav/calendars/alice/nosuch/"},
			{"object", bobObject, []string{"/dav/calendars/nobody/personal/secret.ics", "/dav/calendars/bob/personal/nosuch.ics", "/dav/calendars/bob/nosuch/secret.ics"},
				"/dav/calendars/alice/personal/nosuch.ics"},
		}
		statuses := map[string]int{}
		var notFound string
		cases := 0
		for _, m := range isoMethods() {
			for _, tg := range targets {
				got := answerOf(t, e.do("alice", m.method, tg.foreign, m.body, m.hdr...))
				cases++
				where := m.name + " " + tg.foreign
				if s := leaksHref(got.body+fmt.Sprint(got.hdr), bobETag); s != "" {
					t.Errorf("%s: the answer carries bob's %q:\n%s", where, s, got.body)
				}
				if got.status < 400 && m.method != "OPTIONS" {
					t.Errorf("%s: status %d, want 4xx", where, got.status)
				}
				statuses[fmt.Sprint(got.status)]++
				if got.status == http.StatusNotFound && m.method != "HEAD" {
					if notFound == "" {
						notFound = got.body
					} else if got.body != notFound {
						t.Errorf("%s: 404 body differs from the others:\n%s\n%s", where, got.body, notFound)
					}
				}
				if now := userState(t, e.store, "bob"); !reflect.DeepEqual(now, before) {
					t.Fatalf("%s changed bob's store:\n%+v\n%+v", where, before, now)
				}
				for _, a := range tg.absent {
					other := answerOf(t, e.do("alice", m.method, a, m.body, m.hdr...))
					cases++
					if other.status != got.status || other.body != got.body || !reflect.DeepEqual(other.hdr, got.hdr) {
						t.Errorf("%s answers differently from %s (an existence oracle):\n%d %v\n%s\n---\n%d %v\n%s",
							where, a, got.status, got.hdr, got.body, other.status, other.hdr, other.body)
					}
				}
				// Alice's own missing resources: a read or a removal is
				// the same 404 (creating methods would create them).
				if tg.own != "" && !slices.Contains([]string{"OPTIONS", "PUT", "MKCALENDAR", "MKCOL", "POST", "LOCK", "UNLOCK", "ACL", "MOVE", "COPY"}, m.method) &&
					!strings.HasPrefix(m.name, "REPORT") {
					own := answerOf(t, e.do("alice", m.method, tg.own, m.body, m.hdr...))
					cases++
					if own.status != got.status || own.body != got.body {
						t.Errorf("%s answers differently from alice's own missing %s:\n%d %s\n---\n%d %s", where, tg.own, got.status, got.body, own.status, own.body)
					}
				}
			}
		}
		// Collections above the users list only alice.
		for _, p := range []string{"/", "/dav/", "/dav/principals/", "/dav/calendars/", "/dav/calendars/alice/", "/dav/calendars/alice/personal/"} {
			for _, m := range isoMethods() {
				if m.method != "PROPFIND" && m.method != "REPORT" {
					continue
				}
				resp := e.do("alice", m.method, p, strings.ReplaceAll(m.body, bobObject, "/dav/calendars/alice/personal/mine.ics"), m.hdr...)
				cases++
				if b := readAll(t, resp); leaksHref(b, bobETag) != "" {
					t.Errorf("%s %s as alice: the answer carries bob's %q:\n%s", m.name, p, leaksHref(b, bobETag), b)
				}
			}
		}
		if now := userState(t, e.store, "bob"); !reflect.DeepEqual(now, before) {
			t.Fatalf("bob's store changed:\n%+v\n%+v", before, now)
		}
		resp := e.do("bob", "GET", bobObject, "")
		if wantStatus(t, resp, http.StatusOK); !strings.Contains(readAll(t, resp), bobSummary) {
			t.Fatal("bob's object lost its data")
		}
		t.Logf("MATRIX isolation: %d methods x bob's principal, home, calendar, object: statuses %v, each answered as its missing counterparts; %d requests in all",
			len(isoMethods()), statuses, cases)
	})

	t.Run("move-copy-destinations", func(t *testing.T) {
		e, _ := bobEnv(t)
		src := "/dav/calendars/alice/personal/mine.ics"
		srcResp := e.do("alice", "GET", src, "")
		wantStatus(t, srcResp, http.StatusOK)
		srcETag, srcBody := srcResp.Header.Get("ETag"), readAll(t, srcResp)
		bob, alice := userState(t, e.store, "bob"), userState(t, e.store, "alice")
		host := strings.TrimPrefix(e.srv.URL, "http://")
		dests := []string{
			"/dav/calendars/bob/personal/stolen.ics",
			e.srv.URL + "/dav/calendars/bob/personal/stolen.ics",
			"http://evil.example/dav/calendars/bob/personal/stolen.ics",
			"//evil.example/dav/calendars/bob/personal/stolen.ics",
			"http://alice:secret@" + host + "/dav/calendars/bob/personal/stolen.ics",
			"/dav/calendars/bob/personal/secret.ics", // over bob's object
			"/dav/calendars/bob/work/stolen.ics",
			"/dav/calendars/bob/personal/",
			"/dav/calendars/bob/",
			"/dav/principals/bob/",
			"/dav/principals/bob/stolen.ics",
			"/dav/calendars/alice/personal/../../bob/personal/stolen.ics",
			e.srv.URL + "/dav/calendars/alice/personal/../../bob/personal/stolen.ics",
			"/dav/calendars/alice/%2e%2e/bob/personal/stolen.ics",
			"/dav/calendars/alice/personal/..%2f..%2fbob%2fpersonal%2fstolen.ics",
			"/dav/calendars/alice%2fbob/personal/stolen.ics",
			"/dav/calendars/alice/personal/..%5c..%5cbob%5cpersonal%5cstolen.ics",
			"/dav/calendars//bob/personal/stolen.ics",
			"/dav/calendars/%62ob/personal/stolen.ics",
			"/dav/calendars/Bob/personal/stolen.ics",
			"/dav/calendars/bob;alice/personal/stolen.ics",
			"../../bob/personal/stolen.ics",
			"bob/personal/stolen.ics",
			" /dav/calendars/bob/personal/stolen.ics ",
			"/dav/calendars/alice/personal/%00/../../../bob/personal/stolen.ics",
		}
		statuses := map[int]int{}
		for _, d := range dests {
			for _, m := range []string{"COPY", "MOVE"} {
				for _, ow := range []string{"T", "F"} {
					resp := e.do("alice", m, src, "", "Destination", d, "Overwrite", ow)
					b := readAll(t, resp)
					statuses[resp.StatusCode]++
					if resp.StatusCode < 400 || resp.StatusCode >= 500 {
						t.Errorf("%s to %q: %d, want refused (4xx):\n%s", m, d, resp.StatusCode, b)
					}
					if s := leaksHref(b + fmt.Sprint(resp.Header)); s != "" {
						t.Errorf("%s to %q: the answer carries %q", m, d, s)
					}
					if now := userState(t, e.store, "bob"); !reflect.DeepEqual(now, bob) {
						t.Fatalf("%s to %q changed bob's store", m, d)
					}
					if now := userState(t, e.store, "alice"); !reflect.DeepEqual(now, alice) {
						t.Fatalf("%s to %q changed alice's store", m, d)
					}
				}
			}
		}
		// A destination of bob's answers as one of a user who does not
		// exist, or of a calendar bob does not have.
		for _, m := range []string{"COPY", "MOVE"} {
			got := answerOf(t, e.do("alice", m, src, "", "Destination", "/dav/calendars/bob/personal/stolen.ics"))
			for _, d := range []string{"/dav/calendars/nobody/personal/stolen.ics", "/dav/calendars/bob/nosuch/stolen.ics"} {
				if other := answerOf(t, e.do("alice", m, src, "", "Destination", d)); !reflect.DeepEqual(other, got) {
					t.Errorf("%s to bob's calendar and to %s answer differently:\n%+v\n%+v", m, d, got, other)
				}
			}
		}
		// Bob's objects are not a source either.
		for _, m := range []string{"COPY", "MOVE"} {
			resp := e.do("alice", m, bobObject, "", "Destination", "/dav/calendars/alice/personal/taken.ics")
			if b := readAll(t, resp); resp.StatusCode != http.StatusNotFound || leaksHref(b) != "" {
				t.Errorf("%s of bob's object: %d\n%s", m, resp.StatusCode, b)
			}
		}
		if !reflect.DeepEqual(userState(t, e.store, "bob"), bob) || !reflect.DeepEqual(userState(t, e.store, "alice"), alice) {
			t.Fatal("a refused MOVE or COPY of bob's object changed a store")
		}
		resp := e.do("alice", "GET", src, "")
		if wantStatus(t, resp, http.StatusOK); resp.Header.Get("ETag") != srcETag || readAll(t, resp) != srcBody {
			t.Fatal("alice's source changed")
		}
		t.Logf("MATRIX isolation: MOVE/COPY x Overwrite T/F to %d destinations of bob (absolute, relative, other host, traversal): statuses %v", len(dests), statuses)
	})

	t.Run("multiget", func(t *testing.T) {
		e, bobETag := bobEnv(t)
		host := strings.TrimPrefix(e.srv.URL, "http://")
		hrefs := []string{
			bobObject, e.srv.URL + bobObject, "http://evil.example" + bobObject, "//" + host + bobObject,
			"/dav/calendars/alice/personal/../../bob/personal/secret.ics", "/dav/calendars/alice/%2e%2e/bob/personal/secret.ics",
			"/dav/calendars/alice/personal/..%2f..%2fbob%2fpersonal%2fsecret.ics", "/dav/calendars/alice%2fbob/personal/secret.ics",
			"/dav/calendars/%62ob/personal/secret.ics", "/dav/calendars/bob/personal/nosuch.ics", "/dav/calendars/nobody/personal/secret.ics",
			"../../bob/personal/secret.ics", "bob/personal/secret.ics", "/dav/calendars/bob/personal/", "/dav/calendars/bob/work/secret.ics",
		}
		mine := "/dav/calendars/alice/personal/mine.ics"
		var b strings.Builder
		b.WriteString(`<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>`)
		for _, h := range append(hrefs, mine) {
			fmt.Fprintf(&b, "<d:href>%s</d:href>", strings.ReplaceAll(h, "&", "&amp;"))
		}
		b.WriteString(`</c:calendar-multiget>`)
		for _, at := range []string{"/dav/calendars/alice/personal/", "/dav/calendars/alice/", mine} {
			resp := e.do("alice", "REPORT", at, b.String(), ct, xmlType)
			wantStatus(t, resp, http.StatusMultiStatus)
			body := readAll(t, resp)
			if s := leaks(body, bobETag); s != "" {
				t.Fatalf("multiget at %s carries bob's %q:\n%s", at, s, body)
			}
			var ms msResp
			if err := xml.Unmarshal([]byte(body), &ms); err != nil {
				t.Fatal(err)
			}
			if len(ms.Responses) != len(hrefs)+1 {
				t.Fatalf("multiget at %s: %d responses for %d hrefs", at, len(ms.Responses), len(hrefs)+1)
			}
			for _, r := range ms.Responses {
				if r.Href == mine {
					if at != mine && (len(r.Propstats) == 0 || ms.prop(mine, nsCalDAV, "calendar-data") == nil) {
						t.Errorf("multiget at %s: alice's own object not served: %+v", at, r)
					}
					continue
				}
				if !strings.Contains(r.Status, " 404 ") || len(r.Propstats) != 0 {
					t.Errorf("multiget at %s: href %q answered %q with %d propstats, want 404 and none", at, r.Href, r.Status, len(r.Propstats))
				}
			}
		}
		t.Logf("MATRIX isolation: multiget at alice's calendar, home and object with %d hrefs into bob's calendars: each 404, no data", len(hrefs))
	})

	t.Run("traversal", func(t *testing.T) {
		e, bobETag := bobEnv(t)
		// Sanity: a raw request reaches the handler and a readable path
		// is served, so that the refusals below are the path's doing.
		if resp, body := dialRaw(t, e).send("GET", bobObject, basic("bob"), ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, bobSummary) {
			t.Fatalf("raw GET of bob's object as bob: %d", resp.StatusCode)
		}
		bob, alice := userState(t, e.store, "bob"), userState(t, e.store, "alice")
		const a = "/dav/calendars/alice/personal/"
		spellings := []string{
			a + "../../bob/personal/secret.ics",
			a + "%2e%2e/%2e%2e/bob/personal/secret.ics",
			a + "%2E%2E%2F%2E%2E%2Fbob%2Fpersonal%2Fsecret.ics",
			a + "..%2f..%2fbob%2fpersonal%2fsecret.ics",
			a + ".%2e/%2e./bob/personal/secret.ics",
			a + "%252e%252e/%252e%252e/bob/personal/secret.ics",
			a + "./../../bob/personal/secret.ics",
			"/dav/calendars/alice//../bob/personal/secret.ics",
			"/dav/calendars//bob/personal/secret.ics",
			"//dav/calendars/bob/personal/secret.ics",
			"/dav//calendars/bob/personal/secret.ics",
			a + `..\..\bob\personal\secret.ics`,
			a + "..%5c..%5cbob%5cpersonal%5csecret.ics",
			a + "%00/../../bob/personal/secret.ics",
			a + "secret.ics%00/../../../bob/personal/secret.ics",
			a + "%c0%ae%c0%ae/%c0%ae%c0%ae/bob/personal/secret.ics",
			a + "%c0%2e%c0%2e/%c0%2e%c0%2e/bob/personal/secret.ics",
			"/dav/calendars/alice%c0%af..%c0%afbob/personal/secret.ics",
			"/dav/calendars/alice;/../bob/personal/secret.ics",
			"/dav/calendars/bob;alice/personal/secret.ics",
			a + "..;/..;/bob/personal/secret.ics",
			a + ".../.../bob/personal/secret.ics",
			"/dav/calendars/alice./../bob/personal/secret.ics",
			"/dav/calendars/bob./personal/secret.ics",
			"/dav/calendars/bob%20/personal/secret.ics",
			a + "%E2%80%A4%E2%80%A4/%E2%80%A4%E2%80%A4/bob/personal/secret.ics",
			a + "%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/bob/personal/secret.ics",
			a + "%2e%2e%2f%2e%2e%2fbob/personal/secret.ics",
			"/dav/./calendars/bob/personal/secret.ics",
			"/dav/calendars/%61lice/../bob/personal/secret.ics",
			"/DAV/calendars/bob/personal/secret.ics",
			"/dav/calendars/BOB/personal/secret.ics",
			"http://evil.example/dav/calendars/bob/personal/secret.ics",
			"http://127.0.0.1/dav/calendars/alice/../bob/personal/secret.ics",
			"http://alice@evil.example/dav/calendars/alice/personal/%2e%2e/%2e%2e/bob/personal/secret.ics",
			a + "../../bob/personal/secret.ics?x=/../",
			a + "..%2F..%2F..%2F..%2Fdav%2Fcalendars%2Fbob%2Fpersonal%2Fsecret.ics",
		}
		put := event("traversal-uid", "Traversal write", "20240101T100000Z", "20240101T110000Z")
		statuses := map[int]int{}
		for _, sp := range spellings {
			for _, m := range []string{"GET", "PUT", "PROPFIND", "DELETE"} {
				body, hdr := "", []string{"Depth", "1"}
				if m == "PUT" {
					body, hdr = put, []string{ct, icsType}
				}
				resp, b := dialRaw(t, e).send(m, sp, basic("alice"), body, hdr...)
				statuses[resp.StatusCode]++
				if resp.StatusCode < 400 || resp.StatusCode >= 500 {
					t.Errorf("%s %q: %d, want 4xx\n%s", m, sp, resp.StatusCode, b)
				}
				if s := leaks(b+fmt.Sprint(resp.Header), bobETag); s != "" {
					t.Errorf("%s %q: the answer carries bob's %q", m, sp, s)
				}
				if !reflect.DeepEqual(userState(t, e.store, "bob"), bob) || !reflect.DeepEqual(userState(t, e.store, "alice"), alice) {
					t.Fatalf("%s %q changed the store", m, sp)
				}
			}
		}
		t.Logf("MATRIX isolation: %d path traversal spellings x GET/PUT/PROPFIND/DELETE as raw request targets: statuses %v, nothing read or written", len(spellings), statuses)
	})

	t.Run("odd-usernames", func(t *testing.T) {
		// The config allows letters, digits, '.', '_' and '-', so "Alice"
		// and "alice", "a.b" and "ab" are different users; the gateway
		// itself takes any name without '/', control characters or '\\'.
		odd := []string{"Alice", "ALICE", "a.b", "ab", "a@b.c", "\u00e5lice", "a\u030alice", " alice", "alice ", "al%69ce", "alice.", "a_b", "a-b"}
		e := newEnv(t, func(o *Options) {
			for _, u := range odd {
				o.Users = append(o.Users, User{Name: u, PasswordHash: o.Users[0].PasswordHash})
			}
		})
		users := append([]string{"alice", "bob"}, odd...)
		secret := func(u string) string { return fmt.Sprintf("Summary of user [%x]", u) }
		for _, u := range odd {
			if _, err := e.store.CreateCalendar(cache.Calendar{User: u, ID: "personal", Components: []string{"VEVENT"}}); err != nil {
				t.Fatal(err)
			}
		}
		for _, u := range users {
			resp := e.do(u, "PUT", objectHref(u, "personal", "secret.ics"), event(fmt.Sprintf("uid-%x-end", u), secret(u), "20240101T100000Z", "20240101T110000Z"), ct, icsType)
			wantStatus(t, resp, http.StatusCreated)
		}
		before := map[string]fuzzState{}
		for _, u := range users {
			before[u] = userState(t, e.store, u)
		}
		// spellings returns ways to write a user segment naming v, or
		// something close to v.
		spellings := func(v string) []string {
			var up, low strings.Builder
			for i := 0; i < len(v); i++ {
				fmt.Fprintf(&up, "%%%02X", v[i])
				fmt.Fprintf(&low, "%%%02x", v[i])
			}
			return []string{
				url.PathEscape(v), up.String(), low.String(), url.PathEscape(strings.ToUpper(v)), url.PathEscape(strings.ToLower(v)),
				url.PathEscape(v + "."), "%20" + url.PathEscape(v), url.PathEscape(v) + "%20", strings.ReplaceAll(url.PathEscape(v), ".", "%2e"),
				url.QueryEscape(v), url.PathEscape(strings.TrimSpace(v)),
			}
		}
		requests, own, refused := 0, 0, 0
		for _, u := range users {
			rc := dialRaw(t, e)
			for _, v := range users {
				for _, seg := range spellings(v) {
					dec, err := url.PathUnescape(seg)
					for _, r := range []struct{ method, path string }{
						{"GET", "/dav/calendars/" + seg + "/personal/secret.ics"},
						{"PROPFIND", "/dav/calendars/" + seg + "/"},
						{"PROPFIND", "/dav/principals/" + seg + "/"},
					} {
						resp, b := rc.send(r.method, r.path, basic(u), "", "Depth", "1")
						requests++
						for _, w := range users {
							if w != u && (strings.Contains(b, secret(w)) || strings.Contains(b, fmt.Sprintf("uid-%x-end", w)) ||
								strings.Contains(b, homeHref(w)) || strings.Contains(b, principalHref(w))) {
								t.Fatalf("%q: %s %s carries %q's data:\n%s", u, r.method, r.path, w, b)
							}
						}
						switch {
						case err == nil && dec == u:
							own++
							if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusMultiStatus {
								t.Errorf("%q: %s %s (its own): %d\n%s", u, r.method, r.path, resp.StatusCode, b)
							}
							if r.method == "GET" && !strings.Contains(b, secret(u)) {
								t.Errorf("%q: GET %s lacks its own data", u, r.path)
							}
						case resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest:
							t.Errorf("%q: %s %s (%q): %d, want 404 or 400\n%s", u, r.method, r.path, dec, resp.StatusCode, b)
						default:
							refused++
						}
					}
				}
			}
		}
		for _, u := range users {
			if !reflect.DeepEqual(userState(t, e.store, u), before[u]) {
				t.Errorf("%q's store changed", u)
			}
		}
		t.Logf("MATRIX isolation: %d users (%q), %d requests with user segments differing in case, encoding, dots and spaces: %d reached the signed-in user's own, %d refused (404/400), none crossed",
			len(users), users, requests, own, refused)
	})
}

// fakeClock drives the authenticator's rate limiter.
type fakeClock struct{ ns atomic.Int64 }

func useFakeClock(e *env) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	e.h.auth.now = func() time.Time { return time.Unix(0, c.ns.Load()) }
	return c
}

func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// login sends PROPFIND /dav/ as user with pass from the client address
// xff (behind the trusted proxy 127.0.0.1) and returns the status.
func login(e *env, path, user, pass, xff string) int {
	e.t.Helper()
	rc := dialRaw(e.t, e)
	method := "PROPFIND"
	if path == "/" {
		method = "GET"
	}
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	resp, _ := rc.send(method, path, r.Header.Get("Authorization"), "", "Depth", "0", "X-Forwarded-For", xff)
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != strconv.Itoa(int(failureEvery/time.Second)) {
		e.t.Errorf("429 with Retry-After %q, want the limiter's interval %v in seconds", resp.Header.Get("Retry-After"), failureEvery)
	}
	return resp.StatusCode
}

// burstUntilLimited makes failed sign-in attempt(i) for i = 0, 1, ...
// until one is answered 429, and returns how many were answered 401
// before it; other answers, or 100 attempts without a 429, fail t.
func burstUntilLimited(t *testing.T, what string, attempt func(i int) int) int {
	t.Helper()
	for i := range 100 {
		switch code := attempt(i); code {
		case http.StatusTooManyRequests:
			return i
		case http.StatusUnauthorized:
		default:
			t.Fatalf("%s: attempt %d: %d, want 401 or 429", what, i, code)
		}
	}
	t.Fatalf("100 %s and no 429", what)
	return 0
}

// TestMatrixAuth: failed sign-ins are limited per user and per client
// address after a burst, and then even the right password is refused
// until the window passes (also when the password was verified and
// remembered before); every request on a keep-alive connection is
// authenticated on its own; malformed Authorization headers are 401s.
func TestMatrixAuth(t *testing.T) {
	trusted := func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }

	t.Run("per-user", func(t *testing.T) {
		e := newEnv(t, trusted)
		clock := useFakeClock(e)
		if code := login(e, "/dav/", "alice", testPassword, "198.51.100.1"); code != http.StatusMultiStatus {
			t.Fatalf("alice's first sign-in: %d", code)
		}
		// A new address each time: only alice's own limiter can trip.
		burst := burstUntilLimited(t, "wrong passwords for alice", func(i int) int {
			return login(e, "/dav/", "alice", fmt.Sprintf("wrong%d", i), fmt.Sprintf("203.0.113.%d", i+1))
		})
		for _, p := range []string{"/dav/", "/"} {
			if code := login(e, p, "alice", testPassword, "192.0.2.7"); code != http.StatusTooManyRequests {
				t.Errorf("alice's right password from a new address at %s during the lockout: %d, want 429", p, code)
			}
			// Her client, at the address that proved the password, goes on.
			if code := login(e, p, "alice", testPassword, "198.51.100.1"); code != http.StatusMultiStatus && code != http.StatusOK {
				t.Errorf("alice's client at its own address at %s during the lockout: %d, want it served", p, code)
			}
		}
		if code := login(e, "/dav/", "bob", testPassword, "192.0.2.7"); code != http.StatusMultiStatus {
			t.Errorf("bob from the same address during alice's lockout: %d, want 207", code)
		}
		clock.advance(failureEvery / 2)
		if code := login(e, "/dav/", "alice", testPassword, "192.0.2.7"); code != http.StatusTooManyRequests {
			t.Errorf("alice after half the window: %d, want 429", code)
		}
		clock.advance(failureEvery / 2)
		if code := login(e, "/dav/", "alice", testPassword, "192.0.2.7"); code != http.StatusMultiStatus {
			t.Errorf("alice after the window: %d, want 207", code)
		}
		after := []int{login(e, "/dav/", "alice", "wrong-again", "192.0.2.8"), login(e, "/dav/", "alice", "wrong-again2", "192.0.2.9")}
		if after[0] != http.StatusUnauthorized || after[1] != http.StatusTooManyRequests {
			t.Errorf("two wrong passwords after the window: %v, want [401 429] (one attempt per %v)", after, failureEvery)
		}
		t.Logf("MATRIX auth: per user: burst of %d wrong passwords (401), then 429 even for the right password from any address that has not proved it, "+
			"at /dav/ and /, while alice's signed-in client and bob are served; after %v one more attempt", burst, failureEvery)
	})

	t.Run("per-user, guessing beside a signed-in client", func(t *testing.T) {
		// Someone behind the same address as alice's client (a NAT)
		// guesses during her lockout: every guess is a 429, and the
		// guesses lock the address, so that even the right password is
		// then a 429 there: right is never told from wrong.
		e := newEnv(t, trusted)
		clock := useFakeClock(e)
		const shared = "198.51.100.9"
		if code := login(e, "/dav/", "alice", testPassword, shared); code != http.StatusMultiStatus {
			t.Fatalf("alice's first sign-in: %d", code)
		}
		for i := range failureBurst {
			login(e, "/dav/", "alice", fmt.Sprintf("flood%d", i), fmt.Sprintf("203.0.113.%d", i+1))
		}
		guesses := 0
		for i := range 100 {
			if login(e, "/dav/", "alice", fmt.Sprintf("guess%d", i), shared) != http.StatusTooManyRequests {
				t.Fatalf("guess %d from the shared address during the lockout: not 429", i)
			}
			guesses++
			if login(e, "/dav/", "alice", testPassword, shared) == http.StatusTooManyRequests {
				break
			}
		}
		if guesses == 100 {
			t.Fatal("100 guesses from the shared address during the lockout and the remembered password still served there")
		}
		clock.advance(2 * failureBurst * failureEvery)
		if code := login(e, "/dav/", "alice", testPassword, shared); code != http.StatusMultiStatus {
			t.Errorf("alice after the windows: %d, want 207", code)
		}
		t.Logf("MATRIX auth: guessing beside a signed-in client during a lockout: %d guesses (all 429) locked the shared address, then the right password is 429 there too", guesses)
	})

	t.Run("per-address", func(t *testing.T) {
		e := newEnv(t, trusted)
		clock := useFakeClock(e)
		if code := login(e, "/dav/", "bob", testPassword, "192.0.2.50"); code != http.StatusMultiStatus {
			t.Fatalf("bob's first sign-in: %d", code)
		}
		burst := burstUntilLimited(t, "failed sign-ins from one address", func(i int) int {
			return login(e, "/dav/", fmt.Sprintf("guess%d", i), "wrong", "192.0.2.50")
		})
		if code := login(e, "/dav/", "bob", testPassword, "192.0.2.50"); code != http.StatusTooManyRequests {
			t.Errorf("bob's right password (remembered from before) from the locked address: %d, want 429", code)
		}
		if code := login(e, "/dav/", "bob", testPassword, "192.0.2.51"); code != http.StatusMultiStatus {
			t.Errorf("bob from another address: %d, want 207", code)
		}
		clock.advance(failureEvery)
		if code := login(e, "/dav/", "bob", testPassword, "192.0.2.50"); code != http.StatusMultiStatus {
			t.Errorf("bob from the address after the window: %d, want 207", code)
		}
		t.Logf("MATRIX auth: per address: burst of %d failed sign-ins (distinct unknown users), then 429 for every user from that address until %v passed; other addresses unaffected", burst, failureEvery)
	})

	t.Run("keep-alive", func(t *testing.T) {
		e, _ := bobEnv(t)
		rc := dialRaw(t, e)
		mine := "/dav/calendars/alice/personal/mine.ics"
		steps := []struct {
			name, method, path, auth string
			want                     int
			mustHave, mustLack       string
		}{
			{"alice signed in", "GET", mine, basic("alice"), http.StatusOK, "Alice's own", bobSummary},
			{"no credentials", "GET", mine, "", http.StatusUnauthorized, "", "Alice's own"},
			{"no credentials, PROPFIND", "PROPFIND", "/dav/calendars/alice/personal/", "", http.StatusUnauthorized, "", "mine.ics"},
			{"bob on alice's object", "GET", mine, basic("bob"), http.StatusNotFound, "", "Alice's own"},
			{"bob on his own", "GET", bobObject, basic("bob"), http.StatusOK, bobSummary, "Alice's own"},
			{"wrong password after bob", "GET", bobObject, "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:wrong")), http.StatusUnauthorized, "", bobSummary},
			{"no credentials after bob", "GET", bobObject, "", http.StatusUnauthorized, "", bobSummary},
			{"alice again", "PROPFIND", "/dav/calendars/alice/personal/", basic("alice"), http.StatusMultiStatus, "mine.ics", "secret.ics"},
		}
		for _, s := range steps {
			resp, b := rc.send(s.method, s.path, s.auth, "", "Depth", "1")
			if resp.StatusCode != s.want || (s.mustHave != "" && !strings.Contains(b, s.mustHave)) || strings.Contains(b, s.mustLack) {
				t.Errorf("%s: %s %s on the shared connection: %d, want %d\n%s", s.name, s.method, s.path, resp.StatusCode, s.want, b)
			}
			if resp.Close {
				t.Fatalf("%s: the server closed the connection; the rest would not test keep-alive", s.name)
			}
		}
		// Pipelined: the requests are written at once, then answered in order.
		var all strings.Builder
		for _, auth := range []string{basic("alice"), "", basic("bob"), ""} {
			fmt.Fprintf(&all, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", mine)
			if auth != "" {
				fmt.Fprintf(&all, "Authorization: %s\r\n", auth)
			}
			all.WriteString("\r\n")
		}
		rc.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(rc.c, all.String()); err != nil {
			t.Fatal(err)
		}
		var got []int
		for range 4 {
			resp, b := rc.read("GET", mine)
			got = append(got, resp.StatusCode)
			if resp.StatusCode != http.StatusOK && strings.Contains(b, "Alice's own") {
				t.Errorf("pipelined %d carries alice's data", resp.StatusCode)
			}
		}
		if !slices.Equal(got, []int{200, 401, 404, 401}) {
			t.Errorf("pipelined alice, none, bob, none: %v, want [200 401 404 401]", got)
		}
		t.Logf("MATRIX auth: one keep-alive connection, %d requests switching between alice, none, bob and a wrong password, then 4 pipelined: each authenticated on its own", len(steps))
	})

	t.Run("malformed-authorization", func(t *testing.T) {
		e := newEnv(t)
		b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
		cases := []string{
			"Basic", "Basic ", "Basic  " + b64("alice:"+testPassword), "Basic !!!not-base64!!!", "Basic " + b64("alice"+testPassword),
			"Basic " + b64(":"+testPassword), "Basic " + b64("alice:"), "Basic " + b64(":"), "Basic " + b64("alice:" + testPassword)[:10],
			"Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:"+testPassword+"x")), "Basic " + base64.URLEncoding.EncodeToString([]byte("alice:\xff\xfe"+testPassword)),
			"Basic " + b64("alice\x00:"+testPassword), "Basic " + b64("alice :"+testPassword), "Basic " + b64("ALICE:"+testPassword),
			"Basic " + b64("\xff\xfe:\xfd"), "Bearer " + testPassword, "Bearer " + b64("alice:"+testPassword), "Digest username=\"alice\", response=\"x\"",
			"Negotiate YIIB", b64("alice:" + testPassword), "alice:" + testPassword, "Basic " + strings.Repeat("A", 60000),
			"Basic " + b64(strings.Repeat("a", 40000)+":"+testPassword), "Basic " + b64("alice:"+strings.Repeat("p", 40000)),
			"Basic " + b64("alice:"+testPassword) + " trailing", "Basic\t" + b64("alice:"+testPassword),
		}
		statuses := map[int]int{}
		rc := dialRaw(t, e)
		for i, auth := range cases {
			resp, b := rc.send("PROPFIND", "/dav/calendars/alice/", auth, "", "Depth", "1")
			statuses[resp.StatusCode]++
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("case %d (%.60q): %d, want 401\n%.300s", i, auth, resp.StatusCode, b)
			}
			if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("case %d: 401 without a Basic challenge", i)
			}
			if resp.Close {
				rc = dialRaw(t, e)
			}
		}
		// Two Authorization headers, and one too large for the server.
		resp, _ := rc.send("PROPFIND", "/dav/calendars/alice/", "Basic "+b64("bob:wrong"), "", "Depth", "0", "Authorization", basic("alice"))
		statuses[resp.StatusCode]++
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("two Authorization headers (wrong first): %d", resp.StatusCode)
		}
		resp, _ = dialRaw(t, e).send("PROPFIND", "/dav/calendars/alice/", "Basic "+strings.Repeat("A", 2<<20), "", "Depth", "0")
		statuses[resp.StatusCode]++
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("2 MiB Authorization header: %d, want 431", resp.StatusCode)
		}
		t.Logf("MATRIX auth: %d malformed Authorization headers (no colon, bad base64, empty user or password, Bearer, Digest, 60 KB, 2 MiB, two headers): statuses %v, no 2xx, no 5xx", len(cases)+2, statuses)
	})
}

// feedTokenCases are 1,000 tokens that must not open a feed: random
// lengths over several alphabets, and near misses of the real tokens
// (prefixes, suffixes, case changes, one character changed, padding,
// double encoding, another feed's token joined on).
func feedTokenCases(rng *rand.Rand, real []string) []string {
	alphabets := []string{"0123456789abcdef", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
		" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "\x00\x01\x09\x0a\x0d\x1b\x7f", "éß日本語🙂\u202e\u200b\ufeff"}
	var out []string
	for len(out) < 1000 {
		tok := real[rng.IntN(len(real))]
		var c string
		switch rng.IntN(10) {
		case 0, 1, 2:
			a := []rune(alphabets[rng.IntN(len(alphabets))])
			r := make([]rune, rng.IntN(200))
			for i := range r {
				r[i] = a[rng.IntN(len(a))]
			}
			c = string(r)
		case 3:
			c = tok[:rng.IntN(len(tok))]
		case 4:
			c = tok[1+rng.IntN(len(tok)-1):]
		case 5:
			c = strings.ToUpper(tok[:1+rng.IntN(len(tok))]) + tok[len(tok)/2:]
			if strings.HasPrefix(c, tok) {
				c = strings.ToUpper(tok)
			}
		case 6:
			i := rng.IntN(len(tok))
			c = tok[:i] + string("0123456789abcdefg"[(strings.IndexByte("0123456789abcdef", tok[i])+1+rng.IntN(15))%16]) + tok[i+1:]
		case 7:
			c = []string{" ", "\t", "\x00", "%", "/", ".ics", "=", "\n"}[rng.IntN(8)]
			if rng.IntN(2) == 0 {
				c = tok + c
			} else {
				c += tok
			}
		case 8:
			var b strings.Builder
			for i := 0; i < len(tok); i++ {
				fmt.Fprintf(&b, "%%25%02X", tok[i]) // double encoded: the token spelled "%XX"
			}
			c = b.String()
		case 9:
			c = tok + real[rng.IntN(len(real))]
		}
		if !slices.Contains(real, c) {
			out = append(out, c)
		}
	}
	return out
}

// TestMatrixFeedTokens: with 5 feeds of 5 distinct tokens, only a feed's
// own token opens it; every other token (another feed's, 1,000 random and
// near-miss ones) gets the very answer of a feed that does not exist, in
// both places a token goes, for every method; and no token reaches the
// log at debug level, wherever the request put it, also when the request
// fails.
func TestMatrixFeedTokens(t *testing.T) {
	e, tokens, logs := feedEnv(t, 5, 1)
	var real []string
	for _, ts := range tokens {
		real = append(real, ts[0])
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(method, path string) answer {
		t.Helper()
		req, err := http.NewRequest(method, e.srv.URL+path, nil)
		if err != nil {
			t.Fatalf("%q: %v", path, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return answerOf(t, resp)
	}
	forms := func(tok, name string) []string {
		return []string{"/feeds/" + name + ".ics?token=" + url.QueryEscape(tok), "/feeds/" + url.PathEscape(tok) + "/" + name + ".ics"}
	}
	nf := map[string]answer{}
	for _, m := range []string{"GET", "HEAD"} {
		nf[m] = get(m, "/feeds/nosuch.ics")
		if nf[m].status != http.StatusNotFound {
			t.Fatalf("%s of a feed that does not exist: %d", m, nf[m].status)
		}
	}
	sameAsMissing := func(what string, got answer, method string) {
		t.Helper()
		want := nf[method]
		if got.status != want.status || got.body != want.body || !reflect.DeepEqual(got.hdr, want.hdr) {
			t.Errorf("%s: %d %v\n%s\nwant the answer of a missing feed: %d %v\n%s", what, got.status, got.hdr, got.body, want.status, want.hdr, want.body)
		}
	}
	pairs, opened := 0, 0
	for f := range 5 {
		for g := range 5 {
			for _, p := range forms(real[g], fmt.Sprintf("feed%d", f)) {
				for _, m := range []string{"GET", "HEAD"} {
					got := get(m, p)
					pairs++
					if f == g {
						opened++
						if got.status != http.StatusOK || (m == "GET" && !strings.Contains(got.body, "Alpha")) {
							t.Errorf("%s feed%d with its own token: %d", m, f, got.status)
						}
						continue
					}
					sameAsMissing(fmt.Sprintf("%s feed%d with feed%d's token", m, f, g), got, m)
				}
			}
		}
	}
	// Another method with a wrong token is the same 404: only the right
	// token learns that the feed exists (405).
	for _, m := range []string{"POST", "PUT", "DELETE", "PROPFIND", "OPTIONS"} {
		got := get(m, forms(real[1], "feed0")[1])
		if got.status != http.StatusNotFound || got.body != nf["GET"].body {
			t.Errorf("%s feed0 with feed1's token: %d\n%s", m, got.status, got.body)
		}
	}
	seed := uint64(time.Now().UnixNano())
	cases := feedTokenCases(rand.New(rand.NewPCG(seed, 8)), real)
	for i, tok := range cases {
		p := forms(tok, fmt.Sprintf("feed%d", i%5))[i%2]
		sameAsMissing(fmt.Sprintf("token case %d %q (seed %d) in %s", i, tok, seed, p), get("GET", p), "GET")
		if t.Failed() {
			t.FailNow()
		}
	}
	// Spellings of a real token that the URL standard makes the same
	// string (percent-encoding an unreserved character, RFC 3986 §2.3)
	// are the token; they open the feed and are not near misses.
	var enc strings.Builder
	for i := 0; i < len(real[0]); i++ {
		fmt.Fprintf(&enc, "%%%02X", real[0][i])
	}
	var equiv []int
	for _, p := range []string{"/feeds/feed0.ics?token=" + enc.String(), "/feeds/" + enc.String() + "/feed0.ics", "/feeds/feed0.ics?token=x&token=" + real[0]} {
		equiv = append(equiv, get("GET", p).status)
	}
	if !slices.Equal(equiv, []int{200, 200, 404}) {
		t.Errorf("the token percent-encoded in the query, in the path, and as a second token= after a wrong one: %v, want [200 200 404]", equiv)
	}
	// Tokens where none belongs: never logged, and not a way in.
	odd := 0
	for _, tok := range real {
		for _, p := range []string{"/feeds/" + tok, "/feeds/" + tok + "/", "/feeds/feed0.ics/" + tok, "/feeds/" + tok + ".ics", "/feeds/x/" + tok + "/feed0.ics",
			"/feeds/feed0.ics;token=" + tok, "/feeds/feed0.ics?tok=" + tok, "/feeds/" + tok + "/nosuch.ics", "/feeds/" + tok + "/feed0.ICS",
			"/dav/calendars/alice/?token=" + tok, "/feeds/%2F" + tok + "/feed0.ics", "/feed/" + tok + "/feed0.ics", "/Feeds/" + tok + "/feed0.ics",
			"/" + tok, "/dav/calendars/alice/" + tok + "/", "/dav/" + tok + ".ics", "/status/" + tok} {
			if got := get("GET", p); got.status == http.StatusOK {
				t.Errorf("%s opened a feed", strings.ReplaceAll(p, tok, "TOKEN"))
			}
			odd++
		}
	}
	// A request that fails inside (the store is gone) logs an error.
	e.store.Close()
	if got := get("GET", forms(real[2], "feed2")[1]); got.status != http.StatusInternalServerError {
		t.Errorf("feed request over a closed store: %d, want 500", got.status)
	}
	out := logs.String()
	if !strings.Contains(out, "/feeds/") || !strings.Contains(out, "request failed") {
		t.Fatalf("the feed requests or the failure were not logged; the check below would prove nothing:\n%.2000s", out)
	}
	leaked := 0
	for _, tok := range append(slices.Clone(real), cases...) {
		if len(tok) >= 16 && strings.Contains(out, tok) {
			leaked++
			t.Errorf("the log contains the token %q", tok)
		}
	}
	t.Logf("MATRIX feed tokens: 5 feeds x 5 tokens x 2 places x GET/HEAD: %d requests, %d opened (the matching pairs), the rest the answer of a missing feed; "+
		"%d random and near-miss tokens (seed %d) all the same 404; the real token fully percent-encoded (query, path) and as a second token=: %v; "+
		"%d requests with tokens in odd places, none opened; %d log bytes at debug level (and a failed request), %d tokens in them",
		pairs, opened, len(cases), seed, equiv, odd, len(out), leaked)
}
