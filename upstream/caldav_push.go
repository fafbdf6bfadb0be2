package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// Conflict reasons recorded by Push.
const (
	reasonBothChanged      = "412 on push: modified on both sides"
	reasonDeletedUpstream  = "deleted upstream, modified locally"
	reasonDeletedLocally   = "deleted locally, modified upstream"
	reasonUnreadableRemote = "upstream version cannot be stored"
)

// Push sends one outbox entry upstream and completes it in the store: a
// "put" as a PUT of the object's current bytes with If-Match (or
// If-None-Match: * for a new object), a "delete" as a DELETE with
// If-Match. When the upstream changed too (412), the conflict policy
// decides which version stays; the other one is recorded with
// PutConflict, and a modification always survives a deletion on the
// other side. Errors wrap ErrUnavailable when a later try may help; other
// errors are permanent refusals, and the entry stays for the engine to
// retry later.
func (s *CalDAVSource) Push(ctx context.Context, e cache.OutboxEntry) error {
	if s.err != nil {
		return s.err
	}
	if e.User != s.opts.User || e.Cal != s.opts.Calendar {
		return fmt.Errorf("caldav: source %s: outbox entry %d is for calendar %s/%s", s.opts.ID, e.Seq, e.User, e.Cal)
	}
	switch e.Op {
	case "put":
		return s.pushPut(ctx, e)
	case "delete":
		return s.pushDelete(ctx, e)
	case "proppatch":
		return s.pushProps(ctx, e)
	}
	return fmt.Errorf("caldav: outbox entry %d: unknown op %q", e.Seq, e.Op)
}

// target returns the stored href of entry e and its absolute URL.
func (s *CalDAVSource) target(e cache.OutboxEntry) (href, abs string) {
	href = e.Href
	if href == "" {
		href = s.hrefOf(e.Name)
	}
	return href, s.resolve(href)
}

// conditional returns the precondition header for a write against base:
// If-Match with the ETag as the upstream gave it, or If-None-Match: *
// for a new object.
func conditional(base string) http.Header {
	if base == "" {
		return http.Header{"If-None-Match": {"*"}}
	}
	return http.Header{"If-Match": {quoteETag(base)}}
}

func (s *CalDAVSource) pushPut(ctx context.Context, e cache.OutboxEntry) error {
	local, err := s.store.GetObject(e.User, e.Cal, e.Name)
	if errors.Is(err, cache.ErrNotFound) {
		// A later local delete replaces a pending put, so this entry is
		// stale; there is nothing left to send.
		s.log.Warn("caldav push: object gone locally; dropping its put", "name", e.Name, "seq", e.Seq)
		return dropped(s.store.DropOutbox(e.Seq))
	}
	if err != nil {
		return err
	}
	href, abs := s.target(e)
	code, etag, err := s.put(ctx, e.Name, abs, local.Data, conditional(e.BaseETag))
	if err != nil {
		if s.unanswered(e.Name, local.Data, err) && e.BaseETag == "" && e.Href == "" {
			// The upstream may have created the object: a client's
			// delete of it must be pushed, not dropped (cache.OutboxEntry.Sent).
			if merr := dropped(s.store.MarkOutboxSent(e.Seq)); merr != nil {
				s.log.Warn("caldav push: cannot record an unanswered create", "name", e.Name, "err", merr)
			}
		}
		return err
	}
	if code == http.StatusPreconditionFailed || code == http.StatusNotFound {
		return s.resolvePut(ctx, e, local, href, abs)
	}
	return s.complete(ctx, e, local, href, abs, etag)
}

