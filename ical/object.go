package ical

import (
	"fmt"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"
)

// Info describes a calendar object resource, as Inspect found it.
type Info struct {
	UID       string
	Component string // VEVENT, VTODO, VJOURNAL, VFREEBUSY, ...
	// Start and End bound every time the object can match in a time-range
	// query; a zero Start or End is unbounded on that side.
	Start, End time.Time
	Recurring  bool
	// Exact is set for an object that is one VEVENT without recurrence
	// whose times are all in UTC or a known time zone: then [Start, End)
	// is exactly the interval of its only instance (the instant Start when
	// End equals Start), and MatchInterval decides a time-range filter
	// on it without parsing it again.
	Exact    bool
	Warnings []string
}

// Inspect checks the rules of a calendar object resource (RFC 4791 §4.1)
// and reports what the object is. Errors wrap ErrInvalidObject (the data
// is iCalendar but not one object resource) or ErrInvalidData (a date or
// duration that cannot be read).
func (z *Zones) Inspect(cal *goical.Calendar) (Info, error) {
	var info Info
	tz := z.For(cal.Component)
	// RFC 4791 §4.1 forbids METHOD in stored objects. PUBLISH is harmless
	// and in nearly every exported file, so it is accepted; any other
	// method makes the body an iTIP scheduling message, not an event.
	if m := cal.Props.Get(goical.PropMethod); m != nil && !strings.EqualFold(strings.TrimSpace(m.Value), "PUBLISH") {
		return info, fmt.Errorf("%w: METHOD:%s makes this an iTIP scheduling message, not a calendar object (RFC 4791 §4.1); remove the METHOD property", ErrInvalidObject, m.Value)
	}
	masters := 0
	first := true
	var comps []*goical.Component
	floating := false
	for _, c := range cal.Children {
		if c.Name == goical.CompTimezone || strings.HasPrefix(strings.ToUpper(c.Name), "X-") {
			continue // experimental components (RFC 5545 §3.6) are ignored
		}
		if info.Component == "" {
			info.Component = c.Name
		} else if c.Name != info.Component {
			return info, fmt.Errorf("%w: mixes %s and %s components", ErrInvalidObject, info.Component, c.Name)
		}
		uid := c.Props.Get(goical.PropUID)
		if uid == nil || strings.TrimSpace(uid.Value) == "" {
			return info, fmt.Errorf("%w: %s without UID", ErrInvalidObject, c.Name)
		}
		if len(c.Props[goical.PropUID]) > 1 {
			return info, fmt.Errorf("%w: %s with more than one UID property", ErrInvalidObject, c.Name)
		}
		if info.UID == "" {
			info.UID = uid.Value
		} else if uid.Value != info.UID {
			return info, fmt.Errorf("%w: more than one UID (%q and %q)", ErrInvalidObject, info.UID, uid.Value)
		}
		if c.Props.Get(goical.PropRecurrenceID) == nil {
			masters++
			if masters > 1 {
				return info, fmt.Errorf("%w: two %s components with UID %q and no RECURRENCE-ID", ErrInvalidObject, c.Name, info.UID)
			}
		} else if _, _, err := tz.ParseTime(c.Props.Get(goical.PropRecurrenceID)); err != nil {
			return info, err
		}
		comps = append(comps, c)
		s, e, rec, warns, err := tz.span(c)
		if err != nil {
			return info, err
		}
		if rec {
			if p := c.Props.Get(goical.PropDateTimeStart); p != nil {
				if t, _, err := tz.ParseTime(p); err == nil && t.Floating {
					floating = true
				}
			}
		}
		info.Warnings = appendNew(info.Warnings, warns...)
		info.Recurring = info.Recurring || rec
		if first {
			info.Start, info.End = s, e
			first = false
		} else {
			if s.IsZero() || (!info.Start.IsZero() && s.Before(info.Start)) {
				info.Start = s
			}
			if e.IsZero() || (!info.End.IsZero() && e.After(info.End)) {
				info.End = e
			}
		}
	}
	if info.Component == "" {
		return info, fmt.Errorf("%w: no VEVENT, VTODO or VJOURNAL in the VCALENDAR", ErrInvalidObject)
	}
	if !info.Recurring && len(comps) == 1 {
		info.Exact = tz.exact(comps[0], info.Start, info.End)
	}
	if info.Recurring {
		s, e, warns := tz.recurrenceSpan(comps)
		info.Warnings = appendNew(info.Warnings, warns...)
		if floating {
			if !s.IsZero() {
				s = s.Add(-14 * time.Hour)
			}
			if !e.IsZero() {
				e = e.Add(14 * time.Hour)
			}
		}
		if !s.IsZero() && !info.Start.IsZero() && s.Before(info.Start) {
			info.Start = s
		}
		if e.IsZero() {
			info.End = time.Time{}
		} else if !info.End.IsZero() && e.After(info.End) {
			info.End = e
		}
	}
	return info, nil
}

// exact reports whether c, the only component of an object, is a VEVENT
// without recurrence and without floating times (dates included) whose
// RFC 4791 §9.9 interval is exactly [start, end), the span Inspect stored.
func (tz *TZ) exact(c *goical.Component, start, end time.Time) bool {
	if c.Name != goical.CompEvent || c.Props.Get(goical.PropRecurrenceID) != nil || isRecurringMaster(c) {
		return false
	}
	d, err := tz.dates(c)
	if err != nil || d.start == nil || d.start.Floating || d.end != nil && d.end.Floating {
		return false
	}
	s, e, ok := eventInterval(d)
	return ok && s.Equal(start) && e.Equal(end)
}

