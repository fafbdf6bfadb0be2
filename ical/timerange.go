package ical

import (
	"time"

	goical "github.com/emersion/go-ical"
)

// MatchTimeRange reports whether component c overlaps the time range
// [start, end) by the rules of RFC 4791 §9.9. A zero start or end is
// unbounded. Floating times and dates are read as UTC wall clock.
//
// Recurring components are matched on their conservative span (first start,
// unbounded end) until instances are expanded.
func (tz *TZ) MatchTimeRange(c *goical.Component, start, end time.Time) (bool, error) {
	d, err := tz.dates(c)
	if err != nil {
		return false, err
	}
	// lt(a, b): a < b, where a zero start is -inf; gt(a, b): a > b, where a
	// zero end is +inf. le/ge likewise.
	startLT := func(t time.Time) bool { return start.IsZero() || start.Before(t) }
	startLE := func(t time.Time) bool { return start.IsZero() || !start.After(t) }
	endGT := func(t time.Time) bool { return end.IsZero() || end.After(t) }
	endGE := func(t time.Time) bool { return end.IsZero() || !end.Before(t) }

	if c.Props.Get(goical.PropRecurrenceRule) != nil || c.Props.Get(goical.PropRecurrenceDates) != nil {
		s, _, _, _, err := tz.span(c)
		if err != nil {
			return false, err
		}
		return s.IsZero() || endGT(s), nil
	}

	switch c.Name {
	case goical.CompEvent:
		if d.start == nil {
			return false, nil
		}
		s := d.start.Time
		switch {
		case d.end != nil:
			e := d.end.Time
			if !e.After(s) { // zero length or DTEND before DTSTART
				return startLE(s) && endGT(s), nil
			}
			return startLT(e) && endGT(s), nil
		case d.duration != nil && *d.duration > 0:
			return startLT(s.Add(*d.duration)) && endGT(s), nil
		case d.duration != nil:
			return startLE(s) && endGT(s), nil
		case d.start.Date:
			return startLT(s.AddDate(0, 0, 1)) && endGT(s), nil
		default:
			return startLE(s) && endGT(s), nil
		}
	case goical.CompToDo:
		switch {
		case d.start != nil && d.duration != nil:
			s := d.start.Time
			e := s.Add(*d.duration)
			return startLE(e) && (endGT(s) || endGE(e)), nil
		case d.start != nil && d.due != nil:
			s, due := d.start.Time, d.due.Time
			return (startLT(due) || startLE(s)) && (endGT(s) || endGE(due)), nil
		case d.start != nil:
			return startLE(d.start.Time) && endGT(d.start.Time), nil
		case d.due != nil:
			return startLT(d.due.Time) && endGE(d.due.Time), nil
		case d.completed != nil && d.created != nil:
			cr, co := d.created.Time, d.completed.Time
			return (startLE(cr) || startLE(co)) && (endGE(cr) || endGE(co)), nil
		case d.completed != nil:
			return startLE(d.completed.Time) && endGE(d.completed.Time), nil
		case d.created != nil:
			return endGT(d.created.Time), nil
		default:
			return true, nil
		}
	case goical.CompJournal:
		if d.start == nil {
			return false, nil
		}
		s := d.start.Time
		if d.start.Date {
			return startLT(s.AddDate(0, 0, 1)) && endGT(s), nil
		}
		return startLE(s) && endGT(s), nil
	}
	return false, nil
}
