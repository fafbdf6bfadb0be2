package gateway

import (
	"encoding/xml"
	"errors"
	"net/http"
	"strings"

	"github.com/calgate/calgate/cache"
)

// propfindBody is DAV:propfind (RFC 4918 §14.20).
type propfindBody struct {
	XMLName  xml.Name  `xml:"DAV: propfind"`
	AllProp  *struct{} `xml:"DAV: allprop"`
	PropName *struct{} `xml:"DAV: propname"`
	Prop     *nameList `xml:"DAV: prop"`
	Include  *nameList `xml:"DAV: include"`
}

// depth reads the Depth header. A missing header is read as 0, as most
// CalDAV servers do; "infinity" is refused (RFC 4918 §9.1).
func depth(r *http.Request) (int, error) {
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Depth"))) {
	case "", "0":
		return 0, nil
	case "1":
		return 1, nil
	case "infinity":
		return 0, precond(http.StatusForbidden, dav("propfind-finite-depth"), "Depth: infinity is not supported; use Depth 0 or 1")
	}
	return 0, errf(http.StatusBadRequest, "invalid Depth header %q", r.Header.Get("Depth"))
}

func (h *Handler) propfind(w http.ResponseWriter, req *request) error {
	d, err := depth(req.Request)
	if err != nil {
		return err
	}
	var body propfindBody
	has, err := h.readXML(w, req.Request, &body)
	if err != nil {
		return err
	}
	allprop := !has || body.AllProp != nil
	propname := has && body.PropName != nil
	var names []xml.Name
	if has && body.Prop != nil && !allprop && !propname {
		names = *body.Prop
	} else if allprop && body.Include != nil {
		names = *body.Include
	} else if has && body.AllProp == nil && body.PropName == nil && body.Prop == nil {
		return errf(http.StatusBadRequest, "DAV:propfind needs prop, allprop or propname")
	}
	wantData := false
	for _, n := range names {
		if n == caldav("calendar-data") {
			wantData = true
		}
	}
	self, err := h.lookup(req.user, req.t, wantData)
	if err != nil {
		return err
	}
	ms := newMultistatus()
	ms.addResource(h, self, names, allprop, propname)
	if d == 1 {
		children, err := h.children(req.user, self, wantData)
		if err != nil {
			return err
		}
		ms.streamTo(w, req.Request)
		ms.reserve(len(children) * (256 + len(self.href)))
		for _, c := range children {
			if wantData && c.obj != nil {
				ms.reserve(len(c.obj.Data) + 256)
			}
			ms.addResource(h, c, names, allprop, propname)
		}
	}
	ms.send(w, req.Request)
	return nil
}

// lookup finds the resource t of user, or errNotFound.
func (h *Handler) lookup(user string, t target, withData bool) (*resource, error) {
	res := &resource{kind: t.kind, user: user}
	switch t.kind {
	case kindRoot:
		res.href = davPrefix
		if t.path == "/" {
			res.href = "/"
		}
	case kindPrincipals:
		res.href = principalsPath
	case kindPrincipal:
		res.href = principalHref(user)
	case kindHomes:
		res.href = calendarsPath
	case kindHome:
		res.href = homeHref(user)
	case kindCalendar, kindObject:
		cal, err := h.store.GetCalendar(user, t.cal)
		if err != nil {
			return nil, storeErr(err)
		}
		if cal.Kind == kindMerged {
			return h.mergedLookup(user, t, cal, withData)
		}
		res.cal = &cal
		res.href = calendarHref(user, cal.ID)
		if t.kind == kindObject {
			var obj cache.Object
			if withData {
				obj, err = h.store.GetObject(user, t.cal, t.name)
			} else {
				obj, err = h.objectMeta(user, t.cal, t.name)
			}
			if err != nil {
				return nil, storeErr(err)
			}
			res.obj = &obj
			res.href = objectHref(user, cal.ID, obj.Name)
		}
	default:
		return nil, errNotFound
	}
	return res, nil
}

// objectMeta returns an object's metadata. (The store reads the whole
// record; only the header is decoded.)
func (h *Handler) objectMeta(user, cal, name string) (cache.Object, error) {
	o, err := h.store.GetObject(user, cal, name)
	o.Data = nil
	return o, err
}

// children lists the members of a collection for Depth 1.
func (h *Handler) children(user string, res *resource, withData bool) ([]*resource, error) {
	switch res.kind {
	case kindRoot:
		return []*resource{
			{kind: kindPrincipals, user: user, href: principalsPath},
			{kind: kindHomes, user: user, href: calendarsPath},
		}, nil
	case kindPrincipals:
		return []*resource{{kind: kindPrincipal, user: user, href: principalHref(user)}}, nil
	case kindHomes:
		return []*resource{{kind: kindHome, user: user, href: homeHref(user)}}, nil
	case kindHome:
		cals, err := h.store.ListCalendars(user)
		if err != nil {
			return nil, err
		}
		out := make([]*resource, len(cals))
		for i := range cals {
			out[i] = &resource{kind: kindCalendar, user: user, cal: &cals[i], href: calendarHref(user, cals[i].ID)}
			if cals[i].Kind == kindMerged {
				v, err := h.mergedView(cals[i])
				if err != nil {
					return nil, err
				}
				out[i].cal, out[i].mv = &v.cal, v
			}
		}
		return out, nil
	case kindCalendar:
		if res.mv != nil {
			return h.mergedResources(res.mv, res.mv.idx.visible, withData)
		}
		var objs []cache.Object
		var err error
		if withData {
			objs, err = h.store.SelectObjects(user, res.cal.ID, func(cache.Object) bool { return true })
		} else {
			objs, err = h.store.ListObjects(user, res.cal.ID)
		}
		if err != nil {
			return nil, storeErr(err)
		}
		out := make([]*resource, len(objs))
		slab := make([]resource, len(objs)) // one allocation for all members
		base := res.href
		for i := range objs {
			slab[i] = resource{kind: kindObject, user: user, cal: res.cal, obj: &objs[i], href: base + esc(objs[i].Name)}
			out[i] = &slab[i]
		}
		return out, nil
	}
	return nil, nil
}

// storeErr maps the store's sentinels to responses.
func storeErr(err error) error {
	var uc *cache.UIDConflictError
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return errNotFound
	case errors.Is(err, cache.ErrPrecondition):
		return errf(http.StatusPreconditionFailed, "the resource's ETag does not match the request's If-Match or If-None-Match")
	case errors.As(err, &uc):
		return err
	case errors.Is(err, cache.ErrInvalid):
		return errf(http.StatusBadRequest, "%v", err)
	}
	return err
}
