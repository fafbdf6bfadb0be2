package gateway

import (
	"encoding/xml"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/calgate/calgate/cache"
)

// reportBody holds the elements of the REPORTs calgate answers:
// calendar-query and calendar-multiget (RFC 4791 §7.8, §7.9) and
// sync-collection (RFC 6578 §3.2).
type reportBody struct {
	XMLName   xml.Name
	Prop      *reportProps `xml:"DAV: prop"`
	AllProp   *struct{}    `xml:"DAV: allprop"`
	PropName  *struct{}    `xml:"DAV: propname"`
	Hrefs     []string     `xml:"DAV: href"`
	Filter    *filter      `xml:"urn:ietf:params:xml:ns:caldav filter"`
	TimeRange *timeRangeEl `xml:"urn:ietf:params:xml:ns:caldav time-range"`
	Timezone  string       `xml:"urn:ietf:params:xml:ns:caldav timezone"`
	SyncToken *string      `xml:"DAV: sync-token"`
	SyncLevel string       `xml:"DAV: sync-level"`
	Limit     *struct {
		NResults string `xml:"DAV: nresults"`
	} `xml:"DAV: limit"`
}

// props returns the requested property names, or allprop/propname.
func (b *reportBody) props() (names []xml.Name, allprop, propname bool) {
	switch {
	case b.Prop != nil:
		return b.Prop.names, false, false
	case b.PropName != nil:
		return nil, false, true
	}
	return nil, true, false
}

func (h *Handler) report(w http.ResponseWriter, req *request) error {
	var body reportBody
	has, err := h.readXML(w, req.Request, &body)
	if err != nil {
		return err
	}
	if !has {
		return errf(http.StatusBadRequest, "REPORT needs a request body")
	}
	if body.Prop != nil {
		if err := body.Prop.calData.compile(); err != nil {
			return err
		}
	}
	switch body.XMLName {
	case caldav("free-busy-query"):
		return h.freeBusy(w, req, &body)
	case caldav("calendar-multiget"):
		return h.multiget(w, req, &body)
	case caldav("calendar-query"):
		return h.query(w, req, &body)
	case dav("sync-collection"):
		return h.syncCollection(w, req, &body)
	}
	return precond(http.StatusForbidden, dav("supported-report"), "report %s is not supported", clark(body.XMLName))
}

func wantsData(names []xml.Name) bool {
	return slices.Contains(names, caldav("calendar-data"))
}

// multiget answers calendar-multiget: each href of the signed-in user's
// calendars, or 404 for it.
func (h *Handler) multiget(w http.ResponseWriter, req *request, body *reportBody) error {
	if req.t.kind != kindCalendar && req.t.kind != kindHome && req.t.kind != kindObject {
		return errf(http.StatusForbidden, "calendar-multiget must be sent to a calendar collection")
	}
	names, allprop, propname := body.props()
	type ref struct {
		href string
		t    target
	}
	var refs []ref
	byCal := make(map[string][]string)
	for _, hr := range body.Hrefs {
		t, ok := hrefTarget(hr)
		if ok && t.kind == kindObject && t.user == req.user && (req.t.kind == kindHome || t.cal == req.t.cal) {
			byCal[t.cal] = append(byCal[t.cal], t.name)
		} else {
			t = target{}
		}
		refs = append(refs, ref{href: strings.TrimSpace(hr), t: t})
	}
	found := make(map[[2]string]*resource)
	for calID, objNames := range byCal {
		cal, err := h.store.GetCalendar(req.user, calID)
		if err != nil {
			continue // every href of it is answered with 404
		}
		if cal.Kind == kindMerged {
			got, err := h.mergedMultiget(cal, objNames)
			if err != nil {
				return err
			}
			for name, res := range got {
				found[[2]string{calID, name}] = res
			}
			continue
		}
		objs, err := h.store.GetObjects(req.user, calID, objNames)
		if err != nil {
			return storeErr(err)
		}
		for i := range objs {
			found[[2]string{calID, objs[i].Name}] = &resource{kind: kindObject, user: req.user, cal: &cal,
				obj: &objs[i], href: objectHref(req.user, calID, objs[i].Name)}
		}
	}
	ms := newMultistatus()
	ms.streamTo(w, req.Request)
	for _, r := range refs {
		res, ok := found[[2]string{r.t.cal, r.t.name}]
		if r.t.kind != kindObject || !ok {
			ms.addStatus(r.href, http.StatusNotFound)
			continue
		}
		if !wantsData(names) && !allprop {
			res.obj.Data = nil
		}
		if cd := body.calData(); cd != nil && res.obj.Data != nil {
			cd.floating = h.floatingZone("", res.cal)
		}
		res.obj.Data = h.applyCalData(body.calData(), res.obj, nil)
		ms.addResource(h, res, names, allprop, propname)
	}
	ms.send(w, req.Request)
	return nil
}

