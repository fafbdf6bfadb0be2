package gateway

import (
	"encoding/xml"
	"net/http"
	"slices"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// reportProps is the DAV:prop of a REPORT: the property names, and the
// CALDAV:calendar-data element in full when it asks for pruning, expand or
// limit-recurrence-set (RFC 4791 §9.6).
type reportProps struct {
	names   []xml.Name
	calData *calDataReq
}

func (p *reportProps) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	return eachChild(d, func(t xml.StartElement) error {
		p.names = append(p.names, t.Name)
		if t.Name != caldav("calendar-data") {
			return d.Skip()
		}
		var cd calDataReq
		if err := d.DecodeElement(&cd, &t); err != nil {
			return err
		}
		p.calData = &cd
		return nil
	})
}

// calDataReq is CALDAV:calendar-data in a request (RFC 4791 §9.6).
type calDataReq struct {
	Comp    *compReq     `xml:"urn:ietf:params:xml:ns:caldav comp"`
	Expand  *timeRangeEl `xml:"urn:ietf:params:xml:ns:caldav expand"`
	Limit   *timeRangeEl `xml:"urn:ietf:params:xml:ns:caldav limit-recurrence-set"`
	LimitFB *timeRangeEl `xml:"urn:ietf:params:xml:ns:caldav limit-freebusy-set"`

	// floating is the zone floating times are read in, set per calendar
	// by the report before calendar-data is rendered (nil: UTC).
	floating *time.Location

	// Parsed by compile.
	prune                  *ical.PruneSpec
	expandStart, expandEnd time.Time
	limitStart, limitEnd   time.Time
}

type compReq struct {
	Name    string    `xml:"name,attr"`
	AllProp *struct{} `xml:"urn:ietf:params:xml:ns:caldav allprop"`
	Props   []struct {
		Name string `xml:"name,attr"`
	} `xml:"urn:ietf:params:xml:ns:caldav prop"`
	AllComp *struct{} `xml:"urn:ietf:params:xml:ns:caldav allcomp"`
	Comps   []compReq `xml:"urn:ietf:params:xml:ns:caldav comp"`
}

// compile checks the request and parses its ranges.
func (cd *calDataReq) compile() error {
	if cd == nil {
		return nil
	}
	if cd.Comp != nil {
		if !strings.EqualFold(cd.Comp.Name, "VCALENDAR") {
			return precond(http.StatusBadRequest, caldav("valid-calendar-data"), "calendar-data comp must start with VCALENDAR")
		}
		cd.prune = cd.Comp.spec(0)
	}
	var err error
	if cd.Expand != nil {
		if cd.expandStart, cd.expandEnd, err = parseTimeRange(cd.Expand); err != nil {
			return err
		}
		if cd.expandStart.IsZero() || cd.expandEnd.IsZero() {
			return invalidFilter("expand needs both start and end")
		}
	}
	if cd.Limit != nil {
		if cd.limitStart, cd.limitEnd, err = parseTimeRange(cd.Limit); err != nil {
			return err
		}
	}
	return nil
}

func (c *compReq) spec(depth int) *ical.PruneSpec {
	s := &ical.PruneSpec{Name: strings.ToUpper(strings.TrimSpace(c.Name)), AllProp: c.AllProp != nil, AllComp: c.AllComp != nil,
		Props: make(map[string]bool), Comps: make(map[string]*ical.PruneSpec)}
	for _, p := range c.Props {
		s.Props[strings.ToUpper(strings.TrimSpace(p.Name))] = true
	}
	if depth < 8 {
		for i := range c.Comps {
			sub := c.Comps[i].spec(depth + 1)
			s.Comps[sub.Name] = sub
		}
	}
	return s
}

// applyCalData turns a stored object's bytes into the calendar-data the
// request asked for: expanded or limited first, then pruned. Without a
// request, the stored bytes are returned unchanged. parsed is o.Data
// already parsed (by the filter), or nil; an Exact object has no
// recurrence to expand or limit and is not parsed at all.
func (h *Handler) applyCalData(cd *calDataReq, o *cache.Object, parsed *goical.Calendar) []byte {
	data := o.Data
	if cd == nil || data == nil {
		return data
	}
	if (cd.Expand != nil || cd.Limit != nil) && !o.Exact {
		if parsed == nil {
			var err error
			if parsed, err = h.parsed.parse(o); err != nil {
				return ical.Prune(data, cd.prune)
			}
		}
		if cd.Expand != nil {
			data = h.expandData(parsed, data, cd.expandStart, cd.expandEnd, cd.floating)
		} else {
			data = h.limitData(parsed, data, cd.limitStart, cd.limitEnd)
		}
	}
	return ical.Prune(data, cd.prune)
}

