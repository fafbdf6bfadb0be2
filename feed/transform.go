package feed

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/calgate/calgate/ical"
)

// busyRemoved lists the properties that busy privacy removes from every
// component (masters and overrides). The first nine are DESIGN.md §7's;
// the others carry the same kind of detail under another name (an HTML
// description, coordinates, rooms, meeting links, a place's title).
// Read only.
var busyRemoved = [...]string{
	"DESCRIPTION", "LOCATION", "ATTENDEE", "ORGANIZER", "ATTACH", "URL", "CONTACT", "COMMENT", "CATEGORIES",
	"X-ALT-DESC", "GEO", "RESOURCES", "CONFERENCE", "IMAGE", "X-APPLE-STRUCTURED-LOCATION",
}

// removedInBusy reports whether busy privacy removes property name.
func removedInBusy(name []byte) bool {
	for _, n := range busyRemoved {
		if isName(name, n) {
			return true
		}
	}
	return false
}

// comp is one top-level component of a stored object, as its bytes, with
// what the feed needs to know about it.
type comp struct {
	name        string // upper case: VEVENT, VTIMEZONE, ...
	data        []byte // BEGIN to END as stored (a slice of the object's Data)
	tzid        string // a VTIMEZONE's TZID
	rid         []byte // the unfolded RECURRENCE-ID line; nil for a master
	cancelled   bool   // STATUS:CANCELLED
	transparent bool   // TRANSP:TRANSPARENT
	summary     bool   // has a SUMMARY of its own
	stamp       stamp
}

// stamp is what Winner compares: SEQUENCE, then LAST-MODIFIED, then
// DTSTAMP.
type stamp struct {
	seq          int
	lastModified time.Time
	dtstamp      time.Time
}

// newer reports whether a beats b; a tie is not newer.
func (a stamp) newer(b stamp) bool {
	if a.seq != b.seq {
		return a.seq > b.seq
	}
	if !a.lastModified.Equal(b.lastModified) {
		return a.lastModified.After(b.lastModified)
	}
	return a.dtstamp.After(b.dtstamp)
}

// max returns the field-wise maximum of a and b: an object is as new as
// its most recently edited component.
func (a stamp) max(b stamp) stamp {
	if b.seq > a.seq {
		a.seq = b.seq
	}
	if b.lastModified.After(a.lastModified) {
		a.lastModified = b.lastModified
	}
	if b.dtstamp.After(a.dtstamp) {
		a.dtstamp = b.dtstamp
	}
	return a
}

// objectStamp is the stamp of an object: the maximum over its components
// other than VTIMEZONEs.
func objectStamp(comps []comp) stamp {
	var s stamp
	for i := range comps {
		if comps[i].name != "VTIMEZONE" {
			s = s.max(comps[i].stamp)
		}
	}
	return s
}

