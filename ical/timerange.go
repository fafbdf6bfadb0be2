package ical

import (
	"strconv"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"
)

// MatchTimeRange reports whether component c overlaps the time range
// [start, end) by the rules of RFC 4791 §9.9. A zero start or end is
// unbounded. Floating times and dates are read as UTC wall clock.
//
// A master with RRULE or RDATE is expanded on its own (MatchInstances with
// c alone): it matches if any of its own instances does. It cannot know
// about sibling overrides, so instances that an override replaces still
// count; a caller that has the whole UID should use MatchInstances. An
// override (a component with RECURRENCE-ID) is matched on its own dates.
// VFREEBUSY matches on DTSTART/DTEND, else on its FREEBUSY periods.
func (tz *TZ) MatchTimeRange(c *goical.Component, start, end time.Time) (bool, error) {
	if isRecurringMaster(c) {
		return tz.MatchInstances([]*goical.Component{c}, start, end)
	}
	d, err := tz.dates(c)
	if err != nil {
		return false, err
	}
	if c.Name == goical.CompFreeBusy {
		return tz.matchFreeBusy(c, d, start, end), nil
	}
	return matchDates(c.Name, d, start, end), nil
}

func isRecurringMaster(c *goical.Component) bool {
	return c.Props.Get(goical.PropRecurrenceID) == nil &&
		(c.Props.Get(goical.PropRecurrenceRule) != nil || c.Props.Get(goical.PropRecurrenceDates) != nil)
}

// bounds gives the comparisons of RFC 4791 §9.9 for [start, end), where a
// zero start is -inf and a zero end is +inf.
type bounds struct{ start, end time.Time }

func (b bounds) startLT(t time.Time) bool { return b.start.IsZero() || b.start.Before(t) }
func (b bounds) startLE(t time.Time) bool { return b.start.IsZero() || !b.start.After(t) }
func (b bounds) endGT(t time.Time) bool   { return b.end.IsZero() || b.end.After(t) }
func (b bounds) endGE(t time.Time) bool   { return b.end.IsZero() || !b.end.Before(t) }

// eventInterval returns the interval a VEVENT with dates d occupies by
// the rules of RFC 4791 §9.9: [s, e) with e after s, or the instant s
// (e equal to s) for an event of zero length. ok is false without DTSTART.
func eventInterval(d dates) (s, e time.Time, ok bool) {
	if d.start == nil {
		return s, e, false
	}
	s = d.start.Time
	switch {
	case d.end != nil:
		if e = d.end.Time; !e.After(s) { // zero length or DTEND before DTSTART
			e = s
		}
	case d.duration != nil && *d.duration > 0:
		e = s.Add(*d.duration)
	case d.duration != nil:
		e = s
	case d.start.Date:
		e = s.AddDate(0, 0, 1)
	default:
		e = s
	}
	return s, e, true
}

// MatchInterval reports whether the interval [s, e) of one instance
// (the instant s when e equals s) overlaps the time range [start, end)
// by the rules of RFC 4791 §9.9 for VEVENT. A zero start or end is
// unbounded. For an object Inspect found Exact, Info.Start and Info.End
// are that interval, and MatchInterval decides a time-range filter on
// the object without parsing it.
func MatchInterval(s, e, start, end time.Time) bool {
	b := bounds{start, end}
	if !e.After(s) {
		return b.startLE(s) && b.endGT(s)
	}
	return b.startLT(e) && b.endGT(s)
}

