package gateway

import (
	"net/http"
	"net/url"
	"strings"
)

// URL layout (DESIGN.md §2).
const (
	davPrefix       = "/dav/"
	principalsPath  = "/dav/principals/"
	calendarsPath   = "/dav/calendars/"
	maxSegmentBytes = 255
)

// kind is the type of resource a path names.
type kind int

const (
	kindNone       kind = iota // outside the DAV tree or malformed
	kindRoot                   // /dav/
	kindPrincipals             // /dav/principals/
	kindPrincipal              // /dav/principals/{user}/
	kindHomes                  // /dav/calendars/
	kindHome                   // /dav/calendars/{user}/
	kindCalendar               // /dav/calendars/{user}/{cal}/
	kindObject                 // /dav/calendars/{user}/{cal}/{name}
)

// target is a parsed request path.
type target struct {
	path string // the decoded request path
	kind kind
	user string
	cal  string
	name string
}

// parsePath splits a decoded URL path. It refuses dot segments, empty
// segments, NUL and backslashes, so that no spelling reaches another
// resource than the one it names.
func parsePath(p string) (target, bool) {
	if !strings.HasPrefix(p, davPrefix) {
		// The bare server URL answers DAV requests as the root does, so
		// that clients given only "http://host:port/" find the principal.
		if p == "/dav" || p == "/" {
			return target{kind: kindRoot, path: p}, true
		}
		return target{}, false
	}
	rest := strings.TrimPrefix(p, davPrefix)
	trailing := strings.HasSuffix(rest, "/")
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return target{kind: kindRoot}, true
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		if !validSegment(s) {
			return target{}, false
		}
	}
	switch segs[0] {
	case "principals":
		switch len(segs) {
		case 1:
			return target{kind: kindPrincipals}, true
		case 2:
			return target{kind: kindPrincipal, user: segs[1]}, true
		}
	case "calendars":
		switch len(segs) {
		case 1:
			return target{kind: kindHomes}, true
		case 2:
			return target{kind: kindHome, user: segs[1]}, true
		case 3:
			return target{kind: kindCalendar, user: segs[1], cal: segs[2]}, true
		case 4:
			if trailing {
				return target{}, false // objects are not collections
			}
			return target{kind: kindObject, user: segs[1], cal: segs[2], name: segs[3]}, true
		}
	}
	return target{}, false
}

func validSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > maxSegmentBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// requestTarget parses the request's path, also refusing encoded
// slashes and dot segments that only appear in the raw path.
func requestTarget(r *http.Request) (target, bool) {
	raw := r.URL.EscapedPath()
	low := strings.ToLower(raw)
	if strings.Contains(low, "%2f") || strings.Contains(low, "%5c") || strings.Contains(low, "%00") {
		return target{}, false
	}
	return parsePath(r.URL.Path)
}

// hrefTarget resolves an href from a request body (absolute URL or path).
func hrefTarget(href string) (target, bool) {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil {
		return target{}, false
	}
	low := strings.ToLower(u.EscapedPath())
	if strings.Contains(low, "%2f") || strings.Contains(low, "%5c") {
		return target{}, false
	}
	return parsePath(u.Path)
}

func esc(seg string) string { return url.PathEscape(seg) }

func principalHref(user string) string { return principalsPath + esc(user) + "/" }
func homeHref(user string) string      { return calendarsPath + esc(user) + "/" }
func calendarHref(user, cal string) string {
	return calendarsPath + esc(user) + "/" + esc(cal) + "/"
}
func objectHref(user, cal, name string) string {
	return calendarsPath + esc(user) + "/" + esc(cal) + "/" + esc(name)
}

// allowFor lists the methods a resource of this kind supports.
func allowFor(t target) string {
	switch t.kind {
	case kindRoot, kindPrincipals, kindPrincipal, kindHomes, kindHome:
		return "OPTIONS, PROPFIND, REPORT"
	case kindCalendar:
		return "OPTIONS, GET, HEAD, DELETE, PROPFIND, PROPPATCH, REPORT"
	case kindObject:
		return "OPTIONS, GET, HEAD, PUT, DELETE, MOVE, COPY, PROPFIND, PROPPATCH, REPORT"
	}
	return "OPTIONS"
}
