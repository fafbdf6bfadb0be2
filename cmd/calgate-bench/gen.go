package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	_ "time/tzdata" // Europe/Berlin must resolve on machines without zoneinfo
)

// refDate is the fixed reference date: events start within a year of it
// (within N/20,000 years above 10,000 events), and the measured windows
// sit after it.
var refDate = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// The measured windows, in UTC. Both contain the European DST switch of
// 29 March 2026, so a server that gets Europe/Berlin wrong answers wrongly.
var (
	monthStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	monthEnd   = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	weekStart  = time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)
	weekEnd    = time.Date(2026, 3, 30, 0, 0, 0, 0, time.UTC)
)

// kind is the shape of a generated event.
type kind int

const (
	oneOff   kind = iota // a single VEVENT
	weekly               // RRULE:FREQ=WEEKLY;COUNT=n
	override             // weekly, one EXDATE, one instance moved by RECURRENCE-ID
)

// The instance indexes that the override kind excludes and moves.
const (
	exdateIndex   = 1
	overrideIndex = 3
	overrideShift = 2 * time.Hour
)

// event is one generated calendar object. Start is a wall-clock time in
// Loc; recurrences repeat the wall-clock time, as RFC 5545 says.
type event struct {
	Name  string // resource name in the calendar: UID + ".ics"
	UID   string
	Index int // position in the generated list
	Kind  kind
	Loc   *time.Location // time.UTC or Europe/Berlin
	Start time.Time
	Dur   time.Duration
	Count int // instances of a recurring event (before EXDATE)
}

// span is one instance, [Start, End) in absolute time.
type span struct{ Start, End time.Time }

// instances lists the event's instances with the independent rule
// evaluator of the tool: weekly steps of the wall-clock time in the event's
// zone, minus EXDATE, with the overridden instance moved.
func (e *event) instances() []span {
	if e.Kind == oneOff {
		return []span{{e.Start, e.Start.Add(e.Dur)}}
	}
	out := make([]span, 0, e.Count)
	y, m, d := e.Start.Date()
	h, mi, _ := e.Start.Clock()
	for k := range e.Count {
		s := time.Date(y, m, d+7*k, h, mi, 0, 0, e.Loc)
		if e.Kind == override {
			if k == exdateIndex {
				continue
			}
			if k == overrideIndex {
				s = s.Add(overrideShift)
			}
		}
		out = append(out, span{s, s.Add(e.Dur)})
	}
	return out
}

// overlapping counts the instances that overlap [start, end) by the rule of
// RFC 4791 section 9.9 (start < end of range and end > start of range).
func (e *event) overlapping(start, end time.Time) int {
	n := 0
	for _, s := range e.instances() {
		if s.Start.Before(end) && s.End.After(start) {
			n++
		}
	}
	return n
}

// generate makes n events, the same for the same seed.
func generate(seed uint64, n int) ([]event, error) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		return nil, fmt.Errorf("bench: load Europe/Berlin: %w", err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x63616c67))
	// Up to 10,000 events lie within a year of refDate; a larger
	// calendar has a longer history, not busier months: the span grows
	// with N so that a month holds about as many events at any size.
	spanDays := 730 * max(1, (n+9_999)/10_000)
	evs := make([]event, n)
	for i := range evs {
		e := &evs[i]
		// The name is the UID plus ".ics": servers that split an uploaded
		// whole calendar into objects name them that way (see bulkBody).
		e.UID = fmt.Sprintf("calgate-bench-%d-%05d", seed, i)
		e.Name = e.UID + ".ics"
		e.Index = i
		switch r := rng.IntN(100); {
		case r < 80:
			e.Kind = oneOff
		case r < 95:
			e.Kind = weekly
			e.Count = 5 + rng.IntN(26)
		default:
			e.Kind = override
			e.Count = 8 + rng.IntN(23)
		}
		e.Loc = time.UTC
		if rng.IntN(3) == 0 {
			e.Loc = berlin
		}
		// Hours 7..20 keep every instance (with a 2h move and a 2h
		// duration) clear of the 02:00-03:00 DST gap.
		day := refDate.AddDate(0, 0, -spanDays/2+rng.IntN(spanDays))
		e.Start = time.Date(day.Year(), day.Month(), day.Day(), 7+rng.IntN(14), 15*rng.IntN(4), 0, 0, e.Loc)
		e.Dur = time.Duration(1+rng.IntN(4)) * 30 * time.Minute
	}
	return evs, nil
}

// berlinTZ is the VTIMEZONE sent with events in Europe/Berlin.
const berlinTZ = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n" +
	"BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\n" +
	"DTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n" +
	"BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n" +
	"DTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n" +
	"END:VTIMEZONE\r\n"

// icsTime formats t for a property: "NAME:...Z" in UTC, or
// "NAME;TZID=Europe/Berlin:..." as a local time.
func icsTime(name string, t time.Time) string {
	if t.Location() == time.UTC {
		return name + ":" + t.Format("20060102T150405Z")
	}
	return name + ";TZID=" + t.Location().String() + ":" + t.Format("20060102T150405")
}

// body renders the event as an iCalendar object of about 1 KB. rev changes
// SEQUENCE and the description only, never the times, so every expected
// count stays valid after an update.
func (e *event) body(rev int) []byte {
	var b strings.Builder
	b.WriteString(calendarHead)
	if e.Loc != time.UTC {
		b.WriteString(berlinTZ)
	}
	e.writeComponents(&b, rev)
	b.WriteString("END:VCALENDAR\r\n")
	return []byte(b.String())
}