// matchDates applies the table of RFC 4791 §9.9 for a component named name
// with dates d.
func matchDates(name string, d dates, start, end time.Time) bool {
	b := bounds{start, end}
	switch name {
	case goical.CompEvent:
		s, e, ok := eventInterval(d)
		return ok && MatchInterval(s, e, start, end)
	case goical.CompToDo:
		switch {
		case d.start != nil && d.duration != nil:
			s := d.start.Time
			e := s.Add(*d.duration)
			return b.startLE(e) && (b.endGT(s) || b.endGE(e))
		case d.start != nil && d.due != nil:
			s, due := d.start.Time, d.due.Time
			return (b.startLT(due) || b.startLE(s)) && (b.endGT(s) || b.endGE(due))
		case d.start != nil:
			return b.startLE(d.start.Time) && b.endGT(d.start.Time)
		case d.due != nil:
			return b.startLT(d.due.Time) && b.endGE(d.due.Time)
		case d.completed != nil && d.created != nil:
			cr, co := d.created.Time, d.completed.Time
			return (b.startLE(cr) || b.startLE(co)) && (b.endGE(cr) || b.endGE(co))
		case d.completed != nil:
			return b.startLE(d.completed.Time) && b.endGE(d.completed.Time)
		case d.created != nil:
			return b.endGT(d.created.Time)
		default:
			return true
		}
	case goical.CompJournal:
		if d.start == nil {
			return false
		}
		s := d.start.Time
		if d.start.Date {
			return b.startLT(s.AddDate(0, 0, 1)) && b.endGT(s)
		}
		return b.startLE(s) && b.endGT(s)
	}
	return false
}

// matchFreeBusy applies RFC 4791 §9.9 to a VFREEBUSY: with DTSTART and
// DTEND, (start <= DTEND) AND (end > DTSTART); else any FREEBUSY period
// overlapping; else FALSE. FREEBUSY values that cannot be read are skipped.
func (tz *TZ) matchFreeBusy(c *goical.Component, d dates, start, end time.Time) bool {
	b := bounds{start, end}
	if d.start != nil && d.end != nil {
		return b.startLE(d.end.Time) && b.endGT(d.start.Time)
	}
	e := &expander{tz: tz}
	for _, v := range e.values(c, goical.PropFreeBusy, 0) {
		if s := v.start; v.dur > 0 {
			if b.startLT(s.Add(v.dur)) && b.endGT(s) {
				return true
			}
		} else if b.startLE(s) && b.endGT(s) {
			return true
		}
	}
	return false
}

