package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/calgate/calgate/cache"
)

// moveCopy serves MOVE and COPY of a calendar object resource between the
// signed-in user's calendars (RFC 4918 §9.8, §9.9; RFC 4791 §5.3.2): the
// destination calendar's preconditions apply, and a move is one store
// transaction that records a tombstone in the source calendar and a put
// in the destination.
func (h *Handler) moveCopy(w http.ResponseWriter, req *request, keep bool) error {
	if req.t.kind != kindObject {
		return errf(http.StatusForbidden, "only calendar object resources can be moved or copied")
	}
	dest := req.Header.Get("Destination")
	if dest == "" {
		return errf(http.StatusBadRequest, "missing Destination header")
	}
	dt, ok := hrefTarget(dest)
	if !ok || dt.kind != kindObject {
		return errf(http.StatusBadRequest, "Destination must be a calendar object URL such as %s", objectHref(req.user, "CAL", "NAME.ics"))
	}
	if dt.user != req.user {
		return errf(http.StatusForbidden, "the destination is not one of your calendars")
	}
	cond := cache.PutConditions{}
	switch strings.ToUpper(strings.TrimSpace(req.Header.Get("Overwrite"))) {
	case "", "T":
	case "F":
		cond.IfNoneMatch = true
	default:
		return errf(http.StatusBadRequest, "Overwrite must be T or F")
	}
	src, err := h.objectMeta(req.user, req.t.cal, req.t.name)
	if err != nil {
		return storeErr(err)
	}
	if !keep {
		if _, err := h.writableCalendar(req.user, req.t.cal, "unbind"); err != nil {
			return storeErr(err)
		}
	}
	cal, err := h.writableCalendar(req.user, dt.cal, "bind")
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return errf(http.StatusConflict, "destination calendar %q does not exist", dt.cal)
		}
		return err
	}
	if !slices.Contains(cal.Components, src.Component) {
		return precond(http.StatusForbidden, caldav("supported-calendar-component"),
			"calendar %q does not accept %s components", cal.ID, src.Component)
	}
	if dt.cal == req.t.cal && dt.name == req.t.name {
		return errf(http.StatusForbidden, "source and destination are the same resource")
	}
	obj, created, err := h.store.MoveObject(req.user, req.t.cal, req.t.name, dt.cal, dt.name, keep, cond)
	var uc *cache.UIDConflictError
	switch {
	case errors.As(err, &uc):
		return &davError{status: http.StatusForbidden, cond: caldav("no-uid-conflict"),
			inner: href(objectHref(req.user, dt.cal, uc.Name)),
			msg:   fmt.Sprintf("UID %q is already used by %s in calendar %s", src.UID, uc.Name, dt.cal)}
	case err != nil:
		return storeErr(err)
	}
	if !keep {
		h.changed(req.user, req.t.cal)
	}
	h.changed(req.user, dt.cal)
	w.Header().Set("ETag", `"`+obj.ETag+`"`)
	if created {
		w.Header().Set("Location", objectHref(req.user, dt.cal, dt.name))
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}