// query answers calendar-query: candidates are picked by component type
// and stored time span, and only those are parsed and filtered.
func (h *Handler) query(w http.ResponseWriter, req *request, body *reportBody) error {
	if body.Filter == nil {
		return precond(http.StatusForbidden, caldav("valid-filter"), "calendar-query needs a CALDAV:filter")
	}
	q, err := compileFilter(body.Filter)
	if err != nil {
		return err
	}
	names, allprop, propname := body.props()
	var objs []cache.Object
	var cal cache.Calendar
	switch req.t.kind {
	case kindCalendar, kindObject:
		cal, err = h.store.GetCalendar(req.user, req.t.cal)
		if err != nil {
			return storeErr(err)
		}
		if cal.Kind == kindMerged {
			return h.mergedQuery(w, req, body, q, cal)
		}
		q.floating = h.floatingZone(body.Timezone, &cal)
		if cd := body.calData(); cd != nil {
			cd.floating = q.floating
		}
		if comp, start, end, ok := q.rangeHint(); ok && req.t.kind == kindCalendar {
			// The span index names the candidates; only those are read.
			names, err := h.store.Candidates(req.user, cal.ID, comp, start, end)
			if err != nil {
				return storeErr(err)
			}
			objs, err = h.store.GetObjects(req.user, cal.ID, names)
			if err != nil {
				return storeErr(err)
			}
		} else {
			objs, err = h.store.SelectObjects(req.user, cal.ID, func(o cache.Object) bool {
				return (req.t.kind == kindCalendar || o.Name == req.t.name) && q.candidate(o)
			})
			if err != nil {
				return storeErr(err)
			}
		}
		if req.t.kind == kindObject && len(objs) == 0 {
			if _, err := h.store.GetObject(req.user, cal.ID, req.t.name); err != nil {
				return storeErr(err)
			}
		}
	default:
		return errf(http.StatusForbidden, "calendar-query must be sent to a calendar collection")
	}
	ms := newMultistatus()
	ms.streamTo(w, req.Request)
	ms.reserve(len(objs) * 256)
	for i := range objs {
		o := &objs[i]
		ok, parsed, err := h.matchObject(q, o)
		if err != nil {
			h.log.Warn("calendar-query: stored object does not parse", "user", req.user, "calendar", cal.ID, "name", o.Name, "err", err)
			continue
		}
		if !ok {
			continue
		}
		if !wantsData(names) && !allprop {
			o.Data = nil
		}
		o.Data = h.applyCalData(body.calData(), o, parsed)
		res := &resource{kind: kindObject, user: req.user, cal: &cal, obj: o, href: objectHref(req.user, cal.ID, o.Name)}
		ms.addResource(h, res, names, allprop, propname)
	}
	ms.send(w, req.Request)
	return nil
}

