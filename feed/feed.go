// Package feed renders calgate's subscribable feeds: the union of member
// calendars from the cache as one iCalendar stream (RFC 5545), as legacy
// subscribers ("From URL", internet calendars, subscribed calendars) read
// it. DESIGN.md §7 gives the rules: a time window, busy-only privacy, a
// SUMMARY prefix per member, and de-duplication by UID across members.
//
// Stored objects are copied as the bytes they were received as: a
// transform rewrites only the content lines it concerns, line ends become
// CRLF, and only lines that are not already folded at 75 octets (RFC 5545
// §3.1) are folded again. Rendering is deterministic: the same store
// state, Spec and time give byte-identical output.
package feed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
	goical "github.com/emersion/go-ical"
)

// Member is one calendar of a feed or merged collection.
type Member struct {
	// User and Cal name the calendar in the cache.
	User, Cal string
	// Prefix is prepended to SUMMARY ("" = none) in every component
	// (masters and overrides; not in alarms). It is text: Render escapes
	// it. Busy privacy ignores it: SUMMARY is then Spec.BusySummary.
	Prefix string
}

// Spec describes a feed.
type Spec struct {
	// Name identifies the feed (the file name without ".ics").
	Name string
	// Title is the X-WR-CALNAME. Default: Name.
	Title string
	// Members are the calendars merged, in order: the order of the output,
	// and the tie-break of de-duplication (the first member wins). A
	// calendar listed twice counts once, at its first place.
	Members []Member
	// Busy selects busy privacy (DESIGN.md §7). Default: false, full
	// privacy (objects untouched but for prefixes).
	Busy bool
	// BusySummary is the SUMMARY of every component in busy mode.
	// Default: "Busy".
	BusySummary string
	// Past and Future bound the window around now; 0 is unbounded on that
	// side.
	Past, Future time.Duration
	// Refresh is written as REFRESH-INTERVAL (RFC 7986) and
	// X-PUBLISHED-TTL, rounded up to whole seconds; 0 omits both.
	Refresh time.Duration
}

// prodID is the PRODID of every feed.
const prodID = "-//calgate//calgate feed//EN"

// versionFormat is hashed into every Version: bump it when the rendering
// of the same data changes.
const versionFormat = "calgate-feed-1"

// Version returns a string that changes exactly when a member calendar
// changes (its epoch or revision) or the spec does; it is 32 lowercase hex
// digits, usable as a strong ETag. It costs one GetCalendar per member.
//
// Version does not depend on the time: with a window (Past or Future),
// the same Version can render differently as the window moves, so a cache
// keyed by Version alone should also be rebuilt when the window has moved
// enough to matter (for example daily).
//
// Errors wrap cache.ErrNotFound when a member calendar does not exist.
func Version(store *cache.Store, spec Spec) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%q\x00%q\x00%t\x00%q\x00%d\x00%d\x00%d\n", versionFormat,
		spec.Name, spec.Title, spec.Busy, spec.BusySummary, spec.Past, spec.Future, spec.Refresh)
	for _, m := range spec.Members {
		c, err := store.GetCalendar(m.User, m.Cal)
		if err != nil {
			return "", fmt.Errorf("feed %q: member %s/%s: %w", spec.Name, m.User, m.Cal, err)
		}
		fmt.Fprintf(h, "%q\x00%q\x00%q\x00%s\x00%d\n", m.User, m.Cal, m.Prefix, c.Epoch, c.Revision)
	}
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16]), nil
}

// Winner returns the index of the object that wins among objects sharing
// one UID (from different members): the highest SEQUENCE, then the latest
// LAST-MODIFIED, then the latest DTSTAMP, then the first. An object counts
// as new as its newest component (an edited override makes its object
// newer). Objects carry Data. It returns -1 for no objects.
func Winner(objs []cache.Object) int {
	best := -1
	var bs stamp
	for i := range objs {
		s := objectStamp(splitComps(objs[i].Data))
		if best < 0 || s.newer(bs) {
			best, bs = i, s
		}
	}
	return best
}

// window is the time window of a feed; a zero start or end is unbounded.
type window struct{ start, end time.Time }

func newWindow(spec Spec, now time.Time) window {
	var w window
	if spec.Past > 0 {
		w.start = now.Add(-spec.Past)
	}
	if spec.Future > 0 {
		w.end = now.Add(spec.Future)
	}
	return w
}

func (w window) unbounded() bool { return w.start.IsZero() && w.end.IsZero() }

// disjoint reports whether a stored span [start, end] (zero: unbounded)
// certainly has nothing in the window. The span bounds every time the
// object can match (cache.Object), so only strict comparisons are used:
// the RFC 4791 §9.9 rules at the edges are left to expansion.
func (w window) disjoint(start, end time.Time) bool {
	return !w.end.IsZero() && !start.IsZero() && start.After(w.end) ||
		!w.start.IsZero() && !end.IsZero() && end.Before(w.start)
}