// calendarHead opens every VCALENDAR the tool sends.
const calendarHead = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//calgate-bench//EN\r\n"

// bulkBody renders evs at revision 0 as one VCALENDAR, for servers that
// take a whole calendar in one PUT of the collection and store one object
// per UID.
func bulkBody(evs []event) []byte {
	var b strings.Builder
	b.Grow(len(evs) * 1200)
	b.WriteString(calendarHead)
	for i := range evs {
		if evs[i].Loc != time.UTC {
			b.WriteString(berlinTZ)
			break
		}
	}
	for i := range evs {
		evs[i].writeComponents(&b, 0)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return []byte(b.String())
}

// changeMarker is text of the DESCRIPTION of revision rev of the event;
// it is unique to that revision, so an answer that holds it (unfolded)
// holds that revision.
func (e *event) changeMarker(rev int) string {
	return fmt.Sprintf("Load test event %s revision %d. ", e.Name, rev)
}

// writeComponents writes the VEVENT components of revision rev of the
// event: the master and, for the override kind, the moved instance.
func (e *event) writeComponents(b *strings.Builder, rev int) {
	line := func(s string) {
		// Fold at 75 octets (RFC 5545 section 3.1); all text is ASCII.
		for len(s) > 75 {
			b.WriteString(s[:75])
			b.WriteString("\r\n ")
			s = s[75:]
		}
		b.WriteString(s)
		b.WriteString("\r\n")
	}
	vevent := func(start time.Time, recurrenceID *time.Time, summary string) {
		line("BEGIN:VEVENT")
		line("UID:" + e.UID)
		line("DTSTAMP:20260101T000000Z")
		line(fmt.Sprintf("SEQUENCE:%d", rev))
		if recurrenceID != nil {
			line(icsTime("RECURRENCE-ID", *recurrenceID))
		}
		line(icsTime("DTSTART", start))
		line(icsTime("DTEND", start.Add(e.Dur)))
		line("SUMMARY:" + summary)
		line(fmt.Sprintf("LOCATION:Room %05d", e.Index))
		line("DESCRIPTION:" + e.changeMarker(rev) + strings.Repeat("Lorem ipsum dolor sit amet\\, consectetur adipiscing elit. ", 10))
		if recurrenceID == nil && e.Kind != oneOff {
			line(fmt.Sprintf("RRULE:FREQ=WEEKLY;COUNT=%d", e.Count))
			if e.Kind == override {
				y, m, d := e.Start.Date()
				h, mi, _ := e.Start.Clock()
				line(icsTime("EXDATE", time.Date(y, m, d+7*exdateIndex, h, mi, 0, 0, e.Loc)))
			}
		}
		line("END:VEVENT")
	}
	vevent(e.Start, nil, "Bench event "+e.Name)
	if e.Kind == override {
		y, m, d := e.Start.Date()
		h, mi, _ := e.Start.Clock()
		rid := time.Date(y, m, d+7*overrideIndex, h, mi, 0, 0, e.Loc)
		vevent(rid.Add(overrideShift), &rid, "Moved bench event "+e.Name)
	}
}

// icsStats counts the VEVENT components of an iCalendar stream and the
// distinct UIDs among them. It unfolds lines and tracks nesting; it is not
// a validating parser. It reads large answers (a whole collection) in one
// pass without copying them.
func icsStats(data []byte) (vevents int, uids map[string]bool) {
	uids = make(map[string]bool)
	var stack []string
	eachLine(data, func(l []byte) {
		switch {
		case hasPrefixFold(l, "BEGIN:"):
			stack = append(stack, strings.ToUpper(strings.TrimSpace(string(l[6:]))))
			if stack[len(stack)-1] == "VEVENT" {
				vevents++
			}
		case hasPrefixFold(l, "END:"):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case len(stack) > 0 && stack[len(stack)-1] == "VEVENT" && hasPrefixFold(l, "UID") && len(l) > 3 && (l[3] == ':' || l[3] == ';'):
			if i := bytes.IndexByte(l, ':'); i >= 0 {
				uids[strings.TrimSpace(string(l[i+1:]))] = true
			}
		}
	})
	return vevents, uids
}

// eachLine calls fn with every unfolded content line of data (RFC 5545
// section 3.1), without its line end. A folded line is joined into a new
// slice; others are slices of data.
func eachLine(data []byte, fn func(line []byte)) {
	var joined []byte
	for len(data) > 0 {
		end := bytes.IndexByte(data, '\n')
		if end < 0 {
			end = len(data) - 1
		}
		line := bytes.TrimSuffix(data[:end+1], []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		data = data[end+1:]
		if len(data) > 0 && (data[0] == ' ' || data[0] == '\t') {
			joined = append(joined[:0], line...)
			for len(data) > 0 && (data[0] == ' ' || data[0] == '\t') {
				end := bytes.IndexByte(data, '\n')
				if end < 0 {
					end = len(data) - 1
				}
				cont := bytes.TrimSuffix(data[1:end+1], []byte("\n"))
				joined = append(joined, bytes.TrimSuffix(cont, []byte("\r"))...)
				data = data[end+1:]
			}
			line = joined
		}
		fn(line)
	}
}

// hasPrefixFold reports whether b starts with prefix, ignoring ASCII case.
func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// containsUnfolded reports whether any unfolded content line of data
// contains s.
func containsUnfolded(data []byte, s string) bool {
	found := false
	eachLine(data, func(l []byte) {
		if !found && bytes.Contains(l, []byte(s)) {
			found = true
		}
	})
	return found
}
