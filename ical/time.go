package ical

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goical "github.com/emersion/go-ical"
)

// Time is an iCalendar DATE or DATE-TIME value.
//
// A floating DATE-TIME and a DATE carry their wall-clock fields in UTC
// (RFC 4791 §9.9 lets a server evaluate them in a time zone of its choice
// when the query gives none).
type Time struct {
	time.Time
	Date     bool // a DATE value (all-day)
	Floating bool // no TZID and no trailing Z, or a TZID that did not resolve
}

// Zones is calgate's shared time-zone knowledge: it resolves TZIDs to
// locations and remembers each answer. The zero value is ready to use. It
// is safe for concurrent use.
//
// A TZID is resolved, in this order (DESIGN.md §1), as: an IANA name (any
// case); an IANA name or Windows id behind a vendor prefix
// ("/mozilla.org/20050126_1/Europe/Berlin", "tzone://Microsoft/...");
// a Windows id through CLDR's windowsZones ("W. Europe Standard Time");
// the object's own VTIMEZONE; an Outlook or Windows display name
// ("(UTC-05:00) Eastern Time (US & Canada)"). A display name is a label,
// not an id, so the object's VTIMEZONE of that TZID goes before it.
type Zones struct {
	names  sync.Map     // normalised TZID -> zoneEntry (loc nil for unknown)
	nnames atomic.Int64 // entries in names, at most maxCached
	vtz    sync.Map     // vtzKey -> *time.Location (nil: cannot be evaluated)
	nvtz   atomic.Int64 // entries in vtz, at most maxCached
}

// For returns the resolver for one calendar object: cal is its VCALENDAR
// component (nil for none), whose VTIMEZONEs are used for TZIDs that
// calgate does not know by an exact name. Of two VTIMEZONEs with the same
// TZID, the first counts.
func (z *Zones) For(cal *goical.Component) *TZ {
	tz := &TZ{z: z}
	if cal != nil {
		for _, c := range cal.Children {
			if c.Name != goical.CompTimezone {
				continue
			}
			p := c.Props.Get(goical.PropTimezoneID)
			if p == nil {
				continue
			}
			// TZID is TEXT: "\," in the property is "," in a TZID
			// parameter. Keep the raw form too for sloppy producers.
			for _, name := range []string{normTZID(UnescapeText(p.Value)), normTZID(p.Value)} {
				if name == "" {
					continue
				}
				if tz.own == nil {
					tz.own = make(map[string]*goical.Component)
				}
				if _, dup := tz.own[name]; !dup {
					tz.own[name] = c
				}
			}
		}
	}
	return tz
}

// TZ resolves the TZIDs of one calendar object; make one per object with
// Zones.For. Location and ParseTime are safe for concurrent use.
type TZ struct {
	z   *Zones
	own map[string]*goical.Component // the object's VTIMEZONEs by normalised TZID; read only

	mu   sync.Mutex                // protects locs
	locs map[string]*time.Location // own VTIMEZONEs evaluated (nil: cannot be)
}

// Location resolves tzid, reporting whether it is known. Surrounding white
// space and quotes are ignored. See Zones for the order of resolution.
func (tz *TZ) Location(tzid string) (*time.Location, bool) {
	name := normTZID(tzid)
	if name == "" {
		return nil, false
	}
	e := tz.z.lookup(name)
	if e.loc != nil && !e.fuzzy {
		return e.loc, true
	}
	if c := tz.ownComponent(name); c != nil {
		if loc := tz.ownLocation(name, c); loc != nil {
			return loc, true
		}
	}
	return e.loc, e.loc != nil
}

// ParseTime parses the value of a date or date-time property such as
// DTSTART. A TZID that cannot be resolved gives a floating time and a
// non-empty warning; a value that cannot be parsed is an error wrapping
// ErrInvalidData.
func (tz *TZ) ParseTime(prop *goical.Prop) (t Time, warning string, err error) {
	return tz.parseValue(prop, prop.Value)
}

// parseValue parses one date or date-time value v of prop (prop gives the
// VALUE and TZID parameters). A PERIOD's start is read.
func (tz *TZ) parseValue(prop *goical.Prop, v string) (t Time, warning string, err error) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '/'); i >= 0 { // PERIOD: start/end or start/duration
		v = v[:i]
	}
	isDate := strings.EqualFold(prop.Params.Get(goical.ParamValue), "DATE") || len(v) == 8
	switch {
	case isDate:
		d, err := time.Parse("20060102", v)
		if err != nil || len(v) != 8 {
			return Time{}, "", fmt.Errorf("%w: %s: bad DATE %q", ErrInvalidData, prop.Name, v)
		}
		return Time{Time: d, Date: true, Floating: true}, "", nil
	case len(v) == 16 && (v[15] == 'Z' || v[15] == 'z'):
		d, err := time.Parse("20060102T150405", v[:15])
		if err != nil {
			return Time{}, "", fmt.Errorf("%w: %s: bad DATE-TIME %q", ErrInvalidData, prop.Name, v)
		}
		return Time{Time: d}, "", nil
	case len(v) == 15:
		d, err := time.Parse("20060102T150405", v)
		if err != nil {
			return Time{}, "", fmt.Errorf("%w: %s: bad DATE-TIME %q", ErrInvalidData, prop.Name, v)
		}
		if tzid := prop.Params.Get(goical.ParamTimezoneID); tzid != "" {
			if loc, ok := tz.Location(tzid); ok {
				y, mo, day := d.Date()
				h, mi, sec := d.Clock()
				return Time{Time: wallToUTC(y, mo, day, h, mi, sec, loc)}, "", nil
			}
			warning = fmt.Sprintf("unknown TZID %q: treated as floating time", tzid)
		}
		return Time{Time: d, Floating: true}, warning, nil
	}
	return Time{}, "", fmt.Errorf("%w: %s: bad date or date-time %q", ErrInvalidData, prop.Name, v)
}

// ParseDuration parses a DURATION value (RFC 5545 §3.3.6), rejecting
// values that overflow.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("%w: bad DURATION %q", ErrInvalidData, s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) < 2 || (s[0] != 'P' && s[0] != 'p') {
		return 0, bad
	}
	s = s[1:]
	var total time.Duration
	inTime, n, digits, units := false, int64(0), 0, 0
	for _, c := range strings.ToUpper(s) {
		switch {
		case c >= '0' && c <= '9':
			if n > (1<<62)/10 {
				return 0, bad
			}
			n = n*10 + int64(c-'0')
			digits++
			continue
		case c == 'T':
			if inTime || digits != 0 {
				return 0, bad
			}
			inTime = true
			continue
		}
		var unit time.Duration
		switch {
		case c == 'W' && !inTime:
			unit = 7 * 24 * time.Hour
		case c == 'D' && !inTime:
			unit = 24 * time.Hour
		case c == 'H' && inTime:
			unit = time.Hour
		case c == 'M' && inTime:
			unit = time.Minute
		case c == 'S' && inTime:
			unit = time.Second
		default:
			return 0, bad
		}
		if digits == 0 || n > int64((1<<62)/unit) {
			return 0, bad
		}
		total += time.Duration(n) * unit
		if total > 1<<62 {
			return 0, bad
		}
		n, digits = 0, 0
		units++
	}
	if digits != 0 || units == 0 {
		return 0, bad
	}
	if neg {
		total = -total
	}
	return total, nil
}
