package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// pathSeeds are request paths and hrefs as clients write them, and the
// spellings that try to leave a user's subtree.
var pathSeeds = []string{
	"/", "/dav", "/dav/", "/dav/principals/", "/dav/principals/alice/", "/dav/calendars/",
	"/dav/calendars/alice/", "/dav/calendars/alice/personal/", "/dav/calendars/alice/personal",
	"/dav/calendars/alice/personal/event.ics", "/dav/calendars/alice/personal/event.ics/",
	"/dav/calendars/alice/personal/a%20b%3Bc%3F.ics", "/dav/calendars/alice/personal/%25.ics",
	"http://127.0.0.1:8080/dav/calendars/alice/personal/x.ics", "https://cal.example.org/dav/calendars/alice/",
	" /dav/calendars/alice/personal/x.ics\n", "/dav/calendars/alice/personal/x.ics?a=b#frag",
	"/dav/calendars/alice/personal/../../bob/personal/", "/dav/calendars/alice/../bob/personal/x.ics",
	"/dav/calendars/alice/%2e%2e/bob/personal/", "/dav/calendars/alice/%2E%2E/bob/personal/",
	"/dav/calendars/alice/.%2e/bob/", "/dav/calendars/alice/personal/%2e%2e%2fx.ics",
	"/dav/calendars/alice%2fbob/personal/", "/dav/calendars/alice%2Fpersonal/x.ics",
	"/dav/calendars/alice/personal/..%5cbob", "/dav/calendars/alice\\..\\bob/personal/",
	"/dav/calendars/alice/./personal/", "/dav/calendars//bob/personal/", "//dav/calendars/bob/",
	"/dav/calendars/alice/..", "/dav/calendars/alice/../", "/dav/calendars/alice/personal/..", "/dav/calendars/..",
	"/dav/principals/../", "/dav/calendars/alice/%2e%2e", "/dav/calendars/alice/personal/%2E", "/dav/calendars/alice/.",
	"///dav/calendars/alice/personal/", "/dav/calendars/alice/personal//x.ics",
	"/dav/calendars/alice/personal/x%00.ics", "/dav/calendars/alice/personal/x\x00.ics",
	"/dav/calendars/%c0%ae%c0%ae/bob/", "/dav/calendars/alice/%c0%af../bob/", "/dav/calendars/alice/\xc0\xae\xc0\xae/",
	"/dav/calendars/alice/\uff0e\uff0e/bob/", "/dav/calendars/ålice/persönlich/日本.ics",
	"/dav/calendars/alice/personal/%E2%80%AE.ics", "/DAV/calendars/alice/", "/dav/Calendars/alice/",
	"/dav/calendars/alice/personal/x.ics;jsessionid=1", "/dav/calendars/alice;x/personal/",
	"mailto:alice@example.org", "http://[::1]:8080/dav/calendars/alice/personal/x.ics", "%",
	"/dav/calendars/" + strings.Repeat("a", 255) + "/", "/dav/calendars/" + strings.Repeat("a", 256) + "/",
}

// userSegment is the user a path names by its user segment (decoded), found
// without parsePath: the segment after /dav/principals/ or
// /dav/calendars/ in the escaped path.
func userSegment(escaped string) (string, bool) {
	for _, p := range []string{principalsPath, calendarsPath} {
		if rest, ok := strings.CutPrefix(escaped, p); ok {
			seg, _, _ := strings.Cut(rest, "/")
			u, err := url.PathUnescape(seg)
			return u, err == nil
		}
	}
	return "", false
}

// hrefOf renders t with the gateway's href helpers.
func hrefOf(t target) string {
	switch t.kind {
	case kindRoot:
		return davPrefix
	case kindPrincipals:
		return principalsPath
	case kindPrincipal:
		return principalHref(t.user)
	case kindHomes:
		return calendarsPath
	case kindHome:
		return homeHref(t.user)
	case kindCalendar:
		return calendarHref(t.user, t.cal)
	case kindObject:
		return objectHref(t.user, t.cal, t.name)
	}
	return ""
}

func sameTarget(a, b target) bool {
	return a.kind == b.kind && a.user == b.user && a.cal == b.cal && a.name == b.name
}