// MatchInstances reports whether any instance of a recurring component
// overlaps [start, end) by the rules of RFC 4791 §9.9 (a zero bound is
// unbounded). comps are all components of one UID and one type, as for
// Expand; overrides replace the instances they name. Each instance is
// matched with the row of the §9.9 table for its type: a VEVENT instance
// overlaps (a zero-length one at start matches, an all-day one covers its
// day); a VTODO instance keeps its DTSTART, DUE or DURATION, moved with the
// instance; a VJOURNAL instance is its DTSTART. Cancelled instances count
// (RFC 4791 does not exclude them from calendar-query).
//
// Components that do not recur (no master with RRULE or RDATE, or a master
// without DTSTART) are matched one by one with MatchTimeRange. When the
// expansion is truncated by its caps before an instance matched, the
// answer is true: a time range is a filter, and a false positive is better
// than a lost event. Errors wrap ErrInvalidData.
func (tz *TZ) MatchInstances(comps []*goical.Component, start, end time.Time) (bool, error) {
	var master *goical.Component
	for _, c := range comps {
		if c != nil && isRecurringMaster(c) {
			master = c
		}
	}
	if master == nil || master.Props.Get(goical.PropDateTimeStart) == nil {
		for _, c := range comps {
			if c == nil {
				continue
			}
			var ok bool
			var err error
			if isRecurringMaster(c) {
				var d dates
				if d, err = tz.dates(c); err == nil {
					ok = matchDates(c.Name, d, start, end)
				}
			} else {
				ok, err = tz.MatchTimeRange(c, start, end)
			}
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	// Widen the window: VTODO rows include their end, and the exact test
	// below decides.
	exp, err := tz.Expand(comps, paddedWindow(start, end, 48*time.Hour))
	if err != nil {
		return false, err
	}
	cache := make(map[*goical.Component]dates)
	for _, in := range exp.Instances {
		d, ok := cache[in.Comp]
		if !ok {
			if d, err = tz.dates(in.Comp); err != nil {
				return false, err
			}
			cache[in.Comp] = d
		}
		if matchDates(in.Comp.Name, instanceDates(d, in), start, end) {
			return true, nil
		}
	}
	return exp.Truncated, nil
}

// instanceDates returns the dates of component dates d moved to instance
// in.
func instanceDates(d dates, in Instance) dates {
	st := &Time{Time: in.Start, Date: in.Date}
	out := dates{start: st, completed: d.completed, created: d.created}
	dur := in.End.Sub(in.Start)
	switch {
	case d.due != nil:
		out.due = &Time{Time: in.End, Date: in.Date}
	case d.duration != nil:
		out.duration = &dur
	case d.end != nil || dur > 0:
		out.end = &Time{Time: in.End, Date: in.Date}
	}
	return out
}

// MatchAlarm reports whether a VALARM of any instance of comps (one UID,
// as for Expand) triggers in [start, end), by RFC 4791 §9.9:
// (start <= trigger-time) AND (end > trigger-time), for every trigger
// including REPEAT repetitions. Relative triggers are counted from the
// instance's start, or its end with RELATED=END; absolute triggers are
// used as given. Triggers that cannot be read are skipped. Errors wrap
// ErrInvalidData.
func (tz *TZ) MatchAlarm(comps []*goical.Component, start, end time.Time) (bool, error) {
	b := bounds{start, end}
	hit := func(t time.Time) bool { return b.startLE(t) && b.endGT(t) }
	type trig struct {
		off     time.Duration
		related bool // relative to the end
		repeat  int
		every   time.Duration
	}
	triggers := make(map[*goical.Component][]trig)
	var pad time.Duration
	for _, c := range comps {
		if c == nil {
			continue
		}
		for _, a := range c.Children {
			if a.Name != goical.CompAlarm {
				continue
			}
			p := a.Props.Get(goical.PropTrigger)
			if p == nil {
				continue
			}
			var t trig
			if rp := a.Props.Get(goical.PropRepeat); rp != nil {
				if n, err := strconv.Atoi(strings.TrimSpace(rp.Value)); err == nil && n > 0 {
					if dp := a.Props.Get(goical.PropDuration); dp != nil {
						if every, err := ParseDuration(dp.Value); err == nil && every > 0 {
							t.repeat, t.every = min(n, 1000), every
						}
					}
				}
			}
			if strings.EqualFold(p.Params.Get(goical.ParamValue), "DATE-TIME") || !strings.ContainsAny(p.Value, "Pp") {
				at, _, err := tz.ParseTime(p)
				if err != nil {
					continue
				}
				for k := 0; k <= t.repeat; k++ {
					if hit(at.Add(time.Duration(k) * t.every)) {
						return true, nil
					}
				}
				continue
			}
			off, err := ParseDuration(p.Value)
			if err != nil {
				continue
			}
			t.off = off
			t.related = strings.EqualFold(p.Params.Get(goical.ParamRelated), "END")
			triggers[c] = append(triggers[c], t)
			pad = max(pad, off, -off, off+time.Duration(t.repeat)*t.every)
		}
	}
	if len(triggers) == 0 {
		return false, nil
	}
	exp, err := tz.Expand(comps, paddedWindow(start, end, pad+time.Second))
	if err != nil {
		return false, err
	}
	for _, in := range exp.Instances {
		for _, t := range triggers[in.Comp] {
			base := in.Start
			if t.related {
				base = in.End
			}
			for k := 0; k <= t.repeat; k++ {
				if hit(base.Add(t.off + time.Duration(k)*t.every)) {
					return true, nil
				}
			}
		}
	}
	return exp.Truncated, nil
}

// paddedWindow is the expansion window [start-pad, end+pad), keeping an
// unbounded side unbounded.
func paddedWindow(start, end time.Time, pad time.Duration) ExpandOptions {
	var opts ExpandOptions
	if !start.IsZero() {
		opts.Start = start.Add(-pad)
	}
	if !end.IsZero() {
		opts.End = end.Add(pad)
	}
	return opts
}