// put sends data of object name to abs with the precondition hdr. A 412 or 404 answer
// is returned as its code; other failures as errors. etag is the new
// upstream ETag from the response ("" if the server sent none).
//
// Servers such as Radicale refuse to overwrite an object with one of
// another UID (409 no-uid-conflict); put then replaces it (see replace).
func (s *CalDAVSource) put(ctx context.Context, name, abs string, data []byte, hdr http.Header) (code int, etag string, err error) {
	hdr = hdr.Clone()
	hdr.Set("Content-Type", "text/calendar; charset=utf-8")
	resp, body, err := s.request(ctx, http.MethodPut, abs, hdr, data, http.StatusPreconditionFailed, http.StatusNotFound, http.StatusConflict)
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode == http.StatusConflict {
		if ifMatch := hdr.Get("If-Match"); ifMatch != "" && bytes.Contains(body, []byte("no-uid-conflict")) {
			return s.replace(ctx, name, abs, data, ifMatch)
		}
		return 0, "", s.classify(resp, nil, http.MethodPut+" "+redact(abs))
	}
	return resp.StatusCode, unquoteETag(resp.Header.Get("ETag")), nil
}

// replace puts data at abs in place of the object ifMatch names, which has
// another UID: a DELETE with If-Match, then a PUT with If-None-Match: *.
// A 412 of either is returned as its code. If the PUT does not follow the
// DELETE, the object's absence upstream is calgate's own doing (see
// deleteSent): a retry re-creates it without a conflict.
func (s *CalDAVSource) replace(ctx context.Context, name, abs string, data []byte, ifMatch string) (code int, etag string, err error) {
	code, err = s.delete(ctx, abs, http.Header{"If-Match": {ifMatch}})
	if err != nil || code == http.StatusPreconditionFailed {
		return code, "", err
	}
	code, etag, err = s.put(ctx, name, abs, data, conditional(""))
	if err != nil || code/100 != 2 {
		s.noteDelete(name)
	}
	return code, etag, err
}

// complete records a successful put: the new upstream ETag (read back
// with a PROPFIND if the response had none) goes with the entry's
// completion, in one transaction.
func (s *CalDAVSource) complete(ctx context.Context, e cache.OutboxEntry, local cache.Object, href, abs, etag string) error {
	if etag == "" {
		var err error
		if etag, err = s.getETag(ctx, abs); err != nil {
			// The write is upstream; an unknown ETag only costs a fetch
			// at the next sync.
			s.log.Warn("caldav push: cannot read the new etag", "name", e.Name, "err", err)
		}
	}
	s.remember(e.Name, etag)
	err := s.store.CompleteOutbox(e.Seq, local.ETag, href, etag)
	if errors.Is(err, cache.ErrNotFound) {
		// Replaced by a later local write while this one was on its
		// way; that entry's push will meet our ETag (see remember).
		s.log.Debug("caldav push: entry replaced while pushing", "name", e.Name, "seq", e.Seq)
		return nil
	}
	return err
}

// remember notes the upstream ETag of calgate's own last write of name,
// so that a later entry built on an older base, which then fails with
// 412, is recognised as following our own write rather than a conflict.
// The writes sent before it are answered by it.
func (s *CalDAVSource) remember(name, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sent, name)
	if etag == "" {
		delete(s.pushed, name)
		return
	}
	s.pushed[name] = etag
}

// maxSent bounds the unanswered writes remembered per name.
const maxSent = 8

// sentWrites are the writes of one name whose replies never came: the
// upstream may have carried them out.
type sentWrites struct {
	data    [][]byte // the bodies of PUTs, oldest first
	deleted bool     // a DELETE was sent (or made, see noteDelete)
}

// unanswered notes that a PUT of data (nil: a DELETE) of name got no
// reply (err is not an upstream's answer): the upstream may have carried
// it out. Until a reply completes a push of name (remember), an upstream
// version with these bytes, or the object's absence after a DELETE, is
// calgate's own write, not a change made by someone else. It reports
// whether the write was unanswered.
func (s *CalDAVSource) unanswered(name string, data []byte, err error) bool {
	var answered *davStatusError
	if errors.As(err, &answered) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.sent[name]
	if w == nil {
		w = &sentWrites{}
		s.sent[name] = w
	}
	if data == nil {
		w.deleted = true // as noteDelete
		return true
	}
	if len(w.data) == maxSent {
		w.data = w.data[1:]
	}
	w.data = append(w.data, data)
	return true
}

