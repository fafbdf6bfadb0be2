package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// client sends requests to one CalDAV server with HTTP Basic credentials.
// It only ever contacts URLs built from the calendar home it was given (or
// discovered on the server it was given), and the feed URL.
type client struct {
	http     *http.Client
	user     string
	password string
}

// maxBody bounds every response body read by the tool.
const maxBody = 512 << 20

// do sends one request and returns the status, headers and full body, and
// how long it took from sending to the last byte of the body.
func (c *client) do(ctx context.Context, method, u string, hdr map[string]string, body []byte) (int, http.Header, []byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("%s %s: %w", method, redactURL(u), unwrapURLError(err))
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("%s %s: %w", method, redactURL(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	var data []byte
	if n := resp.ContentLength; n > 0 && n <= maxBody {
		// One allocation of the announced size, not io.ReadAll's doubling:
		// the tool shares the machine with the server it measures.
		data = make([]byte, n)
		_, err = io.ReadFull(resp.Body, data)
	} else {
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	}
	d := time.Since(start)
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("%s %s: read body: %w", method, redactURL(u), unwrapURLError(err))
	}
	return resp.StatusCode, resp.Header, data, d, nil
}

// unwrapURLError drops the *url.Error around err: it names the full URL,
// which may hold a feed token.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactURL returns u without secrets, for messages and reports: query
// values and the token segment of a feed path (/feeds/TOKEN/NAME.ics)
// become REDACTED, and user information is dropped.
func redactURL(u string) string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User = nil
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		p.RawQuery = q.Encode()
	}
	if rest, ok := strings.CutPrefix(p.Path, "/feeds/"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p.Path, p.RawPath = "/feeds/REDACTED/"+rest[i+1:], ""
		}
	}
	return p.String()
}

// maxRedirects bounds the redirects discovery follows.
const maxRedirects = 5

