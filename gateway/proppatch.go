package gateway

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// propertyUpdate is DAV:propertyupdate (RFC 4918 §14.19), and also the
// body of MKCALENDAR (RFC 4791 §5.3.1) and extended MKCOL (RFC 5689):
// set and remove instructions in document order.
type propertyUpdate struct {
	root xml.Name
	ops  []propOp
}

type propOp struct {
	remove bool
	props  propList
}

func (u *propertyUpdate) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	u.root = start.Name
	return eachChild(d, func(t xml.StartElement) error {
		if t.Name != dav("set") && t.Name != dav("remove") {
			return d.Skip()
		}
		var inner struct {
			Prop propList `xml:"DAV: prop"`
		}
		if err := d.DecodeElement(&inner, &t); err != nil {
			return err
		}
		u.ops = append(u.ops, propOp{remove: t.Name == dav("remove"), props: inner.Prop})
		return nil
	})
}

// writable are the live properties a client may set on a calendar.
var writable = map[xml.Name]bool{
	dav("displayname"):             true,
	caldav("calendar-description"): true,
	apple("calendar-color"):        true,
	apple("calendar-order"):        true,
	caldav("calendar-timezone"):    true,
}

// setProp applies one set or remove instruction to cal. It returns the
// HTTP status for the property and, on failure, a reason.
func setProp(cal *cache.Calendar, p rawProp, remove, creating bool) (int, string) {
	if creating {
		switch p.Name {
		case caldav("supported-calendar-component-set"):
			comps, err := componentSet(p)
			if err != nil {
				return http.StatusForbidden, err.Error()
			}
			cal.Components = comps
			return http.StatusOK, ""
		case dav("resourcetype"):
			for _, n := range p.childNames() {
				if n == caldav("calendar") {
					return http.StatusOK, ""
				}
			}
			return http.StatusForbidden, "only calendar collections can be created here"
		}
	}
	if _, live := liveProps[p.Name]; live && !writable[p.Name] {
		return http.StatusForbidden, "cannot-modify-protected-property"
	}
	val := ""
	if !remove {
		val = strings.TrimSpace(p.innerText())
	}
	switch p.Name {
	case dav("displayname"):
		cal.DisplayName = val
	case caldav("calendar-description"):
		cal.Description = val
	case apple("calendar-color"):
		cal.Color = val
	case apple("calendar-order"):
		cal.Order = val
	case caldav("calendar-timezone"):
		if val != "" {
			parsed, err := ical.Parse([]byte(val))
			if err != nil {
				return http.StatusForbidden, "calendar-timezone: " + err.Error()
			}
			ok := false
			for _, c := range parsed.Children {
				ok = ok || c.Name == "VTIMEZONE"
			}
			if !ok {
				return http.StatusForbidden, "calendar-timezone must hold a VCALENDAR with one VTIMEZONE"
			}
		}
		cal.Timezone = val
	default:
		if cal.DeadProps == nil {
			cal.DeadProps = make(map[string]string)
		}
		if remove {
			delete(cal.DeadProps, clark(p.Name))
		} else {
			cal.DeadProps[clark(p.Name)] = p.XML
		}
	}
	return http.StatusOK, ""
}