// noteDelete notes a DELETE of name that calgate made, answered, in
// place of an object of another UID, when the PUT meant to follow it
// failed: like an unanswered DELETE, it explains the object's absence.
func (s *CalDAVSource) noteDelete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.sent[name]
	if w == nil {
		w = &sentWrites{}
		s.sent[name] = w
	}
	w.deleted = true
}

// sentBefore reports whether calgate sent a PUT of name with the content
// of data, without an answer (see unanswered).
func (s *CalDAVSource) sentBefore(name string, data []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.sent[name]; w != nil {
		for _, d := range w.data {
			if sameContent(d, data) {
				return true
			}
		}
	}
	return false
}

// deleteSent reports whether calgate sent a DELETE of name without an
// answer (see unanswered).
func (s *CalDAVSource) deleteSent(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.sent[name]
	return w != nil && w.deleted
}

// forgetSent drops the unanswered writes of name once a conflict settled
// it without a write of calgate's.
func (s *CalDAVSource) forgetSent(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sent, name)
}

// ours reports whether etag is that of calgate's own last write of name.
func (s *CalDAVSource) ours(name, etag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return etag != "" && s.pushed[name] == etag
}

// resolvePut handles a put refused because the upstream object is not
// the one the local edit was based on.
func (s *CalDAVSource) resolvePut(ctx context.Context, e cache.OutboxEntry, local cache.Object, href, abs string) error {
	data, etag, found, err := s.get(ctx, abs)
	if err != nil {
		return err
	}
	if !found {
		// Deleted upstream, modified locally: the modification survives.
		code, newETag, err := s.put(ctx, e.Name, abs, local.Data, conditional(""))
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("%w: caldav: PUT %s: the object changed again upstream while resolving a conflict (%d)", ErrUnavailable, redact(abs), code)
		}
		if s.deleteSent(e.Name) {
			// The deletion was calgate's own, its reply lost: no conflict.
			return s.complete(ctx, e, local, href, abs, newETag)
		}
		if _, err := s.store.PutConflict(cache.Conflict{
			User: e.User, Cal: e.Cal, Name: e.Name, Kept: "local", Reason: reasonDeletedUpstream,
		}); err != nil {
			return err
		}
		s.log.Warn("caldav push: conflict", "name", e.Name, "reason", reasonDeletedUpstream, "kept", "local")
		return s.complete(ctx, e, local, href, abs, newETag)
	}
	if s.ours(e.Name, etag) || s.sentBefore(e.Name, data) || sameContent(data, local.Data) {
		// Not a conflict: the upstream has calgate's own earlier write
		// (the entry's base predates it, or its reply was lost), or
		// already has these bytes (a push whose completion was lost in a
		// crash).
		if sameContent(data, local.Data) {
			return s.complete(ctx, e, local, href, abs, etag)
		}
		return s.retryPut(ctx, e, local, href, abs, etag)
	}
	if s.opts.Conflict == ConflictLocalWins {
		// The loser is recorded first: replacing it may take a DELETE
		// before the PUT (see put), and a failure between the two must
		// not lose it.
		if _, err := s.store.PutConflict(cache.Conflict{
			User: e.User, Cal: e.Cal, Name: e.Name, Kept: "local",
			LoserData: data, LoserETag: etag, Reason: reasonBothChanged,
		}); err != nil {
			return err
		}
		code, newETag, err := s.put(ctx, e.Name, abs, local.Data, conditional(etag))
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("%w: caldav: PUT %s: the object changed again upstream while resolving a conflict (%d)", ErrUnavailable, redact(abs), code)
		}
		s.log.Warn("caldav push: conflict", "name", e.Name, "reason", reasonBothChanged, "kept", "local")
		return s.complete(ctx, e, local, href, abs, newETag)
	}
	// upstream-wins: record the local version first, then replace it.
	obj, err := s.objectFrom(e.Name, href, etag, data)
	if err != nil {
		return fmt.Errorf("caldav: %s: %s: %w; the local version is kept and not pushed", e.Name, reasonUnreadableRemote, err)
	}
	if _, err := s.store.PutConflict(cache.Conflict{
		User: e.User, Cal: e.Cal, Name: e.Name, Kept: "upstream",
		LoserData: local.Data, LoserETag: local.ETag, Reason: reasonBothChanged,
	}); err != nil {
		return err
	}
	if _, err := s.store.PutObjectUpstreamIf(e.User, e.Cal, obj, cache.PutConditions{IfMatch: local.ETag}); err != nil {
		if errors.Is(err, cache.ErrPrecondition) {
			// A client wrote again meanwhile: its write stands, with its
			// own outbox entry, and is decided about when it is pushed.
			return nil
		}
		return err
	}
	s.log.Warn("caldav push: conflict", "name", e.Name, "reason", reasonBothChanged, "kept", "upstream")
	s.forgetSent(e.Name)
	return dropped(s.store.DropOutbox(e.Seq))
}

