package gateway

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/calgate/calgate/cache"
)

// resource is one resource a PROPFIND or REPORT answers for.
type resource struct {
	href string
	kind kind
	user string
	cal  *cache.Calendar
	obj  *cache.Object // Data filled only when calendar-data was asked for
	// mv is set for a merged calendar and its objects; member is then the
	// member calendar that stores obj.
	mv     *mergedView
	member *cache.Calendar
}

// propDef is a live property: which resources have it, whether allprop
// returns it, and how to render its value (inner XML, escaped).
type propDef struct {
	on      func(res *resource) bool
	allprop bool
	value   func(h *Handler, res *resource) (string, bool)
}

func onKinds(kinds ...kind) func(*resource) bool {
	return func(res *resource) bool {
		for _, k := range kinds {
			if res.kind == k {
				return true
			}
		}
		return false
	}
}

var (
	onAll   = func(*resource) bool { return true }
	onOwned = onKinds(kindHome, kindCalendar, kindObject)
	onCal   = onKinds(kindCalendar)
	onObj   = onKinds(kindObject)
)

func href(s string) string { return "<d:href>" + escape(s) + "</d:href>" }

// syncToken and ctag are derived from the calendar's epoch (new when a
// calendar is re-created) and its revision (bumped by every write).
func syncToken(c *cache.Calendar) string {
	return fmt.Sprintf("%s%s-%d", syncTokenPrefix, c.Epoch, c.Revision)
}
func ctag(c *cache.Calendar) string { return fmt.Sprintf("%s-%d", c.Epoch, c.Revision) }

const syncTokenPrefix = "urn:calgate:sync:"

func contentType(o *cache.Object) string {
	return "text/calendar; charset=utf-8; component=" + strings.ToLower(o.Component)
}

func httpDate(res *resource) (string, bool) {
	switch {
	case res.obj != nil:
		return res.obj.Modified.UTC().Format(http.TimeFormat), true
	case res.mv != nil:
		return res.mv.modified().UTC().Format(http.TimeFormat), true
	case res.cal != nil:
		return res.cal.Modified.UTC().Format(http.TimeFormat), true
	}
	return "", false
}

var writePrivileges = []string{"<d:read/>", "<d:write/>", "<d:write-properties/>", "<d:write-content/>",
	"<d:bind/>", "<d:unbind/>", "<d:read-current-user-privilege-set/>", "<c:read-free-busy/>"}