// expandData returns the instances of a recurring object that overlap
// [start, end) as separate components (RFC 4791 §9.6.5): RRULE, RDATE and
// EXDATE removed, overrides applied, times in UTC, each with a
// RECURRENCE-ID. A non-recurring object is returned as stored. Floating
// times are read in floating (nil: UTC) and written in UTC. cal is data
// parsed.
func (h *Handler) expandData(cal *goical.Calendar, data []byte, start, end time.Time, floating *time.Location) []byte {
	var comps []*goical.Component
	recurring := false
	for _, c := range cal.Children {
		if c.Name == goical.CompTimezone {
			continue
		}
		comps = append(comps, c)
		recurring = recurring || c.Props.Get(goical.PropRecurrenceRule) != nil || c.Props.Get(goical.PropRecurrenceDates) != nil ||
			c.Props.Get(goical.PropRecurrenceID) != nil
	}
	if !recurring {
		return data
	}
	tz := h.zones.For(cal.Component)
	shift := floating != nil && isFloating(cal.Component)
	if shift {
		start, end = wallClock(start, floating), wallClock(end, floating)
	}
	exp, err := tz.Expand(comps, ical.ExpandOptions{Start: start, End: end, MaxInstances: h.maxInstances})
	if err != nil {
		h.log.Warn("expand failed; returning the stored object", "err", err)
		return data
	}
	if shift {
		for i := range exp.Instances {
			in := &exp.Instances[i]
			if !in.Date {
				in.Start, in.End, in.RecurrenceID = fromWall(in.Start, floating), fromWall(in.End, floating), fromWall(in.RecurrenceID, floating)
			}
		}
	}
	b := []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
	if p := cal.Props.Get(goical.PropProductID); p != nil {
		b = ical.FoldLine(b, "PRODID:"+p.Value)
	}
	for _, inst := range exp.Instances {
		b = ical.AppendComponent(b, instanceComponent(inst))
	}
	return append(b, "END:VCALENDAR\r\n"...)
}

// instanceComponent is one expanded instance as a component of its own.
func instanceComponent(inst ical.Instance) *goical.Component {
	// The recurrence properties are left out of the copy rather than
	// deleted from it: a master with thousands of RDATE or EXDATE lines
	// would otherwise be copied whole for every instance.
	c := cloneComponent(inst.Comp, goical.PropRecurrenceRule, goical.PropRecurrenceDates, goical.PropExceptionDates, "EXRULE", goical.PropRecurrenceID)
	setTime := func(name string, t time.Time) {
		p := goical.NewProp(name)
		if inst.Date {
			p.Params.Set(goical.ParamValue, "DATE")
			p.Value = t.Format("20060102")
		} else {
			p.Value = t.UTC().Format("20060102T150405Z")
		}
		c.Props.Set(p)
	}
	setTime(goical.PropDateTimeStart, inst.Start)
	setTime(goical.PropRecurrenceID, inst.RecurrenceID)
	switch {
	case c.Props.Get(goical.PropDuration) != nil:
		// DURATION stays as written.
	case c.Name == goical.CompToDo && c.Props.Get(goical.PropDue) != nil:
		setTime(goical.PropDue, inst.End)
	case c.Props.Get(goical.PropDateTimeEnd) != nil || inst.End.After(inst.Start):
		if c.Name == goical.CompEvent {
			setTime(goical.PropDateTimeEnd, inst.End)
		}
	}
	return c
}

// cloneComponent returns a deep copy of c without its properties named
// in drop (its children are copied whole).
func cloneComponent(c *goical.Component, drop ...string) *goical.Component {
	out := goical.NewComponent(c.Name)
	for name, props := range c.Props {
		if slices.Contains(drop, name) {
			continue
		}
		cp := make([]goical.Prop, len(props))
		for i, p := range props {
			params := make(goical.Params, len(p.Params))
			for k, v := range p.Params {
				params[k] = append([]string(nil), v...)
			}
			cp[i] = goical.Prop{Name: p.Name, Params: params, Value: p.Value}
		}
		out.Props[name] = cp
	}
	for _, child := range c.Children {
		out.Children = append(out.Children, cloneComponent(child))
	}
	return out
}

// limitData keeps the master and the overrides whose instance overlaps
// [start, end) (RFC 4791 §9.6.6), as the stored bytes.
func (h *Handler) limitData(cal *goical.Calendar, data []byte, start, end time.Time) []byte {
	tz := h.zones.For(cal.Component)
	return ical.FilterComponents(data, func(i int, name string) bool {
		if i >= len(cal.Children) {
			return true
		}
		c := cal.Children[i]
		rid := c.Props.Get(goical.PropRecurrenceID)
		if rid == nil {
			return true // VTIMEZONE, master, anything else
		}
		if t, _, err := tz.ParseTime(rid); err == nil && strings.EqualFold(rid.Params.Get("RANGE"), "THISANDFUTURE") {
			return end.IsZero() || t.Before(end)
		} else if err == nil && spanOverlaps(t.Time, t.Time, start, end) {
			return true
		}
		ok, err := tz.MatchTimeRange(c, start, end)
		return err != nil || ok
	})
}

// fromWall reads a wall-clock time written as UTC as a time in loc.
func fromWall(t time.Time, loc *time.Location) time.Time {
	return ical.WallTime(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), loc)
}