// retryPut sends the entry again against the current upstream ETag, which
// is calgate's own last write.
func (s *CalDAVSource) retryPut(ctx context.Context, e cache.OutboxEntry, local cache.Object, href, abs, etag string) error {
	code, newETag, err := s.put(ctx, e.Name, abs, local.Data, conditional(etag))
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("%w: caldav: PUT %s: the object changed upstream meanwhile (%d)", ErrUnavailable, redact(abs), code)
	}
	return s.complete(ctx, e, local, href, abs, newETag)
}

func (s *CalDAVSource) pushDelete(ctx context.Context, e cache.OutboxEntry) error {
	_, abs := s.target(e)
	if e.BaseETag != "" || e.Href != "" {
		var hdr http.Header
		if e.BaseETag != "" {
			hdr = conditional(e.BaseETag)
		}
		code, err := s.delete(ctx, abs, hdr)
		if err != nil {
			s.unanswered(e.Name, nil, err)
			return err
		}
		if code != http.StatusPreconditionFailed {
			return s.completeDelete(e)
		}
	}
	// A 412, or a delete of an object whose create got no reply
	// (cache.OutboxEntry.Sent), which has no ETag to match: what the
	// upstream holds decides. Absent, the delete is done; calgate's own
	// write, it is deleted; another's, that survives.
	data, etag, found, err := s.get(ctx, abs)
	if err != nil {
		return err
	}
	if !found {
		return s.completeDelete(e)
	}
	if s.ours(e.Name, etag) || s.sentBefore(e.Name, data) {
		// The upstream has calgate's own last write (or one whose reply
		// was lost): delete that.
		code, err := s.delete(ctx, abs, conditional(etag))
		if err != nil {
			return err
		}
		if code == http.StatusPreconditionFailed {
			return fmt.Errorf("%w: caldav: DELETE %s: the object changed upstream meanwhile", ErrUnavailable, redact(abs))
		}
		return s.completeDelete(e)
	}
	// Deleted locally, modified upstream: the modification survives,
	// whatever the policy.
	href, _ := s.target(e)
	obj, err := s.objectFrom(e.Name, href, etag, data)
	if err != nil {
		return fmt.Errorf("caldav: %s: deleted locally but modified upstream, and the %s: %w", e.Name, reasonUnreadableRemote, err)
	}
	if _, err := s.store.PutObjectUpstreamIf(e.User, e.Cal, obj, cache.PutConditions{IfNoneMatch: true}); err != nil {
		if errors.Is(err, cache.ErrPrecondition) {
			return nil // re-created by a client meanwhile: that write stands
		}
		return err
	}
	if _, err := s.store.PutConflict(cache.Conflict{
		User: e.User, Cal: e.Cal, Name: e.Name, Kept: "upstream", Reason: reasonDeletedLocally,
	}); err != nil {
		return err
	}
	s.log.Warn("caldav push: conflict", "name", e.Name, "reason", reasonDeletedLocally, "kept", "upstream")
	s.forgetSent(e.Name)
	return dropped(s.store.DropOutbox(e.Seq))
}