// liveProps are the properties calgate computes (DESIGN.md §5).
var liveProps = map[xml.Name]propDef{
	dav("resourcetype"): {on: onAll, allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		switch res.kind {
		case kindPrincipal:
			return "<d:collection/><d:principal/>", true
		case kindCalendar:
			return "<d:collection/><c:calendar/>", true
		case kindObject:
			return "", true
		}
		return "<d:collection/>", true
	}},
	dav("displayname"): {on: onKinds(kindRoot, kindPrincipal, kindHome, kindCalendar), allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		switch res.kind {
		case kindRoot:
			return "calgate", true
		case kindCalendar:
			if res.cal.DisplayName == "" {
				return escape(res.cal.ID), true
			}
			return escape(res.cal.DisplayName), true
		}
		return escape(res.user), true
	}},
	dav("current-user-principal"): {on: onAll, value: func(h *Handler, res *resource) (string, bool) {
		return href(principalHref(res.user)), true
	}},
	dav("principal-URL"): {on: onKinds(kindPrincipal), value: func(h *Handler, res *resource) (string, bool) {
		return href(principalHref(res.user)), true
	}},
	dav("principal-collection-set"): {on: onAll, value: func(h *Handler, res *resource) (string, bool) {
		return href(principalsPath), true
	}},
	caldav("calendar-home-set"): {on: onKinds(kindRoot, kindPrincipal), value: func(h *Handler, res *resource) (string, bool) {
		return href(homeHref(res.user)), true
	}},
	caldav("calendar-user-address-set"): {on: onKinds(kindPrincipal), value: func(h *Handler, res *resource) (string, bool) {
		return href(principalHref(res.user)), true
	}},
	dav("owner"): {on: onOwned, value: func(h *Handler, res *resource) (string, bool) {
		return href(principalHref(res.user)), true
	}},
	dav("supported-report-set"): {on: onAll, value: func(h *Handler, res *resource) (string, bool) {
		var reports []string
		switch res.kind {
		case kindCalendar:
			reports = []string{"<c:calendar-query/>", "<c:calendar-multiget/>", "<c:free-busy-query/>", "<d:sync-collection/>"}
		case kindObject:
			reports = []string{"<c:calendar-query/>", "<c:calendar-multiget/>"}
		}
		var b strings.Builder
		for _, r := range reports {
			b.WriteString("<d:supported-report><d:report>" + r + "</d:report></d:supported-report>")
		}
		return b.String(), true
	}},
	dav("current-user-privilege-set"): {on: onAll, value: func(h *Handler, res *resource) (string, bool) {
		privs := []string{"<d:read/>", "<d:read-current-user-privilege-set/>"}
		switch {
		case res.mv != nil:
			privs = res.mv.privileges(res)
		case readOnly(res.cal):
			privs = readPrivileges
		case res.kind == kindHome || res.kind == kindCalendar || res.kind == kindObject:
			privs = writePrivileges
		}
		var b strings.Builder
		for _, p := range privs {
			b.WriteString("<d:privilege>" + p + "</d:privilege>")
		}
		return b.String(), true
	}},
	cs("getctag"): {on: onCal, allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		if res.mv != nil {
			return escape(res.mv.ctag()), true
		}
		return escape(ctag(res.cal)), true
	}},
	dav("sync-token"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		if res.mv != nil {
			return escape(res.mv.syncToken()), true
		}
		return escape(syncToken(res.cal)), true
	}},
	dav("getetag"): {on: onKinds(kindCalendar, kindObject), allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		if res.obj != nil {
			return escape(`"` + res.obj.ETag + `"`), true
		}
		if res.mv != nil {
			return escape(`"` + res.mv.ctag() + `"`), true
		}
		return escape(`"` + ctag(res.cal) + `"`), true
	}},
	dav("getcontenttype"): {on: onKinds(kindCalendar, kindObject), allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		if res.obj != nil {
			return escape(contentType(res.obj)), true
		}
		return "text/calendar; charset=utf-8", true
	}},
	dav("getcontentlength"): {on: onObj, allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		return fmt.Sprint(res.obj.Size), true
	}},
	dav("getlastmodified"): {on: onKinds(kindCalendar, kindObject), allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		return httpDate(res)
	}},
	caldav("calendar-description"): {on: onCal, allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		return escape(res.cal.Description), res.cal.Description != ""
	}},
	apple("calendar-color"): {on: onCal, allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		return escape(res.cal.Color), res.cal.Color != ""
	}},
	apple("calendar-order"): {on: onCal, allprop: true, value: func(h *Handler, res *resource) (string, bool) {
		return escape(res.cal.Order), res.cal.Order != ""
	}},
	caldav("calendar-timezone"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		return escape(res.cal.Timezone), res.cal.Timezone != ""
	}},
	caldav("supported-calendar-component-set"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		comps := res.cal.Components
		if res.mv != nil {
			comps = res.mv.components()
		}
		var b strings.Builder
		for _, c := range comps {
			b.WriteString(`<c:comp name="` + escape(c) + `"/>`)
		}
		return b.String(), true
	}},
	caldav("supported-calendar-data"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		return `<c:calendar-data content-type="text/calendar" version="2.0"/>`, true
	}},
	caldav("max-instances"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		return fmt.Sprint(h.maxInstances), true
	}},
	caldav("max-resource-size"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		return fmt.Sprint(h.maxSize), true
	}},
	dav("quota-used-bytes"): {on: onCal, value: func(h *Handler, res *resource) (string, bool) {
		if res.mv != nil {
			return fmt.Sprint(res.mv.size()), true
		}
		objs, err := h.store.ListObjects(res.user, res.cal.ID)
		if err != nil {
			return "", false
		}
		var n int64
		for _, o := range objs {
			n += o.Size
		}
		return fmt.Sprint(n), true
	}},
	caldav("calendar-data"): {on: onObj, value: func(h *Handler, res *resource) (string, bool) {
		if res.obj.Data == nil {
			return "", false
		}
		return escape(string(res.obj.Data)), true
	}},
}

func cs(local string) xml.Name    { return xml.Name{Space: nsCS, Local: local} }
func apple(local string) xml.Name { return xml.Name{Space: nsApple, Local: local} }

// propstat collects the rendered properties of one resource by status.
type propstat struct {
	found   []string // rendered elements
	missing []xml.Name
	other   map[int][]xml.Name // e.g. 403 or 424 in PROPPATCH
}