// syncCollection answers sync-collection (RFC 6578): everything for an
// empty token, else what changed since, deletions as 404 members.
func (h *Handler) syncCollection(w http.ResponseWriter, req *request, body *reportBody) error {
	if req.t.kind != kindCalendar {
		return errf(http.StatusForbidden, "sync-collection must be sent to a calendar collection")
	}
	if lvl := strings.TrimSpace(body.SyncLevel); lvl != "" && lvl != "1" && lvl != "infinite" {
		return errf(http.StatusBadRequest, "invalid sync-level %q", lvl)
	}
	limit := -1
	if body.Limit != nil {
		n, err := strconv.Atoi(strings.TrimSpace(body.Limit.NResults))
		if err != nil || n < 1 {
			return precond(http.StatusForbidden, dav("limit"), "DAV:nresults must be a positive integer")
		}
		limit = n
	}
	cal, err := h.store.GetCalendar(req.user, req.t.cal)
	if err != nil {
		return storeErr(err)
	}
	names, allprop, propname := body.props()
	withData := wantsData(names) || allprop
	if cd := body.calData(); cd != nil {
		cd.floating = h.floatingZone("", &cal)
	}
	token := ""
	if body.SyncToken != nil {
		token = strings.TrimSpace(*body.SyncToken)
	}
	invalid := precond(http.StatusForbidden, dav("valid-sync-token"),
		"the sync token is unknown or has expired; sync again from an empty token")
	if cal.Kind == kindMerged {
		return h.mergedSync(w, req, body, cal, token, limit, invalid)
	}

	ms := newMultistatus()
	newRev := cal.Revision
	truncated := false
	if token == "" {
		objs, err := h.store.ListObjects(req.user, cal.ID)
		if err != nil {
			return storeErr(err)
		}
		slices.SortFunc(objs, func(a, b cache.Object) int { return cmpUint(a.Revision, b.Revision) })
		if limit >= 0 && len(objs) > limit {
			objs, truncated = objs[:limit], true
			newRev = objs[len(objs)-1].Revision
		}
		if err := h.writeMembers(ms, req.user, &cal, objs, withData, body.calData(), names, allprop, propname); err != nil {
			return err
		}
	} else {
		epoch, since, ok := parseSyncToken(token)
		if !ok || epoch != cal.Epoch {
			return invalid
		}
		rev, changes, err := h.store.Changes(req.user, cal.ID, since)
		if err != nil {
			if isTokenExpired(err) {
				return invalid
			}
			return storeErr(err)
		}
		newRev = rev
		if limit >= 0 && len(changes) > limit {
			changes, truncated = changes[:limit], true
			newRev = changes[len(changes)-1].Revision
		}
		var put []cache.Object
		for _, c := range changes {
			if !c.Deleted {
				put = append(put, cache.Object{Name: c.Name})
			}
		}
		objs, err := h.store.GetObjects(req.user, cal.ID, objectNames(put))
		if err != nil {
			return storeErr(err)
		}
		present := make(map[string]bool, len(objs))
		for _, o := range objs {
			present[o.Name] = true
		}
		for _, c := range changes {
			if c.Deleted || !present[c.Name] {
				ms.addStatus(objectHref(req.user, cal.ID, c.Name), http.StatusNotFound)
			}
		}
		if err := h.writeMembers(ms, req.user, &cal, objs, withData, body.calData(), names, allprop, propname); err != nil {
			return err
		}
	}
	if truncated {
		ms.raw("<d:response>" + href(calendarHref(req.user, cal.ID)) + "<d:status>" + statusLine(http.StatusInsufficientStorage) +
			"</d:status><d:error><d:number-of-matches-within-limits/></d:error></d:response>")
	}
	c := cal
	c.Revision = newRev
	ms.raw("<d:sync-token>" + escape(syncToken(&c)) + "</d:sync-token>")
	ms.send(w, req.Request)
	return nil
}

func (h *Handler) writeMembers(ms *multistatus, user string, cal *cache.Calendar, objs []cache.Object, withData bool, cd *calDataReq, names []xml.Name, allprop, propname bool) error {
	if withData && len(objs) > 0 && objs[0].Data == nil {
		full, err := h.store.GetObjects(user, cal.ID, objectNames(objs))
		if err != nil {
			return storeErr(err)
		}
		objs = full
	}
	for i := range objs {
		o := &objs[i]
		if !withData {
			o.Data = nil
		}
		o.Data = h.applyCalData(cd, o, nil)
		res := &resource{kind: kindObject, user: user, cal: cal, obj: o, href: objectHref(user, cal.ID, o.Name)}
		ms.addResource(h, res, names, allprop, propname)
	}
	return nil
}

func objectNames(objs []cache.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Name
	}
	return out
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseSyncToken splits a token made by syncToken.
func parseSyncToken(tok string) (epoch string, rev uint64, ok bool) {
	rest, found := strings.CutPrefix(tok, syncTokenPrefix)
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", 0, false
	}
	rev, err := strconv.ParseUint(rest[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], rev, true
}

// calData is the calendar-data request of the body, if any.
func (b *reportBody) calData() *calDataReq {
	if b.Prop == nil {
		return nil
	}
	return b.Prop.calData
}