// parseStamp reads a DATE-TIME value such as LAST-MODIFIED; a value
// without "Z" is read as UTC, one that cannot be read is the zero time.
func parseStamp(v []byte) time.Time {
	s := string(v)
	for _, layout := range [...]string{"20060102T150405Z", "20060102T150405", "20060102"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// splitComps returns the top-level components of the VCALENDAR in data
// (a stored object) without copying them. Blank lines are skipped.
func splitComps(data []byte) []comp {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var (
		out   = make([]comp, 0, 2)
		cur   *comp
		start int
		depth int
		pos   int
	)
	for pos < len(data) {
		line, _ := nextLine(data[pos:])
		lineStart := pos
		pos += len(line)
		if blank(line) {
			continue
		}
		name := lineName(line)
		switch {
		case isName(name, "BEGIN"):
			depth++
			if depth == 2 {
				out = append(out, comp{name: strings.ToUpper(string(lineValue(line)))})
				cur = &out[len(out)-1]
				start = lineStart
			}
			continue
		case isName(name, "END"):
			if depth == 2 && cur != nil {
				cur.data = data[start:pos]
				cur = nil
			}
			if depth > 0 {
				depth--
			}
			continue
		}
		if depth != 2 || cur == nil {
			continue
		}
		switch {
		case isName(name, "RECURRENCE-ID"):
			if cur.rid == nil {
				cur.rid = bytes.Clone(unfolded(line))
			}
		case isName(name, "STATUS"):
			cur.cancelled = bytes.EqualFold(lineValue(line), []byte("CANCELLED"))
		case isName(name, "TRANSP"):
			cur.transparent = bytes.EqualFold(lineValue(line), []byte("TRANSPARENT"))
		case isName(name, "SUMMARY"):
			cur.summary = true
		case isName(name, "SEQUENCE"):
			cur.stamp.seq, _ = strconv.Atoi(string(lineValue(line)))
		case isName(name, "LAST-MODIFIED"):
			cur.stamp.lastModified = parseStamp(lineValue(line))
		case isName(name, "DTSTAMP"):
			cur.stamp.dtstamp = parseStamp(lineValue(line))
		case isName(name, "TZID"):
			if cur.name == "VTIMEZONE" && cur.tzid == "" {
				cur.tzid = string(lineValue(line))
			}
		}
	}
	// A component cut off by the end of data is not one.
	if cur != nil {
		out = out[:len(out)-1]
	}
	return out
}

// transform says how the components of one member are rewritten.
type transform struct {
	busy        bool
	busySummary string // the SUMMARY value in busy mode, escaped
	prefix      string // prepended to SUMMARY values, escaped; "" for none
}

// appendObject appends the components of one stored object, transformed,
// to b, and adds the TZIDs they reference to used. It reports whether it
// kept any component. VTIMEZONEs are not written (the caller collects
// them).
//
// Components other than VEVENT, VTODO, VJOURNAL and VFREEBUSY are left
// out in every mode. Busy privacy also leaves out components with
// STATUS:CANCELLED or TRANSP:TRANSPARENT; a cancelled master leaves out
// the whole object. An override left out while the master stays gets an
// EXDATE in the master, so that the master does not bring its instance
// back.
func (t *transform) appendObject(b []byte, comps []comp, used map[string]bool) ([]byte, bool) {
	master := -1
	for i := range comps {
		if comps[i].name != "VTIMEZONE" && comps[i].rid == nil {
			master = i
			break
		}
	}
	drop := make([]bool, len(comps))
	// A feed carries calendar components only: an unknown top-level
	// component (X-..., which a stored object may hold) would make
	// subscribers such as vdirsyncer refuse the whole feed.
	for i := range comps {
		if !feedComponents[comps[i].name] {
			drop[i] = true
		}
	}
	var exdates [][]byte
	if t.busy {
		if master >= 0 && comps[master].cancelled {
			return b, false
		}
		for i := range comps {
			c := &comps[i]
			if c.name == "VTIMEZONE" {
				continue
			}
			if strings.HasPrefix(c.name, "X-") || c.cancelled || c.transparent {
				drop[i] = true
				if c.rid != nil && master >= 0 && !comps[master].transparent {
					if ex := exdateOf(c.rid); ex != nil {
						exdates = append(exdates, ex)
					}
				}
			}
		}
	}
	kept := false
	for i := range comps {
		if comps[i].name == "VTIMEZONE" || drop[i] {
			continue
		}
		var extra [][]byte
		if i == master {
			extra = exdates
		}
		b = t.appendComp(b, &comps[i], extra, used)
		kept = true
	}
	return b, kept
}

// exdateOf turns an unfolded RECURRENCE-ID line into the EXDATE line that
// excludes the same instance: the same value and parameters, less RANGE.
// It returns nil for a line it cannot read.
func exdateOf(rid []byte) []byte {
	_, params, value, ok := splitProp(rid)
	if !ok || len(bytes.TrimSpace(value)) == 0 {
		return nil
	}
	out := []byte("EXDATE")
	eachParam(params, func(name, v []byte) {
		if isName(name, "RANGE") {
			return
		}
		out = append(out, ';')
		out = append(out, name...)
		out = append(out, '=')
		out = append(out, v...)
	})
	out = append(out, ':')
	return append(out, bytes.TrimSpace(value)...)
}

// appendComp appends one calendar component (not a VTIMEZONE),
// transformed, to b. extra are unfolded lines added to the component's
// own properties (busy mode's EXDATEs).
//
// Only the lines a transform concerns are rewritten: SUMMARY (busy text
// or prefix) and, in busy mode, the removed properties and every nested
// component (VALARM, and RFC 9073's VLOCATION and PARTICIPANT, which
// carry the same detail). Every other line is copied as stored (see
// appendLine). In busy mode a component without SUMMARY gets one.
func (t *transform) appendComp(b []byte, c *comp, extra [][]byte, used map[string]bool) []byte {
	data := c.data
	depth := 0
	skip := 0 // >0: inside a nested component left out, this many levels deep
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if blank(line) {
			continue
		}
		name := lineName(line)
		begin, end := isName(name, "BEGIN"), isName(name, "END")
		if skip > 0 {
			switch {
			case begin:
				skip++
			case end:
				skip--
			}
			continue
		}
		switch {
		case begin:
			depth++
			if depth > 1 && t.busy {
				depth--
				skip = 1
				continue
			}
		case end:
			if depth == 1 {
				if t.busy && !c.summary {
					b = ical.FoldLine(b, "SUMMARY:"+t.busySummary)
				}
				for _, x := range extra {
					b = ical.FoldLine(b, string(x))
				}
			}
			depth--
		case depth == 1 && isName(name, "SUMMARY"):
			b = t.appendSummary(b, line)
			continue
		case depth == 1 && t.busy && removedInBusy(name):
			continue
		}
		noteTZIDs(line, used)
		b = appendLine(b, line)
	}
	return b
}

// appendSummary appends a component's SUMMARY line, transformed: the
// busy text, or the prefix before the stored value, whose escaping is
// kept. The parameters (LANGUAGE, ALTREP) are kept with a prefix and
// dropped with the busy text, which they do not describe.
func (t *transform) appendSummary(b, line []byte) []byte {
	switch {
	case t.busy:
		return ical.FoldLine(b, "SUMMARY:"+t.busySummary)
	case t.prefix != "":
		name, params, value, ok := splitProp(unfolded(line))
		if !ok {
			return appendLine(b, line)
		}
		s := make([]byte, 0, len(name)+len(params)+1+len(t.prefix)+len(value))
		s = append(s, name...)
		s = append(s, params...)
		s = append(s, ':')
		s = append(s, t.prefix...)
		s = append(s, value...)
		return ical.FoldLine(b, string(s))
	default:
		return appendLine(b, line)
	}
}

// noteTZIDs adds the TZID parameters of a content line to used.
func noteTZIDs(line []byte, used map[string]bool) {
	if !hasFold(line, "TZID=") {
		return
	}
	_, params, _, ok := splitProp(unfolded(line))
	if !ok {
		return
	}
	eachParam(params, func(name, v []byte) {
		if !isName(name, "TZID") {
			return
		}
		id := normTZID(v)
		if !used[string(id)] {
			used[string(id)] = true
		}
	})
}

// normTZID strips the white space and double quotes around a TZID.
func normTZID(v []byte) []byte {
	return bytes.TrimSpace(bytes.Trim(bytes.TrimSpace(v), `"`))
}

// appendRaw appends the lines of a component as stored (VTIMEZONEs).
func appendRaw(b, data []byte) []byte {
	for len(data) > 0 {
		var line []byte
		line, data = nextLine(data)
		if !blank(line) {
			b = appendLine(b, line)
		}
	}
	return b
}

// feedComponents are the top-level components a feed carries.
var feedComponents = map[string]bool{"VEVENT": true, "VTODO": true, "VJOURNAL": true, "VFREEBUSY": true, "VTIMEZONE": true}