// propsOf renders the requested properties of res. names nil with
// allprop set means DAV:allprop (plus include).
func (h *Handler) propsOf(res *resource, names []xml.Name, allprop, propname bool) propstat {
	var ps propstat
	if propname {
		for _, n := range h.propNames(res) {
			ps.found = append(ps.found, emptyTag(n))
		}
		return ps
	}
	if allprop {
		seen := make(map[xml.Name]bool)
		for _, n := range names {
			seen[n] = true
		}
		for _, n := range sortedNames(liveProps) {
			if def := liveProps[n]; def.allprop && !seen[n] {
				names = append(names, n)
			}
		}
		if res.cal != nil && res.kind == kindCalendar {
			for _, k := range sortedKeys(res.cal.DeadProps) {
				if n, ok := parseClark(k); ok && !seen[n] {
					names = append(names, n)
				}
			}
		}
	}
	for _, n := range names {
		if el, ok := h.renderProp(res, n); ok {
			ps.found = append(ps.found, el)
		} else {
			ps.missing = append(ps.missing, n)
		}
	}
	return ps
}

// appendProp appends one property element of res to b, as renderProp
// renders it; calendar-data is escaped straight from the object's bytes.
func (h *Handler) appendProp(b []byte, res *resource, n xml.Name) ([]byte, bool) {
	if res.obj != nil && res.mv == nil && n.Space == nsDAV {
		// The two properties every client lists members with.
		switch n.Local {
		case "getetag":
			b = append(b, "<d:getetag>&#34;"...)
			b = append(b, res.obj.ETag...)
			return append(b, "&#34;</d:getetag>"...), true
		case "getcontenttype":
			b = append(b, "<d:getcontenttype>text/calendar; charset=utf-8; component="...)
			b = appendLower(b, res.obj.Component)
			return append(b, "</d:getcontenttype>"...), true
		}
	}
	if n == caldav("calendar-data") && res.obj != nil {
		if res.obj.Data == nil || !liveProps[n].on(res) {
			return b, false
		}
		b = append(b, "<c:calendar-data>"...)
		b = appendEscaped(b, res.obj.Data)
		return append(b, "</c:calendar-data>"...), true
	}
	el, ok := h.renderProp(res, n)
	return append(b, el...), ok
}

// appendLower appends s, an iCalendar component name (ASCII letters),
// in lower case.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '&' || c == '<' || c == '>':
			c = '_' // never in a name Inspect accepts; kept out of the markup regardless
		}
		b = append(b, c)
	}
	return b
}

// renderProp renders one property element of res.
func (h *Handler) renderProp(res *resource, n xml.Name) (string, bool) {
	if def, ok := liveProps[n]; ok {
		if !def.on(res) {
			return "", false
		}
		v, ok := def.value(h, res)
		if !ok {
			return "", false
		}
		if v == "" {
			return emptyTag(n), true
		}
		return openTag(n) + v + closeTag(n), true
	}
	if res.kind == kindCalendar && res.cal != nil {
		if raw, ok := res.cal.DeadProps[clark(n)]; ok {
			return raw, true
		}
	}
	return "", false
}

func (h *Handler) propNames(res *resource) []xml.Name {
	var out []xml.Name
	for _, n := range sortedNames(liveProps) {
		def := liveProps[n]
		if !def.on(res) {
			continue
		}
		if n == caldav("calendar-data") {
			out = append(out, n)
			continue
		}
		if _, ok := def.value(h, res); ok {
			out = append(out, n)
		}
	}
	if res.kind == kindCalendar && res.cal != nil {
		for _, k := range sortedKeys(res.cal.DeadProps) {
			if n, ok := parseClark(k); ok {
				out = append(out, n)
			}
		}
	}
	return out
}

func clark(n xml.Name) string { return "{" + n.Space + "}" + n.Local }

func parseClark(s string) (xml.Name, bool) {
	if !strings.HasPrefix(s, "{") {
		return xml.Name{}, false
	}
	i := strings.IndexByte(s, '}')
	if i < 0 {
		return xml.Name{}, false
	}
	return xml.Name{Space: s[1:i], Local: s[i+1:]}, true
}

func sortedNames(m map[xml.Name]propDef) []xml.Name {
	out := make([]xml.Name, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return clark(out[i]) < clark(out[j]) })
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// multistatus builds a DAV:multistatus body in one byte buffer. Once
// streaming (streamTo), a body that grows past streamChunk is sent as it
// is built, without Content-Length, so that listing a large calendar
// does not hold its whole answer in memory.
type multistatus struct {
	b []byte
	w http.ResponseWriter // set by streamTo
	r *http.Request
	// started is set once the status line and part of the body are sent.
	started bool
}

// streamChunk is the size at which a streaming multistatus sends what it
// has built.
const streamChunk = 256 << 10