// checkParsedTarget asserts the properties of a target that escaped, the
// escaped path it was parsed from, resolved to.
func checkParsedTarget(t *testing.T, escaped string, tg target) {
	t.Helper()
	// No segment of an accepted path is a dot segment or hides a slash,
	// however it is encoded, so nothing a client or proxy normalises
	// later can lead elsewhere.
	for _, seg := range strings.Split(escaped, "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			t.Fatalf("%q accepted with a malformed escape in segment %q", escaped, seg)
		}
		if dec == "." || dec == ".." || strings.ContainsAny(dec, "/\\\x00") {
			t.Fatalf("%q accepted with segment %q (%q)", escaped, seg, dec)
		}
	}
	for _, s := range []string{tg.user, tg.cal, tg.name} {
		if strings.ContainsAny(s, "/\\\x00") || s == "." || s == ".." || len(s) > maxSegmentBytes {
			t.Fatalf("%q parsed to %+v: segment %q", escaped, tg, s)
		}
	}
	switch tg.kind {
	case kindPrincipal, kindHome, kindCalendar, kindObject:
		u, ok := userSegment(escaped)
		if !ok || u != tg.user || u == "" {
			t.Fatalf("%q parsed to user %q, but its user segment is %q", escaped, tg.user, u)
		}
	case kindRoot, kindPrincipals, kindHomes:
		if tg.user != "" || tg.cal != "" || tg.name != "" {
			t.Fatalf("%q parsed to %+v, a collection of no user with names", escaped, tg)
		}
	default:
		t.Fatalf("%q parsed to kind %d", escaped, tg.kind)
	}
	if tg.kind >= kindCalendar && tg.cal == "" || tg.kind == kindObject && tg.name == "" {
		t.Fatalf("%q parsed to %+v with an empty segment", escaped, tg)
	}

	// Rendered again, the target parses back to itself, both as an href
	// and as a request path, and the rendering is canonical.
	href := hrefOf(tg)
	back, ok := hrefTarget(href)
	if !ok || !sameTarget(back, tg) {
		t.Fatalf("%q parsed to %+v; its href %q parses to %+v, %v", escaped, tg, href, back, ok)
	}
	r, err := http.NewRequest("PROPFIND", "http://127.0.0.1"+href, nil)
	if err != nil {
		t.Fatalf("href %q of %+v is not a request URL: %v", href, tg, err)
	}
	if back, ok := requestTarget(r); !ok || !sameTarget(back, tg) {
		t.Fatalf("%q parsed to %+v; request path %q parses to %+v, %v", escaped, tg, href, back, ok)
	}
	if again := hrefOf(back); again != href {
		t.Fatalf("href of %+v is %q, then %q", tg, href, again)
	}
}

// FuzzPaths feeds arbitrary strings to the three ways a path reaches the
// gateway: a request line (requestTarget), an href in a request body
// (hrefTarget) and a decoded path (parsePath).
func FuzzPaths(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if tg, ok := parsePath(s); ok {
			checkParsedTarget(t, (&url.URL{Path: s}).EscapedPath(), tg)
		}
		if tg, ok := hrefTarget(s); ok {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil {
				t.Fatalf("hrefTarget accepted %q, which does not parse: %v", s, err)
			}
			checkParsedTarget(t, u.EscapedPath(), tg)
		}
		if strings.HasPrefix(s, "/") {
			r, err := http.NewRequest("GET", "http://127.0.0.1"+s, nil)
			if err != nil {
				return
			}
			if tg, ok := requestTarget(r); ok {
				checkParsedTarget(t, r.URL.EscapedPath(), tg)
			}
		}
	})
}

// TestPathSeeds runs the checks of FuzzPaths over its seeds and pins
// the answers for the spellings that must be refused.
func TestPathSeeds(t *testing.T) {
	for _, s := range []string{
		"/dav/calendars/alice/personal/../../bob/personal/", "/dav/calendars/alice/%2e%2e/bob/personal/",
		"/dav/calendars/alice/.%2e/bob/", "/dav/calendars/alice%2fbob/personal/", "/dav/calendars/alice/personal/..%5cbob",
		"/dav/calendars/alice/./personal/", "/dav/calendars//bob/personal/", "/dav/calendars/alice/personal/x%00.ics",
		"/dav/calendars/alice/..", "/dav/calendars/alice/personal/..", "/dav/calendars/..", "/dav/calendars/alice/%2e%2e",
		"/dav/calendars/" + strings.Repeat("a", 256) + "/", "/dav/calendars/alice/personal/x.ics/",
	} {
		if tg, ok := hrefTarget(s); ok {
			t.Errorf("hrefTarget(%q) = %+v, want refused", s, tg)
		}
		r, err := http.NewRequest("GET", "http://127.0.0.1"+s, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tg, ok := requestTarget(r); ok {
			t.Errorf("requestTarget(%q) = %+v, want refused", s, tg)
		}
	}
}
