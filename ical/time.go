package ical

import (
	"fmt"
	"strings"
	"sync"
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
type Zones struct {
	cache sync.Map // string -> *time.Location (nil for unknown)
}

// For returns the resolver for one calendar object: cal is its VCALENDAR
// component (nil for none), whose VTIMEZONEs are the last resort for
// TZIDs that calgate does not know by name.
func (z *Zones) For(cal *goical.Component) *TZ {
	tz := &TZ{z: z}
	if cal != nil {
		for _, c := range cal.Children {
			if c.Name != goical.CompTimezone {
				continue
			}
			if p := c.Props.Get(goical.PropTimezoneID); p != nil {
				if tz.own == nil {
					tz.own = make(map[string]*goical.Component)
				}
				tz.own[p.Value] = c
			}
		}
	}
	return tz
}

// TZ resolves the TZIDs of one calendar object. It is not safe for
// concurrent use; make one per object with Zones.For.
type TZ struct {
	z   *Zones
	own map[string]*goical.Component // the object's VTIMEZONEs by TZID
}

// Location resolves tzid, reporting whether it is known.
func (tz *TZ) Location(tzid string) (*time.Location, bool) {
	return tz.z.iana(tzid)
}

// iana resolves an IANA name, remembering the answer.
func (z *Zones) iana(tzid string) (*time.Location, bool) {
	tzid = strings.TrimSpace(strings.Trim(tzid, `"`))
	if v, ok := z.cache.Load(tzid); ok {
		loc, _ := v.(*time.Location)
		return loc, loc != nil
	}
	var loc *time.Location
	if tzid != "" && !strings.EqualFold(tzid, "local") {
		if l, err := time.LoadLocation(tzid); err == nil {
			loc = l
		}
	}
	z.cache.Store(tzid, loc)
	return loc, loc != nil
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
		loc, floating := time.UTC, true
		if tzid := prop.Params.Get(goical.PropTimezoneID); tzid != "" {
			if l, ok := tz.Location(tzid); ok {
				loc, floating = l, false
			} else {
				warning = fmt.Sprintf("unknown TZID %q: treated as floating time", tzid)
			}
		}
		d, err := time.ParseInLocation("20060102T150405", v, loc)
		if err != nil {
			return Time{}, "", fmt.Errorf("%w: %s: bad DATE-TIME %q", ErrInvalidData, prop.Name, v)
		}
		return Time{Time: d, Floating: floating}, warning, nil
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