// streamTo lets the body be sent in pieces to w as it grows. Whatever
// fails after the first piece is sent can no longer change the status,
// so callers stream only once every error response is behind them.
func (m *multistatus) streamTo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodHead {
		m.w, m.r = w, r
	}
}

// flush sends the body built so far if it is streaming and large enough.
func (m *multistatus) flush() {
	if m.w == nil || len(m.b) < streamChunk {
		return
	}
	if !m.started {
		m.w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		m.w.WriteHeader(http.StatusMultiStatus)
		m.started = true
	}
	m.w.Write(m.b)
	m.b = m.b[:0]
}

func newMultistatus() *multistatus {
	m := &multistatus{b: make([]byte, 0, 4096)}
	m.b = append(m.b, xml.Header...)
	m.b = append(m.b, msHeader...)
	return m
}

// reserve makes room for about n more bytes, so that a large answer is
// not copied over and over as it grows.
func (m *multistatus) reserve(n int) {
	if m.w != nil {
		n = min(n, streamChunk+streamChunk/4-len(m.b))
	}
	if n > 0 {
		m.b = slices.Grow(m.b, n)
	}
}

func statusLine(code int) string {
	if code == http.StatusOK {
		return "HTTP/1.1 200 OK"
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code)
}

// add writes one response with its propstats.
func (m *multistatus) add(hrefPath string, ps propstat) {
	m.openResponse(hrefPath)
	if len(ps.found) > 0 {
		m.b = append(m.b, "<d:propstat><d:prop>"...)
		for _, el := range ps.found {
			m.b = append(m.b, el...)
		}
		m.b = append(m.b, "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>"...)
	}
	m.closeResponse(ps.missing, ps.other)
	m.flush()
}

func (m *multistatus) openResponse(hrefPath string) {
	m.b = append(m.b, "<d:response><d:href>"...)
	m.b = appendEscaped(m.b, hrefPath)
	m.b = append(m.b, "</d:href>"...)
}

// closeResponse writes the propstats of properties not found (404) and
// refused, and ends the response.
func (m *multistatus) closeResponse(missing []xml.Name, other map[int][]xml.Name) {
	if len(missing) == 0 && len(other) == 0 {
		m.b = append(m.b, "</d:response>"...)
		return
	}
	write := func(code int, names []xml.Name) {
		if len(names) == 0 {
			return
		}
		m.b = append(m.b, "<d:propstat><d:prop>"...)
		for _, n := range names {
			m.b = append(m.b, emptyTag(n)...)
		}
		m.b = append(m.b, "</d:prop><d:status>"+statusLine(code)+"</d:status></d:propstat>"...)
	}
	write(http.StatusNotFound, missing)
	if len(other) > 0 {
		for _, code := range []int{http.StatusForbidden, http.StatusConflict, http.StatusFailedDependency} {
			write(code, other[code])
		}
	}
	m.b = append(m.b, "</d:response>"...)
}

// addResource writes the response of res with the properties names (or
// allprop, propname), as add(res.href, h.propsOf(...)) would, rendering
// them straight into the body: the path of every multistatus that lists
// many resources.
func (m *multistatus) addResource(h *Handler, res *resource, names []xml.Name, allprop, propname bool) {
	if allprop || propname {
		m.add(res.href, h.propsOf(res, names, allprop, propname))
		return
	}
	m.openResponse(res.href)
	var missing []xml.Name
	open := false
	for _, n := range names {
		mark := len(m.b)
		if !open {
			m.b = append(m.b, "<d:propstat><d:prop>"...)
		}
		var ok bool
		if m.b, ok = h.appendProp(m.b, res, n); !ok {
			m.b = m.b[:mark]
			missing = append(missing, n)
			continue
		}
		open = true
	}
	if open {
		m.b = append(m.b, "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>"...)
	}
	m.closeResponse(missing, nil)
	m.flush()
}

// addStatus writes one response that has a status instead of properties.
func (m *multistatus) addStatus(hrefPath string, code int) {
	m.openResponse(hrefPath)
	m.b = append(m.b, "<d:status>"+statusLine(code)+"</d:status></d:response>"...)
	m.flush()
}

func (m *multistatus) raw(s string) { m.b = append(m.b, s...) }

func (m *multistatus) send(w http.ResponseWriter, r *http.Request) {
	m.b = append(m.b, "</d:multistatus>"...)
	if m.started {
		w.Write(m.b)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(m.b)))
	w.WriteHeader(http.StatusMultiStatus)
	if r.Method != http.MethodHead {
		w.Write(m.b)
	}
}