// inside reports whether a stored span lies strictly inside the window,
// so that the object matches without expansion.
func (w window) inside(start, end time.Time) bool {
	if start.IsZero() || end.IsZero() {
		return false
	}
	return (w.start.IsZero() || start.After(w.start)) && (w.end.IsZero() || start.Before(w.end) && !end.After(w.end))
}

// candidate is one member's object for a UID.
type candidate struct {
	member int
	obj    cache.Object
	comps  []comp
}

// Render returns the feed as one VCALENDAR: CRLF, folded at 75 octets
// without splitting UTF-8 sequences, with X-WR-CALNAME, with
// REFRESH-INTERVAL;VALUE=DURATION and X-PUBLISHED-TTL when Refresh > 0,
// and with the VTIMEZONEs of the members de-duplicated by TZID (the first
// in output order wins) and only those a kept component references.
//
// Objects are de-duplicated by UID with Winner (the winning object is
// taken whole, overrides and all) and kept if any instance intersects the
// window [now-Past, now+Future): the stored span decides when it can, and
// ical expansion (with its caps; a truncated expansion keeps the object)
// otherwise. A recurring series is kept whole. Members come in spec order
// and objects by name, a UID at its first place. Objects are copied as
// bytes where no transform applies; a transform (prefix, busy) rewrites
// only the lines it changes (see DESIGN.md §7 for busy privacy). zones
// resolves TZIDs for expansion; nil uses a fresh ical.Zones.
//
// Errors wrap cache.ErrNotFound when a member calendar does not exist.
func Render(store *cache.Store, zones *ical.Zones, spec Spec, now time.Time) ([]byte, error) {
	if zones == nil {
		zones = new(ical.Zones)
	}
	w := newWindow(spec, now)
	members := uniqueMembers(spec.Members)

	// One read transaction per member fetches the objects the window may
	// keep and notes the UIDs of all of them, in name order.
	var (
		all     = make([][]string, len(members))
		skipped = make([]map[string]string, len(members)) // uid -> name, outside the window
		groups  = make(map[string][]candidate)
	)
	for i, m := range members {
		objs, err := store.SelectObjects(m.User, m.Cal, func(o cache.Object) bool {
			all[i] = append(all[i], o.UID)
			if w.disjoint(o.Start, o.End) {
				if skipped[i] == nil {
					skipped[i] = make(map[string]string)
				}
				skipped[i][o.UID] = o.Name
				return false
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("feed %q: member %s/%s: %w", spec.Name, m.User, m.Cal, err)
		}
		for _, o := range objs {
			groups[o.UID] = append(groups[o.UID], candidate{member: i, obj: o})
		}
	}
	// An object outside the window still competes for a UID that another
	// member has inside it: it may be the newer version (moved out).
	for i, m := range members {
		var names []string
		for uid, name := range skipped[i] {
			if groups[uid] != nil {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			continue
		}
		objs, err := store.GetObjects(m.User, m.Cal, names)
		if err != nil {
			return nil, fmt.Errorf("feed %q: member %s/%s: %w", spec.Name, m.User, m.Cal, err)
		}
		for _, o := range objs {
			groups[o.UID] = append(groups[o.UID], candidate{member: i, obj: o})
		}
	}

	transforms := make([]transform, len(members))
	for i, m := range members {
		transforms[i] = newTransform(spec, m)
	}
	size := 0
	for _, cands := range groups {
		size += len(cands[0].obj.Data)
	}
	var (
		body      = make([]byte, 0, size+size/8)
		used      = make(map[string]bool)
		zonesByID = make(map[string]int) // TZID (raw and unescaped) -> index in tzs
		tzs       []comp
		done      = make(map[string]bool, len(groups))
	)
	for i := range members {
		for _, uid := range all[i] {
			cands := groups[uid]
			if cands == nil || done[uid] {
				continue
			}
			done[uid] = true
			win := pick(cands)
			c := &cands[win]
			if !keepInWindow(zones, w, c.obj) {
				continue
			}
			var kept bool
			body, kept = transforms[c.member].appendObject(body, c.comps, used)
			if !kept {
				continue
			}
			for _, z := range c.comps {
				if z.name != "VTIMEZONE" || z.tzid == "" {
					continue
				}
				if _, dup := zonesByID[z.tzid]; dup {
					continue
				}
				zonesByID[z.tzid] = len(tzs)
				if u := ical.UnescapeText(z.tzid); u != z.tzid {
					if _, dup := zonesByID[u]; !dup {
						zonesByID[u] = len(tzs)
					}
				}
				tzs = append(tzs, z)
			}
		}
	}

	emit := make([]bool, len(tzs))
	tzSize := 0
	for id := range used {
		if j, ok := zonesByID[id]; ok && !emit[j] {
			emit[j] = true
			tzSize += len(tzs[j].data)
		}
	}
	out := make([]byte, 0, len(body)+tzSize+tzSize/16+512)
	out = appendHeader(out, spec)
	for j := range tzs {
		if emit[j] {
			out = appendRaw(out, tzs[j].data)
		}
	}
	out = append(out, body...)
	out = append(out, "END:VCALENDAR\r\n"...)
	return out, nil
}

// pick splits the candidates of one UID into components and returns the
// index of the winner.
func pick(cands []candidate) int {
	win := 0
	var best stamp
	for i := range cands {
		cands[i].comps = splitComps(cands[i].obj.Data)
		if len(cands) == 1 {
			break
		}
		s := objectStamp(cands[i].comps)
		// A tie goes to the first member (candidates fetched in the
		// second pass of Render come after the others).
		if i == 0 || s.newer(best) || !best.newer(s) && cands[i].member < cands[win].member {
			win, best = i, s
		}
	}
	return win
}

// keepInWindow reports whether object o has an instance in the window.
func keepInWindow(zones *ical.Zones, w window, o cache.Object) bool {
	if keep, decided := w.decides(o.Start, o.End); decided {
		return keep
	}
	return expandKeeps(zones, w, o.Data)
}

// decides reports whether a stored span alone decides that an object is
// kept (unbounded window, span inside it) or left out (span outside it),
// and which.
func (w window) decides(start, end time.Time) (keep, decided bool) {
	switch {
	case w.unbounded() || w.inside(start, end):
		return true, true
	case w.disjoint(start, end):
		return false, true
	}
	return false, false
}

// same reports whether w and o are the same window.
func (w window) same(o window) bool { return w.start.Equal(o.start) && w.end.Equal(o.end) }

// expandKeeps reports whether the stored object data has an instance in
// the window, by expansion (with ical's caps; a truncated expansion keeps
// the object).
func expandKeeps(zones *ical.Zones, w window, data []byte) bool {
	cal, err := ical.Parse(data)
	if err != nil {
		return true // stored objects parse; keep rather than lose one
	}
	var comps []*goical.Component
	for _, c := range cal.Children {
		if c.Name != goical.CompTimezone && !strings.HasPrefix(strings.ToUpper(c.Name), "X-") {
			comps = append(comps, c)
		}
	}
	ok, err := zones.For(cal.Component).MatchInstances(comps, w.start, w.end)
	return ok || err != nil
}

// uniqueMembers returns members without repeats of a calendar, the first
// kept.
func uniqueMembers(members []Member) []Member {
	seen := make(map[[2]string]bool, len(members))
	out := make([]Member, 0, len(members))
	for _, m := range members {
		k := [2]string{m.User, m.Cal}
		if !seen[k] {
			seen[k] = true
			out = append(out, m)
		}
	}
	return out
}

// newTransform returns the transform of member m of spec.
func newTransform(spec Spec, m Member) transform {
	t := transform{busy: spec.Busy}
	if spec.Busy {
		s := spec.BusySummary
		if s == "" {
			s = "Busy"
		}
		t.busySummary = ical.EscapeText(s)
	} else if m.Prefix != "" {
		t.prefix = ical.EscapeText(m.Prefix)
	}
	return t
}

// appendHeader appends the VCALENDAR's BEGIN line and properties.
func appendHeader(b []byte, spec Spec) []byte {
	title := spec.Title
	if title == "" {
		title = spec.Name
	}
	b = append(b, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"...)
	b = ical.FoldLine(b, "PRODID:"+prodID)
	b = append(b, "CALSCALE:GREGORIAN\r\n"...)
	b = ical.FoldLine(b, "X-WR-CALNAME:"+ical.EscapeText(title))
	if spec.Refresh > 0 {
		d := formatDuration(spec.Refresh)
		b = append(b, "REFRESH-INTERVAL;VALUE=DURATION:"+d+"\r\n"...)
		b = append(b, "X-PUBLISHED-TTL:"+d+"\r\n"...)
	}
	return b
}

// formatDuration writes d, rounded up to whole seconds, as an RFC 5545
// DURATION: "P1D", "PT1H30M", "P1DT12H".
func formatDuration(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	days, secs := secs/86400, secs%86400
	var sb strings.Builder
	sb.WriteByte('P')
	if days > 0 {
		sb.WriteString(strconv.FormatInt(days, 10) + "D")
	}
	if secs > 0 {
		sb.WriteByte('T')
		for _, u := range [...]struct {
			n    int64
			unit string
		}{{3600, "H"}, {60, "M"}, {1, "S"}} {
			if secs >= u.n {
				sb.WriteString(strconv.FormatInt(secs/u.n, 10) + u.unit)
				secs %= u.n
			}
		}
	}
	return sb.String()
}
