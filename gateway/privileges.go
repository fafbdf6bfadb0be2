package gateway

import (
	"net/http"

	"github.com/calgate/calgate/cache"
)

// Calendar kinds (cache.Calendar.Kind).
const (
	kindLocal  = "local"
	kindCalDAV = "caldav"
	kindICS    = "ics"
)

// readOnly reports whether clients may only read cal: a mirrored .ics
// feed has nowhere to send a write.
func readOnly(cal *cache.Calendar) bool {
	return cal != nil && cal.Kind == kindICS
}

// mirrored reports whether cal is defined by an upstream source in the
// configuration (it cannot be deleted by a client).
func mirrored(cal *cache.Calendar) bool {
	return cal != nil && (cal.Kind == kindICS || cal.Kind == kindCalDAV)
}

// needPrivileges is the 403 for a write to a read-only resource
// (RFC 3744 §7.1.1 DAV:need-privileges).
func needPrivileges(href, privilege, why string) error {
	return &davError{status: http.StatusForbidden, cond: dav("need-privileges"),
		inner: "<d:resource>" + hrefElem(href) + "<d:privilege><d:" + privilege + "/></d:privilege></d:resource>",
		msg:   why}
}

func hrefElem(s string) string { return href(s) }

// writableCalendar returns the calendar user/id for a write, or the error
// a client gets: 404 if it does not exist, 403 need-privileges if it is
// read-only.
func (h *Handler) writableCalendar(user, id, privilege string) (cache.Calendar, error) {
	cal, err := h.store.GetCalendar(user, id)
	if err != nil {
		return cal, err
	}
	if readOnly(&cal) {
		return cal, needPrivileges(calendarHref(user, id), privilege,
			"calendar "+id+" mirrors a published .ics feed and is read-only")
	}
	return cal, nil
}

var readPrivileges = []string{"<d:read/>", "<d:read-current-user-privilege-set/>", "<c:read-free-busy/>"}