// discover finds the calendar home of the signed-in user from a server
// URL, as a client does: PROPFIND of /.well-known/caldav (RFC 6764
// section 6) for DAV:current-user-principal (RFC 5397), following
// redirects, falling back to the URL itself; then PROPFIND of the
// principal for CALDAV:calendar-home-set (RFC 4791 section 6.2.1). Every
// URL on the way must be on the same scheme and host as base.
func (c *client) discover(ctx context.Context, base *url.URL) (*url.URL, error) {
	var principal *url.URL
	var errs []error
	for _, start := range []*url.URL{base.ResolveReference(&url.URL{Path: "/.well-known/caldav"}), base} {
		at, ms, err := c.propfindFollow(ctx, base, start, principalBody)
		if err == nil {
			principal, err = propHref(base, at, ms, func(p *prop) *hrefProp { return p.CurrentUserPrincipal }, "DAV:current-user-principal")
		}
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	if principal == nil {
		return nil, fmt.Errorf("bench: discovery from %s: %w", base, errors.Join(errs...))
	}
	at, ms, err := c.propfindFollow(ctx, base, principal, homeSetBody)
	if err != nil {
		return nil, fmt.Errorf("bench: discovery: principal %s: %w", principal, err)
	}
	home, err := propHref(base, at, ms, func(p *prop) *hrefProp { return p.CalendarHomeSet }, "CALDAV:calendar-home-set")
	if err != nil {
		return nil, fmt.Errorf("bench: discovery: principal %s: %w", principal, err)
	}
	return home, nil
}

// propfindFollow sends a PROPFIND Depth 0 to u, following redirects on
// base's scheme and host, and returns the URL that answered and its
// multistatus.
func (c *client) propfindFollow(ctx context.Context, base, u *url.URL, body string) (*url.URL, *multistatus, error) {
	hdr := map[string]string{"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}
	for range maxRedirects + 1 {
		status, h, data, _, err := c.do(ctx, "PROPFIND", u.String(), hdr, []byte(body))
		if err != nil {
			return nil, nil, err
		}
		switch status {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			loc, err := u.Parse(h.Get("Location"))
			if err != nil || h.Get("Location") == "" {
				return nil, nil, fmt.Errorf("PROPFIND %s: status %d with a bad Location %q", u, status, h.Get("Location"))
			}
			if loc.Scheme != base.Scheme || loc.Host != base.Host {
				return nil, nil, fmt.Errorf("PROPFIND %s: redirect to another server (%s); the tool only contacts %s", u, loc.Redacted(), base.Host)
			}
			u = loc
			continue
		}
		ms, err := parseMultistatus(status, data)
		if err != nil {
			return nil, nil, fmt.Errorf("PROPFIND %s: %w", u, err)
		}
		return u, ms, nil
	}
	return nil, nil, fmt.Errorf("PROPFIND %s: more than %d redirects", u, maxRedirects)
}

// propHref reads the href inside the property that pick selects from the
// 200 propstat of the first response, resolved against at; it must be on
// base's scheme and host.
func propHref(base, at *url.URL, ms *multistatus, pick func(*prop) *hrefProp, name string) (*url.URL, error) {
	for _, r := range ms.Responses {
		p, ok := r.ok200()
		if !ok {
			continue
		}
		hp := pick(&p)
		if hp == nil || len(hp.Hrefs) == 0 || strings.TrimSpace(hp.Hrefs[0]) == "" {
			continue
		}
		u, err := at.Parse(strings.TrimSpace(hp.Hrefs[0]))
		if err != nil {
			return nil, fmt.Errorf("%s: bad href %q: %w", name, hp.Hrefs[0], err)
		}
		if u.Scheme != base.Scheme || u.Host != base.Host {
			return nil, fmt.Errorf("%s %s is on another server; the tool only contacts %s", name, u.Redacted(), base.Host)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		return u, nil
	}
	return nil, fmt.Errorf("%s at %s: no 200 propstat with an href", name, at)
}

// multistatus is the DAV:multistatus body (RFC 4918 section 14.16), with
// the DAV:sync-token of RFC 6578 section 6.4.
type multistatus struct {
	XMLName   xml.Name   `xml:"DAV: multistatus"`
	Responses []response `xml:"DAV: response"`
	SyncToken string     `xml:"DAV: sync-token"`
}

// response is DAV:response (RFC 4918 section 14.24).
type response struct {
	Hrefs     []string   `xml:"DAV: href"`
	Status    string     `xml:"DAV: status"`
	Propstats []propstat `xml:"DAV: propstat"`
}

// propstat is DAV:propstat (RFC 4918 section 14.22).
type propstat struct {
	Status string `xml:"DAV: status"`
	Prop   prop   `xml:"DAV: prop"`
}

// prop holds the properties the tool asks for.
type prop struct {
	ETag         *string   `xml:"DAV: getetag"`
	SyncToken    *string   `xml:"DAV: sync-token"`
	CalendarData *string   `xml:"urn:ietf:params:xml:ns:caldav calendar-data"`
	ResourceType *struct{} `xml:"DAV: resourcetype"`

	CurrentUserPrincipal *hrefProp `xml:"DAV: current-user-principal"`
	CalendarHomeSet      *hrefProp `xml:"urn:ietf:params:xml:ns:caldav calendar-home-set"`
}

// hrefProp is a property whose value is DAV:href elements.
type hrefProp struct {
	Hrefs []string `xml:"DAV: href"`
}

// statusCode reads the code from an HTTP status line ("HTTP/1.1 200 OK").
func statusCode(line string) int {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// ok200 returns the properties of the 200 propstat of r, and whether there
// is one.
func (r *response) ok200() (prop, bool) {
	for _, ps := range r.Propstats {
		if statusCode(ps.Status) == http.StatusOK {
			return ps.Prop, true
		}
	}
	return prop{}, false
}

// parseMultistatus decodes a 207 answer.
func parseMultistatus(status int, data []byte) (*multistatus, error) {
	if status != http.StatusMultiStatus {
		return nil, fmt.Errorf("status %d, want 207: %.200s", status, data)
	}
	ms, err := decodeMultistatus(data)
	if err != nil {
		return nil, fmt.Errorf("decode multistatus: %w", err)
	}
	return ms, nil
}

// hrefPath normalises a DAV:href (a path or an absolute URL) to an
// unescaped path, for comparison with the paths the tool built.
func hrefPath(h string) string {
	u, err := url.Parse(strings.TrimSpace(h))
	if err != nil {
		return h
	}
	return u.Path
}

// xmlText escapes s for use in XML character data.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Request bodies.
const (
	propfindBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/><D:sync-token/></D:prop></D:propfind>`

	principalBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:current-user-principal/></D:prop></D:propfind>`

	homeSetBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-home-set/></D:prop></D:propfind>`

	mkcalendarBody = `<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>
<D:displayname>calgate-bench</D:displayname>
<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>
</D:prop></D:set></C:mkcalendar>`
)

// queryBody is a calendar-query (RFC 4791 section 7.8) for VEVENTs
// overlapping [start, end), with calendar-data, expanded if expand is set.
func queryBody(start, end time.Time, expand bool) []byte {
	const f = "20060102T150405Z"
	data := "<C:calendar-data/>"
	if expand {
		data = fmt.Sprintf(`<C:calendar-data><C:expand start="%s" end="%s"/></C:calendar-data>`, start.Format(f), end.Format(f))
	}
	return fmt.Appendf(nil, `<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
<D:prop><D:getetag/>%s</D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
<C:time-range start="%s" end="%s"/>
</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`, data, start.Format(f), end.Format(f))
}

// multigetBody is a calendar-multiget (RFC 4791 section 7.9) of paths.
func multigetBody(paths []string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
<D:prop><D:getetag/><C:calendar-data/></D:prop>`)
	for _, p := range paths {
		b.WriteString("<D:href>" + xmlText(p) + "</D:href>")
	}
	b.WriteString("</C:calendar-multiget>")
	return b.Bytes()
}

// syncBody is a sync-collection REPORT (RFC 6578 section 3.2).
func syncBody(token string) []byte {
	return fmt.Appendf(nil, `<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:"><D:sync-token>%s</D:sync-token><D:sync-level>1</D:sync-level>
<D:prop><D:getetag/></D:prop></D:sync-collection>`, xmlText(token))
}