// delete sends a DELETE. 2xx, 404 and 410 (already gone) return 200;
// 412 is returned as its code; other failures as errors.
func (s *CalDAVSource) delete(ctx context.Context, abs string, hdr http.Header) (int, error) {
	resp, _, err := s.request(ctx, http.MethodDelete, abs, hdr, nil, http.StatusPreconditionFailed, http.StatusNotFound, http.StatusGone)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusPreconditionFailed {
		return resp.StatusCode, nil
	}
	return http.StatusOK, nil
}

func (s *CalDAVSource) completeDelete(e cache.OutboxEntry) error {
	s.remember(e.Name, "")
	return dropped(s.store.CompleteOutbox(e.Seq, "", "", ""))
}

// dropped ignores ErrNotFound from completing or dropping an entry: a
// later local write replaced it, and that one is pushed on its own.
func dropped(err error) error {
	if errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	return err
}

// sameContent reports whether two iCalendar texts have the same content
// lines in any order: servers such as Radicale and Xandikos store a
// re-serialised copy of what they were sent, with properties reordered.
func sameContent(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	la, lb := contentLines(a), contentLines(b)
	return slices.Equal(la, lb)
}

func contentLines(data []byte) []string {
	var out []string
	for _, l := range bytes.Split(ical.Unfold(data), []byte("\n")) {
		l = bytes.TrimRight(l, "\r")
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, string(l))
		}
	}
	slices.Sort(out)
	return out
}

// pushProps sends the calendar's display name, color, description and
// order to the upstream collection with PROPPATCH. An upstream that
// refuses some or all of them (many allow only some) keeps its values:
// the change stays local, with a warning, and the entry is done.
func (s *CalDAVSource) pushProps(ctx context.Context, e cache.OutboxEntry) error {
	cal, err := s.store.GetCalendar(e.User, e.Cal)
	if err != nil {
		return err
	}
	var set strings.Builder
	prop := func(open, value, close string) {
		if value != "" {
			set.WriteString(open + xmlEscape(value) + close)
		}
	}
	prop("<d:displayname>", cal.DisplayName, "</d:displayname>")
	prop("<ic:calendar-color>", cal.Color, "</ic:calendar-color>")
	prop("<c:calendar-description>", cal.Description, "</c:calendar-description>")
	prop("<ic:calendar-order>", cal.Order, "</ic:calendar-order>")
	if set.Len() > 0 {
		body := `<?xml version="1.0" encoding="utf-8"?><d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:ic="http://apple.com/ns/ical/">` +
			"<d:set><d:prop>" + set.String() + "</d:prop></d:set></d:propertyupdate>"
		hdr := http.Header{"Content-Type": {"application/xml; charset=utf-8"}}
		resp, data, err := s.request(ctx, "PROPPATCH", s.coll.String(), hdr, []byte(body), http.StatusForbidden,
			http.StatusConflict, http.StatusMethodNotAllowed, http.StatusNotImplemented, http.StatusBadRequest)
		if err != nil {
			return err
		}
		if resp.StatusCode >= 300 || bytes.Contains(data, []byte(" 403 ")) || bytes.Contains(data, []byte(" 409 ")) {
			s.log.Warn("caldav push: the upstream did not take all calendar properties; they stay local", "status", resp.StatusCode)
		}
	}
	return dropped(s.store.CompleteOutbox(e.Seq, "", "", ""))
}
