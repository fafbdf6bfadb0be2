package gateway

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/calgate/calgate/cache"
)

// davError is an error with an HTTP status and, where RFC 4918, 4791 or
// 6578 name one, a precondition element for the DAV:error body.
type davError struct {
	status int
	cond   xml.Name // zero: no precondition element
	inner  string   // XML inside the precondition element (already escaped)
	msg    string   // human-readable detail, sent as calgate:message
}

func (e *davError) Error() string { return e.msg }

func errf(status int, format string, args ...any) *davError {
	return &davError{status: status, msg: fmt.Sprintf(format, args...)}
}

func precond(status int, cond xml.Name, format string, args ...any) *davError {
	return &davError{status: status, cond: cond, msg: fmt.Sprintf(format, args...)}
}

// errNotFound is the one body every unknown or foreign resource gets, so
// that a response reveals nothing about other users' data.
var errNotFound = &davError{status: http.StatusNotFound, msg: "not found"}

// errNoSpace answers a write the store refused for lack of disk space:
// 507 with the DAV:sufficient-disk-space precondition (RFC 4331 §6).
var errNoSpace = precond(http.StatusInsufficientStorage, dav("sufficient-disk-space"),
	"the server's disk is full: nothing of this request was stored; try again once the server has room")

// writeError turns any error into the response: a *davError keeps its
// status and precondition, cache.ErrNoSpace is errNoSpace (507), and
// anything else is an internal error whose detail goes to the log, not to
// the client.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, cache.ErrNoSpace) {
		err = errNoSpace // the store logged the warning
	}
	var de *davError
	if !errors.As(err, &de) {
		h.log.Error("request failed", "method", r.Method, "path", h.logPath(r.URL.Path), "err", err)
		de = errf(http.StatusInternalServerError, "internal error; see the server log")
	}
	var b strings.Builder
	b.WriteString(xml.Header)
	b.WriteString(`<d:error xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cg="` + nsCalgate + `">`)
	if de.cond.Local != "" {
		b.WriteString(openTag(de.cond))
		b.WriteString(de.inner)
		b.WriteString(closeTag(de.cond))
	}
	if de.msg != "" {
		b.WriteString("<cg:message>")
		xml.EscapeText(&sbWriter{&b}, []byte(de.msg))
		b.WriteString("</cg:message>")
	}
	b.WriteString("</d:error>")
	setAuthHeaders(w, de.status)
	if de.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", allowFor(h.resolveQuiet(r)))
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(b.Len()))
	w.WriteHeader(de.status)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

type sbWriter struct{ b *strings.Builder }

func (s *sbWriter) Write(p []byte) (int, error) { return s.b.Write(p) }