// Caps of the expansion behind Inspect's span of a recurring object: a
// bigger or slower recurrence set is treated as unbounded.
const (
	spanMaxInstances = 10000
	spanTimeout      = 250 * time.Millisecond
)

// recurrenceSpan bounds the instances of the components of one recurring
// object (as for Expand). A zero end is unbounded: a rule without COUNT or
// UNTIL, or an expansion stopped by its caps. The start is the earliest
// instance start (RDATEs may precede DTSTART).
func (tz *TZ) recurrenceSpan(comps []*goical.Component) (start, end time.Time, warnings []string) {
	unbounded := false
	for _, c := range comps {
		if !isRecurringMaster(c) {
			continue
		}
		d, err := tz.dates(c)
		if err != nil || d.start == nil {
			return time.Time{}, time.Time{}, nil
		}
		loc := d.start.Location()
		if d.start.Date || d.start.Floating {
			loc = time.UTC
		}
		for _, p := range c.Props.Values(goical.PropRecurrenceRule) {
			r, err := parseRuleText(p.Value, *d.start, loc)
			if err == nil && !r.bounded && checkRule(&r.opt) == nil {
				unbounded = true
			}
		}
	}
	opts := ExpandOptions{MaxInstances: spanMaxInstances, MaxSteps: spanMaxInstances * 10, Timeout: spanTimeout}
	if unbounded {
		opts.MaxInstances = 1 // only the first start is needed
	}
	exp, err := tz.Expand(comps, opts)
	if err != nil {
		return time.Time{}, time.Time{}, nil
	}
	for _, in := range exp.Instances {
		if start.IsZero() || in.Start.Before(start) {
			start = in.Start
		}
		if in.End.After(end) {
			end = in.End
		}
	}
	if unbounded || exp.Truncated {
		end = time.Time{}
	}
	return start, end, exp.Warnings
}

func appendNew(list []string, items ...string) []string {
next:
	for _, it := range items {
		for _, have := range list {
			if have == it {
				continue next
			}
		}
		list = append(list, it)
	}
	return list
}

// dates holds the parsed date properties of one component.
type dates struct {
	start, end, due, completed, created *Time
	duration                            *time.Duration
	warnings                            []string
}

func (tz *TZ) dates(c *goical.Component) (dates, error) {
	var d dates
	get := func(name string) (*Time, error) {
		p := c.Props.Get(name)
		if p == nil {
			return nil, nil
		}
		t, w, err := tz.ParseTime(p)
		if err != nil {
			return nil, err
		}
		if w != "" {
			d.warnings = appendNew(d.warnings, w)
		}
		return &t, nil
	}
	var err error
	if d.start, err = get(goical.PropDateTimeStart); err != nil {
		return d, err
	}
	if d.end, err = get(goical.PropDateTimeEnd); err != nil {
		return d, err
	}
	if d.due, err = get(goical.PropDue); err != nil {
		return d, err
	}
	if d.completed, err = get(goical.PropCompleted); err != nil {
		return d, err
	}
	if d.created, err = get(goical.PropCreated); err != nil {
		return d, err
	}
	if p := c.Props.Get(goical.PropDuration); p != nil {
		dur, err := ParseDuration(p.Value)
		if err != nil {
			return d, err
		}
		d.duration = &dur
	}
	return d, nil
}

// span returns conservative bounds of every time c can match, reading c
// as a one-off component; Inspect widens them for recurrence.
func (tz *TZ) span(c *goical.Component) (start, end time.Time, recurring bool, warnings []string, err error) {
	d, err := tz.dates(c)
	if err != nil {
		return start, end, false, nil, err
	}
	warnings = d.warnings
	recurring = c.Props.Get(goical.PropRecurrenceRule) != nil || c.Props.Get(goical.PropRecurrenceDates) != nil
	var ts []time.Time
	add := func(t *Time, allDay bool) {
		if t == nil {
			return
		}
		ts = append(ts, t.Time)
		if allDay && t.Date {
			ts = append(ts, t.AddDate(0, 0, 1))
		}
	}
	switch c.Name {
	case goical.CompToDo:
		if d.start == nil && d.due == nil && d.completed == nil && d.duration == nil && d.created != nil {
			return d.created.Time, time.Time{}, recurring, warnings, nil
		}
		add(d.start, false)
		add(d.due, false)
		add(d.completed, false)
		if d.completed != nil {
			add(d.created, false)
		}
	default:
		add(d.start, true)
		add(d.end, false)
	}
	if d.start != nil && d.duration != nil && *d.duration > 0 {
		ts = append(ts, d.start.Add(*d.duration))
	}
	if len(ts) == 0 {
		return time.Time{}, time.Time{}, recurring, warnings, nil
	}
	start, end = ts[0], ts[0]
	for _, t := range ts[1:] {
		if t.Before(start) {
			start = t
		}
		if t.After(end) {
			end = t
		}
	}
	// Floating times may be evaluated in any zone: widen by the largest
	// UTC offsets in use (-12h .. +14h).
	if d.start != nil && d.start.Floating || d.end != nil && d.end.Floating || d.due != nil && d.due.Floating {
		start = start.Add(-14 * time.Hour)
		if !end.IsZero() {
			end = end.Add(14 * time.Hour)
		}
	}
	return start, end, recurring, warnings, nil
}
