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
	// The source: a COPY reads it (from a merged calendar, the member
	// that stores it); a MOVE unbinds it, so it must be writable (in a
	// merged calendar, only in the WriteTo member).
	res, err := h.lookup(req.user, req.t, false)
	if err != nil {
		return err
	}
	src := *res.obj
	srcCal, srcName := res.cal.ID, src.Name
	if res.member != nil {
		srcCal = res.member.ID
	}
	if !keep {
		// writeTarget resolves a merged name as lookup did.
		if _, err := h.writeTarget(req.user, req.t.cal, req.t.name, "unbind"); err != nil {
			return storeErr(err)
		}
	}
	to, err := h.writeTarget(req.user, dt.cal, dt.name, "bind")
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return errf(http.StatusConflict, "destination calendar %q does not exist", dt.cal)
		}
		return err
	}
	cal := to.cal
	if !slices.Contains(cal.Components, src.Component) {
		return precond(http.StatusForbidden, caldav("supported-calendar-component"),
			"calendar %q does not accept %s components", cal.ID, src.Component)
	}
	if cal.ID == srcCal && to.name == srcName {
		return errf(http.StatusForbidden, "source and destination are the same resource")
	}
	skipCal, skipName := "", ""
	if !keep {
		skipCal, skipName = srcCal, srcName
	}
	if err := h.uidElsewhere(req.user, to, src.UID, skipCal, skipName); err != nil {
		return err
	}
	obj, created, err := h.store.MoveObject(req.user, srcCal, srcName, cal.ID, to.name, keep, cond)
	var uc *cache.UIDConflictError
	switch {
	case errors.As(err, &uc):
		return &davError{status: http.StatusForbidden, cond: caldav("no-uid-conflict"),
			inner: href(to.href(req.user, uc.Name)),
			msg:   fmt.Sprintf("UID %q is already used by %s in calendar %s", src.UID, uc.Name, cal.ID)}
	case err != nil:
		return storeErr(err)
	}
	if !keep {
		h.changed(req.user, srcCal)
	}
	h.changed(req.user, cal.ID)
	w.Header().Set("ETag", `"`+obj.ETag+`"`)
	if created {
		w.Header().Set("Location", to.href(req.user, to.name))
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}
