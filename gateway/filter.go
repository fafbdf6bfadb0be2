package gateway

import (
	"errors"
	"net/http"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// The CALDAV:filter of calendar-query (RFC 4791 §9.7).
type filter struct {
	Comp *compFilter `xml:"urn:ietf:params:xml:ns:caldav comp-filter"`
}

type compFilter struct {
	Name         string       `xml:"name,attr"`
	IsNotDefined *struct{}    `xml:"urn:ietf:params:xml:ns:caldav is-not-defined"`
	TimeRange    *timeRangeEl `xml:"urn:ietf:params:xml:ns:caldav time-range"`
	Props        []propFilter `xml:"urn:ietf:params:xml:ns:caldav prop-filter"`
	Comps        []compFilter `xml:"urn:ietf:params:xml:ns:caldav comp-filter"`
	start, end   time.Time    // parsed TimeRange
}

type propFilter struct {
	Name         string        `xml:"name,attr"`
	IsNotDefined *struct{}     `xml:"urn:ietf:params:xml:ns:caldav is-not-defined"`
	TimeRange    *timeRangeEl  `xml:"urn:ietf:params:xml:ns:caldav time-range"`
	TextMatch    *textMatch    `xml:"urn:ietf:params:xml:ns:caldav text-match"`
	Params       []paramFilter `xml:"urn:ietf:params:xml:ns:caldav param-filter"`
	start, end   time.Time
}

type paramFilter struct {
	Name         string     `xml:"name,attr"`
	IsNotDefined *struct{}  `xml:"urn:ietf:params:xml:ns:caldav is-not-defined"`
	TextMatch    *textMatch `xml:"urn:ietf:params:xml:ns:caldav text-match"`
}

type timeRangeEl struct {
	Start string `xml:"start,attr"`
	End   string `xml:"end,attr"`
}

type textMatch struct {
	Collation string `xml:"collation,attr"`
	Negate    string `xml:"negate-condition,attr"`
	Value     string `xml:",chardata"`
}

// compiledFilter is a validated filter.
type compiledFilter struct {
	top *compFilter
	// floating is the zone floating times and dates are evaluated in
	// (RFC 4791 §9.9: the query's CALDAV:timezone, else the calendar's
	// calendar-timezone); nil means UTC.
	floating *time.Location
	// simple is the only comp-filter under VCALENDAR when the filter is
	// that comp-filter with at most a time-range in it, else nil.
	simple *compFilter
}

func invalidFilter(format string, args ...any) error {
	return precond(http.StatusForbidden, caldav("valid-filter"), format, args...)
}

// compileFilter validates f and parses its time ranges.
func compileFilter(f *filter) (*compiledFilter, error) {
	if f.Comp == nil || !strings.EqualFold(f.Comp.Name, "VCALENDAR") {
		return nil, invalidFilter("the filter must start with comp-filter name=\"VCALENDAR\"")
	}
	if f.Comp.TimeRange != nil {
		return nil, invalidFilter("time-range is not allowed on VCALENDAR")
	}
	if err := compileComp(f.Comp, 0); err != nil {
		return nil, err
	}
	q := &compiledFilter{top: f.Comp}
	if top := f.Comp; len(top.Props) == 0 && len(top.Comps) == 1 {
		c := &top.Comps[0]
		switch c.Name {
		case goical.CompEvent, goical.CompToDo, goical.CompJournal, goical.CompFreeBusy:
			// Inspect lets an object hold one of these types only.
		default:
			c = nil
		}
		if c != nil && c.IsNotDefined == nil && len(c.Props) == 0 && len(c.Comps) == 0 {
			q.simple = c
		}
	}
	return q, nil
}

func compileComp(c *compFilter, depth int) error {
	if depth > 8 {
		return invalidFilter("comp-filter nested too deeply")
	}
	if strings.TrimSpace(c.Name) == "" {
		return invalidFilter("comp-filter without name")
	}
	c.Name = strings.ToUpper(strings.TrimSpace(c.Name))
	if c.TimeRange != nil {
		s, e, err := parseTimeRange(c.TimeRange)
		if err != nil {
			return err
		}
		c.start, c.end = s, e
	}
	for i := range c.Props {
		p := &c.Props[i]
		if strings.TrimSpace(p.Name) == "" {
			return invalidFilter("prop-filter without name")
		}
		p.Name = strings.ToUpper(strings.TrimSpace(p.Name))
		if p.TimeRange != nil {
			s, e, err := parseTimeRange(p.TimeRange)
			if err != nil {
				return err
			}
			p.start, p.end = s, e
		}
		if err := checkCollation(p.TextMatch); err != nil {
			return err
		}
		for j := range p.Params {
			pf := &p.Params[j]
			if strings.TrimSpace(pf.Name) == "" {
				return invalidFilter("param-filter without name")
			}
			pf.Name = strings.ToUpper(strings.TrimSpace(pf.Name))
			if err := checkCollation(pf.TextMatch); err != nil {
				return err
			}
		}
	}
	for i := range c.Comps {
		if err := compileComp(&c.Comps[i], depth+1); err != nil {
			return err
		}
	}
	return nil
}

func checkCollation(tm *textMatch) error {
	if tm == nil {
		return nil
	}
	switch tm.Collation {
	case "", "i;ascii-casemap", "i;octet":
	default:
		return precond(http.StatusForbidden, caldav("supported-collation"), "collation %q is not supported (use i;ascii-casemap or i;octet)", tm.Collation)
	}
	switch tm.Negate {
	case "", "yes", "no":
	default:
		return invalidFilter("negate-condition must be yes or no")
	}
	return nil
}

// parseTimeRange reads the UTC start and end attributes of a time-range;
// either may be missing (unbounded) but not both (RFC 4791 §9.9).
func parseTimeRange(tr *timeRangeEl) (time.Time, time.Time, error) {
	var s, e time.Time
	parse := func(v string) (time.Time, error) {
		v = strings.TrimSpace(v)
		t, err := time.Parse("20060102T150405Z", v)
		if err != nil {
			return t, invalidFilter("time-range value %q must be a UTC date-time such as 20060102T150405Z", v)
		}
		return t, nil
	}
	var err error
	if tr.Start != "" {
		if s, err = parse(tr.Start); err != nil {
			return s, e, err
		}
	}
	if tr.End != "" {
		if e, err = parse(tr.End); err != nil {
			return s, e, err
		}
	}
	if s.IsZero() && e.IsZero() {
		return s, e, invalidFilter("time-range needs a start or an end")
	}
	if !s.IsZero() && !e.IsZero() && !e.After(s) {
		return s, e, invalidFilter("time-range end must be after its start")
	}
	return s, e, nil
}

// candidate is the cheap test on stored metadata: the component type and
// the stored time span must allow a match. It never rejects an object
// that the full filter would accept.
func (q *compiledFilter) candidate(o cache.Object) bool {
	for i := range q.top.Comps {
		c := &q.top.Comps[i]
		if c.IsNotDefined != nil || c.Name == "VTIMEZONE" {
			continue
		}
		if c.Name != o.Component {
			return false
		}
		if c.TimeRange != nil && !spanOverlaps(o.Start, o.End, c.start, c.end) {
			return false
		}
	}
	return true
}

// rangeHint returns the component and time range of the first
// top-level comp-filter with a time-range: every match lies in it.
func (q *compiledFilter) rangeHint() (comp string, start, end time.Time, ok bool) {
	for i := range q.top.Comps {
		c := &q.top.Comps[i]
		if c.IsNotDefined == nil && c.TimeRange != nil {
			return c.Name, c.start, c.end, true
		}
	}
	return "", time.Time{}, time.Time{}, false
}

// spanOverlaps compares a stored span with a query range, inclusively
// (zero values are unbounded).
func spanOverlaps(spanStart, spanEnd, start, end time.Time) bool {
	if !spanEnd.IsZero() && !start.IsZero() && start.After(spanEnd) {
		return false
	}
	if !spanStart.IsZero() && !end.IsZero() && end.Before(spanStart) {
		return false
	}
	return true
}

// matchObject applies the full filter to a stored object. It decides
// from the object's header when it can (see decide); otherwise it parses
// the object and returns the parse with the answer, for calendar-data to
// use.
func (h *Handler) matchObject(q *compiledFilter, o *cache.Object) (bool, *goical.Calendar, error) {
	if ok, decided := q.decide(o); decided {
		return ok, nil, nil
	}
	cal, err := h.parsed.parse(o)
	if err != nil {
		return false, nil, err
	}
	tz := h.zones.For(cal.Component)
	f := q.top
	if q.floating != nil && isFloating(cal.Component) {
		f = shiftRanges(f, q.floating)
	}
	for _, p := range f.Props {
		if ok, err := matchProp(tz, cal.Component, &p); err != nil || !ok {
			return false, cal, err
		}
	}
	for i := range f.Comps {
		if ok, err := matchObjectComps(tz, cal.Component, &f.Comps[i]); err != nil || !ok {
			return false, cal, err
		}
	}
	return true, cal, nil
}

// decide answers the filter from the object's header alone when the
// filter is one comp-filter on a component type, with at most a
// time-range: the type is the object's Component, and an Exact object's
// span is its interval. decided is false when the object must be parsed.
func (q *compiledFilter) decide(o *cache.Object) (match, decided bool) {
	c := q.simple
	switch {
	case c == nil:
		return false, false
	case !strings.EqualFold(c.Name, o.Component):
		return false, true
	case c.TimeRange == nil:
		return true, true
	case o.Exact:
		return ical.MatchInterval(o.Start, o.End, c.start, c.end), true
	}
	return false, false
}

// matchObjectComps applies a comp-filter to the components of an object
// (the children of its VCALENDAR). A time-range is matched against the
// instances of the whole recurrence set (master and overrides together,
// RFC 4791 §9.9); the other tests must hold for one of the components.
func matchObjectComps(tz *ical.TZ, cal *goical.Component, f *compFilter) (bool, error) {
	var matched []*goical.Component
	for _, c := range cal.Children {
		if strings.EqualFold(c.Name, f.Name) {
			matched = append(matched, c)
		}
	}
	if f.IsNotDefined != nil {
		return len(matched) == 0, nil
	}
	if len(matched) == 0 {
		return false, nil
	}
	if f.TimeRange != nil {
		ok, err := tz.MatchInstances(matched, f.start, f.end)
		if err != nil || !ok {
			return false, err
		}
	}
	rest := *f
	rest.TimeRange = nil
	for _, c := range matched {
		ok, err := matchCompBody(tz, c, &rest)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// matchCompFilter applies a comp-filter to the children of parent.
func matchCompFilter(tz *ical.TZ, parent *goical.Component, f *compFilter) (bool, error) {
	var matched []*goical.Component
	for _, c := range parent.Children {
		if strings.EqualFold(c.Name, f.Name) {
			matched = append(matched, c)
		}
	}
	if f.IsNotDefined != nil {
		return len(matched) == 0, nil
	}
	if f.TimeRange != nil && f.Name == goical.CompAlarm && len(matched) > 0 {
		// An alarm's time is its trigger, relative to the instances of
		// the component that holds it (RFC 4791 §9.9).
		ok, err := tz.MatchAlarm([]*goical.Component{parent}, f.start, f.end)
		if err != nil || !ok {
			return false, err
		}
		rest := *f
		rest.TimeRange = nil
		f = &rest
	}
	for _, c := range matched {
		ok, err := matchCompBody(tz, c, f)
		if err != nil {
			return false, err
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// matchCompBody applies the tests of f to component c itself.
func matchCompBody(tz *ical.TZ, c *goical.Component, f *compFilter) (bool, error) {
	if f.TimeRange != nil {
		ok, err := tz.MatchTimeRange(c, f.start, f.end)
		if err != nil || !ok {
			return false, err
		}
	}
	for i := range f.Props {
		ok, err := matchProp(tz, c, &f.Props[i])
		if err != nil || !ok {
			return false, err
		}
	}
	for i := range f.Comps {
		ok, err := matchCompFilter(tz, c, &f.Comps[i])
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func matchProp(tz *ical.TZ, c *goical.Component, f *propFilter) (bool, error) {
	props := c.Props.Values(f.Name)
	if f.IsNotDefined != nil {
		return len(props) == 0, nil
	}
	for i := range props {
		p := &props[i]
		if f.TimeRange != nil {
			t, _, err := tz.ParseTime(p)
			if err != nil {
				if errors.Is(err, ical.ErrInvalidData) {
					continue
				}
				return false, err
			}
			if (!f.start.IsZero() && t.Before(f.start)) || (!f.end.IsZero() && !t.Before(f.end)) {
				continue
			}
		}
		if f.TextMatch != nil && !f.TextMatch.match(ical.UnescapeText(p.Value)) {
			continue
		}
		all := true
		for j := range f.Params {
			if !f.Params[j].match(p) {
				all = false
				break
			}
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

func (f *paramFilter) match(p *goical.Prop) bool {
	vals := p.Params.Values(f.Name)
	if f.IsNotDefined != nil {
		return len(vals) == 0
	}
	if len(vals) == 0 {
		return false
	}
	if f.TextMatch == nil {
		return true
	}
	for _, v := range vals {
		if f.TextMatch.match(v) {
			return true
		}
	}
	return false
}

// match applies a text-match (RFC 4791 §9.7.5): a substring test under
// the collation, inverted by negate-condition.
func (tm *textMatch) match(v string) bool {
	needle := tm.Value
	var ok bool
	if tm.Collation == "i;octet" {
		ok = strings.Contains(v, needle)
	} else {
		ok = strings.Contains(asciiLower(v), asciiLower(needle))
	}
	if tm.Negate == "yes" {
		return !ok
	}
	return ok
}

// asciiLower folds only ASCII letters, as i;ascii-casemap does (RFC 4790).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func isTokenExpired(err error) bool { return errors.Is(err, cache.ErrTokenExpired) }

// isFloating reports whether the object's first dated component starts
// at a floating time or a date: its times then are wall clock, read as
// UTC by the ical package.
func isFloating(cal *goical.Component) bool {
	for _, c := range cal.Children {
		p := c.Props.Get(goical.PropDateTimeStart)
		if p == nil {
			p = c.Props.Get(goical.PropDue)
		}
		if p == nil {
			continue
		}
		v := strings.TrimSpace(p.Value)
		return p.Params.Get(goical.ParamTimezoneID) == "" && !strings.HasSuffix(strings.ToUpper(v), "Z")
	}
	return false
}

// wallClock is t as seen on a clock in loc, written as a UTC time: the
// form in which floating times are compared.
func wallClock(t time.Time, loc *time.Location) time.Time {
	if t.IsZero() {
		return t
	}
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), time.UTC)
}

// shiftRanges returns a copy of f whose time ranges are in loc's wall
// clock, for matching an object with floating times.
func shiftRanges(f *compFilter, loc *time.Location) *compFilter {
	g := *f
	g.start, g.end = wallClock(f.start, loc), wallClock(f.end, loc)
	g.Comps = make([]compFilter, len(f.Comps))
	for i := range f.Comps {
		g.Comps[i] = *shiftRanges(&f.Comps[i], loc)
	}
	g.Props = make([]propFilter, len(f.Props))
	for i, p := range f.Props {
		p.start, p.end = wallClock(p.start, loc), wallClock(p.end, loc)
		g.Props[i] = p
	}
	return &g
}

// floatingZone is the zone of a query's CALDAV:timezone, else of the
// calendar's calendar-timezone property; nil (UTC) if neither resolves.
func (h *Handler) floatingZone(queryTZ string, cal *cache.Calendar) *time.Location {
	for _, text := range []string{queryTZ, cal.Timezone} {
		if strings.TrimSpace(text) == "" {
			continue
		}
		parsed, err := ical.Parse([]byte(strings.TrimSpace(text)))
		if err != nil {
			continue
		}
		tz := h.zones.For(parsed.Component)
		for _, c := range parsed.Children {
			if p := c.Props.Get(goical.PropTimezoneID); c.Name == goical.CompTimezone && p != nil {
				if loc, ok := tz.Location(p.Value); ok {
					return loc
				}
			}
		}
	}
	return nil
}
