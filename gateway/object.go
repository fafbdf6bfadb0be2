package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// get serves GET and HEAD: one object as the exact bytes stored, or a
// whole calendar as one iCalendar stream.
func (h *Handler) get(w http.ResponseWriter, req *request) error {
	switch req.t.kind {
	case kindObject:
		res, err := h.lookup(req.user, req.t, true)
		if err != nil {
			return err
		}
		obj := *res.obj
		w.Header().Set("ETag", `"`+obj.ETag+`"`)
		w.Header().Set("Content-Type", contentType(&obj))
		http.ServeContent(w, req.Request, "", obj.Modified, bytes.NewReader(obj.Data))
		return nil
	case kindCalendar:
		return h.getCollection(w, req)
	case kindRoot:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "calgate CalDAV server. Signed in as %s.\nPoint a CalDAV client at this address; calendars are under %s.\n", req.user, homeHref(req.user))
		return nil
	}
	return errf(http.StatusMethodNotAllowed, "GET is not supported on this collection; use PROPFIND")
}

// put stores one calendar object resource (RFC 4791 §5.3.2).
func (h *Handler) put(w http.ResponseWriter, req *request) error {
	if req.t.kind != kindObject {
		return errf(http.StatusMethodNotAllowed, "PUT is only allowed on a calendar object resource")
	}
	// In a merged calendar the write goes to its WriteTo member.
	dest, err := h.writeTarget(req.user, req.t.cal, req.t.name, "write-content")
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return errf(http.StatusConflict, "calendar %q does not exist; create it with MKCALENDAR first", req.t.cal)
		}
		return err
	}
	cal := dest.cal
	if ct := req.Header.Get("Content-Type"); ct != "" {
		mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		if mt != "text/calendar" {
			return &davError{status: http.StatusUnsupportedMediaType, cond: caldav("supported-calendar-data"),
				msg: fmt.Sprintf("Content-Type must be text/calendar, not %q", mt)}
		}
	}
	cond, err := putConditions(req.Request)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, req.Request)
	if err != nil {
		return err
	}
	parsed, err := ical.Parse(body)
	if err != nil {
		return calendarDataErr(err)
	}
	info, err := h.zones.Inspect(parsed)
	if err != nil {
		return calendarDataErr(err)
	}
	if !slices.Contains(cal.Components, info.Component) {
		return precond(http.StatusForbidden, caldav("supported-calendar-component"),
			"calendar %q does not accept %s components (it accepts %s)", cal.ID, info.Component, strings.Join(cal.Components, ", "))
	}
	if err := h.uidElsewhere(req.user, dest, info.UID, "", ""); err != nil {
		return err
	}
	obj, created, err := h.store.PutObject(req.user, cal.ID, storedObject(dest.name, body, info), cond)
	var uc *cache.UIDConflictError
	if errors.As(err, &uc) {
		return &davError{status: http.StatusForbidden, cond: caldav("no-uid-conflict"),
			inner: href(dest.href(req.user, uc.Name)),
			msg:   fmt.Sprintf("UID %q is already used by %s in this calendar", info.UID, uc.Name)}
	}
	if err != nil {
		return storeErr(err)
	}
	h.changed(req.user, cal.ID)
	w.Header().Set("ETag", `"`+obj.ETag+`"`)
	w.Header().Set("Last-Modified", obj.Modified.UTC().Format(http.TimeFormat))
	if created {
		w.Header().Set("Location", dest.href(req.user, obj.Name))
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusNoContent)
	}
	return nil
}

// calendarDataErr maps an ical error to its precondition.
func calendarDataErr(err error) error {
	if errors.Is(err, ical.ErrInvalidObject) {
		return precond(http.StatusForbidden, caldav("valid-calendar-object-resource"), "%v", err)
	}
	return precond(http.StatusForbidden, caldav("valid-calendar-data"), "%v", err)
}

// putConditions reads If-Match and If-None-Match for a write.
func putConditions(r *http.Request) (cache.PutConditions, error) {
	var c cache.PutConditions
	if v := strings.TrimSpace(r.Header.Get("If-None-Match")); v != "" {
		if v != "*" {
			return c, errf(http.StatusBadRequest, "only If-None-Match: * is supported on writes")
		}
		c.IfNoneMatch = true
	}
	if v := strings.TrimSpace(r.Header.Get("If-Match")); v != "" {
		tag, err := parseETag(v)
		if err != nil {
			return c, err
		}
		c.IfMatch = tag
	}
	return c, nil
}

// parseETag reads a single entity tag (or "*"). Weak tags never match a
// strong comparison, so they fail the precondition.
func parseETag(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "*" {
		return "*", nil
	}
	if strings.Contains(v, ",") {
		return "", errf(http.StatusBadRequest, "If-Match with several entity tags is not supported")
	}
	if strings.HasPrefix(v, "W/") {
		return "weak:never-matches", nil
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errf(http.StatusBadRequest, "malformed entity tag %q", v)
	}
	return v[1 : len(v)-1], nil
}

// delete removes an object or a whole calendar.
func (h *Handler) delete(w http.ResponseWriter, req *request) error {
	if req.t.kind != kindObject && req.t.kind != kindCalendar {
		return errf(http.StatusForbidden, "this collection cannot be deleted")
	}
	cal, err := h.store.GetCalendar(req.user, req.t.cal)
	if err != nil {
		return storeErr(err)
	}
	if cal.Kind == kindMerged {
		return h.mergedDelete(w, req)
	}
	switch {
	case req.t.kind == kindObject && readOnly(&cal):
		return needPrivileges(objectHref(req.user, cal.ID, req.t.name), "unbind", "calendar "+cal.ID+" mirrors a published .ics feed and is read-only")
	case req.t.kind == kindCalendar && mirrored(&cal):
		return needPrivileges(calendarHref(req.user, cal.ID), "unbind", "calendar "+cal.ID+" mirrors an upstream defined in the configuration; remove it there")
	}
	switch req.t.kind {
	case kindObject:
		ifMatch := ""
		if v := req.Header.Get("If-Match"); v != "" {
			tag, err := parseETag(v)
			if err != nil {
				return err
			}
			ifMatch = tag
		}
		if err := h.store.DeleteObject(req.user, req.t.cal, req.t.name, ifMatch); err != nil {
			return storeErr(err)
		}
	case kindCalendar:
		if err := h.store.DeleteCalendar(req.user, req.t.cal); err != nil {
			return storeErr(err)
		}
	default:
		return errf(http.StatusForbidden, "this collection cannot be deleted")
	}
	h.changed(req.user, req.t.cal)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// storedObject is the object a client write stores: data as received,
// described by what Inspect found in it.
func storedObject(name string, data []byte, info ical.Info) cache.Object {
	return cache.Object{
		Name:      name,
		UID:       info.UID,
		Component: info.Component,
		Start:     info.Start,
		End:       info.End,
		Exact:     info.Exact,
		Warnings:  info.Warnings,
		Data:      data,
	}
}