// componentSet reads the names of CALDAV:comp children.
func componentSet(p rawProp) ([]string, error) {
	var set struct {
		Comps []struct {
			Name string `xml:"name,attr"`
		} `xml:"urn:ietf:params:xml:ns:caldav comp"`
	}
	if err := xml.Unmarshal([]byte(p.XML), &set); err != nil {
		return nil, err
	}
	var out []string
	for _, c := range set.Comps {
		name := strings.ToUpper(strings.TrimSpace(c.Name))
		switch name {
		case "VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY":
			out = append(out, name)
		default:
			return nil, fmt.Errorf("component %q is not supported", c.Name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("supported-calendar-component-set names no component")
	}
	return out, nil
}

func (h *Handler) proppatch(w http.ResponseWriter, req *request) error {
	if req.t.kind != kindCalendar {
		// Properties of principals, homes and objects are not writable;
		// answer per property so that clients see which were refused.
		res, err := h.lookup(req.user, req.t, false)
		if err != nil {
			return err
		}
		// An object of a merged calendar belongs to a member: one that
		// the merged calendar does not write to refuses it as a whole.
		if res.mv != nil && res.kind == kindObject {
			if w := res.mv.writeTo(); w < 0 || res.member.ID != res.mv.members[w].id {
				return res.mv.readOnlyErr(req.t.name, "write-properties")
			}
		}
	}
	var u propertyUpdate
	has, err := h.readXML(w, req.Request, &u)
	if err != nil {
		return err
	}
	if !has || u.root != dav("propertyupdate") {
		return errf(http.StatusBadRequest, "PROPPATCH needs a DAV:propertyupdate body")
	}
	ps := propstat{other: make(map[int][]xml.Name)}
	if req.t.kind != kindCalendar {
		for _, op := range u.ops {
			for _, p := range op.props {
				ps.other[http.StatusForbidden] = append(ps.other[http.StatusForbidden], p.Name)
			}
		}
		ms := newMultistatus()
		ms.add(req.URL.Path, ps)
		ms.send(w, req.Request)
		return nil
	}
	if _, err := h.writableCalendar(req.user, req.t.cal, "write-properties"); err != nil {
		return storeErr(err)
	}
	var (
		failed  bool
		results map[xml.Name]int
		order   []xml.Name
	)
	_, err = h.store.UpdateCalendarProps(req.user, req.t.cal, func(c *cache.Calendar) error {
		failed, results, order = false, make(map[xml.Name]int), nil
		for _, op := range u.ops {
			for _, p := range op.props {
				status, _ := setProp(c, p, op.remove, false)
				if _, seen := results[p.Name]; !seen {
					order = append(order, p.Name)
				}
				results[p.Name] = status
				failed = failed || status != http.StatusOK
			}
		}
		if failed {
			return errPatchFailed // nothing is applied (RFC 4918 §9.2)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPatchFailed) {
		return storeErr(err)
	}
	for _, n := range order {
		switch {
		case results[n] != http.StatusOK:
			ps.other[results[n]] = append(ps.other[results[n]], n)
		case failed:
			ps.other[http.StatusFailedDependency] = append(ps.other[http.StatusFailedDependency], n)
		default:
			ps.found = append(ps.found, emptyTag(n))
		}
	}
	if !failed {
		h.changed(req.user, req.t.cal)
	}
	ms := newMultistatus()
	ms.add(calendarHref(req.user, req.t.cal), ps)
	ms.send(w, req.Request)
	return nil
}

var errPatchFailed = errors.New("gateway: property update refused")

// mkcalendar creates a calendar collection (MKCALENDAR, RFC 4791 §5.3.1,
// or extended MKCOL, RFC 5689).
func (h *Handler) mkcalendar(w http.ResponseWriter, req *request, mkcol bool) error {
	if req.t.kind != kindCalendar {
		return precond(http.StatusForbidden, caldav("calendar-collection-location-ok"),
			"calendars can only be created directly below the calendar home %s", homeHref(req.user))
	}
	var u propertyUpdate
	has, err := h.readXML(w, req.Request, &u)
	if err != nil {
		return err
	}
	wantRoot := caldav("mkcalendar")
	if mkcol {
		wantRoot = dav("mkcol")
	}
	if has && u.root != wantRoot {
		return errf(http.StatusBadRequest, "the request body must be %s", clark(wantRoot))
	}
	if mkcol && !has {
		return errf(http.StatusForbidden, "MKCOL here needs an extended MKCOL body with a calendar resourcetype")
	}
	cal := cache.Calendar{User: req.user, ID: req.t.cal, Kind: "local",
		Components: []string{"VEVENT", "VTODO", "VJOURNAL"}}
	sawType := false
	for _, op := range u.ops {
		for _, p := range op.props {
			if p.Name == dav("resourcetype") {
				sawType = true
			}
			if status, reason := setProp(&cal, p, op.remove, true); status != http.StatusOK {
				return precond(status, dav("valid-resourcetype"), "%s: %s", clark(p.Name), reason)
			}
		}
	}
	if mkcol && !sawType {
		return errf(http.StatusForbidden, "MKCOL here needs a DAV:resourcetype with CALDAV:calendar")
	}
	if _, err := h.store.CreateCalendar(cal); err != nil {
		if errors.Is(err, cache.ErrExists) {
			return precond(http.StatusMethodNotAllowed, dav("resource-must-be-null"), "%s already exists", calendarHref(req.user, req.t.cal))
		}
		return storeErr(err)
	}
	w.Header().Set("Location", calendarHref(req.user, req.t.cal))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}
