package ical

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	goical "github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// Defaults of ExpandOptions.
const (
	// DefaultMaxInstances is the default cap on the instances Expand returns.
	DefaultMaxInstances = 1000
	// DefaultMaxSteps is the default cap on recurrence-rule iterations.
	DefaultMaxSteps = 100000
	// DefaultExpandTimeout is the default wall-clock budget of Expand.
	DefaultExpandTimeout = time.Second
)

// Instance is one occurrence of a recurring (or one-off) component.
type Instance struct {
	// Start and End are UTC instants. For all-day (Date) instances they
	// are the dates at 00:00 UTC; floating times are read as UTC wall
	// clock.
	Start, End time.Time
	// RecurrenceID is the instance's original start in UTC: the
	// RECURRENCE-ID it has or would have.
	RecurrenceID time.Time
	// Date is set for a DATE (all-day) instance.
	Date bool
	// Comp is the component that defines this instance: the master, or
	// the override (for instances moved by a RANGE=THISANDFUTURE
	// override, that override).
	Comp *goical.Component
	// Override is set when Comp is an override (it has a RECURRENCE-ID).
	Override bool
	// Cancelled is set when Comp has STATUS:CANCELLED.
	Cancelled bool
}

// ExpandOptions bound an expansion. The zero value uses the defaults.
type ExpandOptions struct {
	// Start and End select the instances that overlap [Start, End); a zero
	// value is unbounded on that side.
	Start, End time.Time
	// MaxInstances caps the instances returned. Default:
	// DefaultMaxInstances.
	MaxInstances int
	// MaxSteps caps the recurrence-rule iterations, including those that
	// fall outside [Start, End). Default: DefaultMaxSteps.
	MaxSteps int
	// Timeout is the wall-clock budget. Default: DefaultExpandTimeout.
	Timeout time.Duration
}

// Expansion is the result of Expand.
type Expansion struct {
	Instances []Instance // sorted by Start, then RecurrenceID
	Truncated bool       // a cap or the timeout stopped the expansion
	Warnings  []string   // e.g. an ignored invalid RRULE, a clamped DTEND
}

// Expand computes the instances of one recurring (or one-off) component
// that overlap [opts.Start, opts.End), by RFC 5545 §3.8.5 and §3.8.4.4.
//
// comps are all components of one UID and one type: the master and its
// overrides, in any order; the master may be absent. Of several masters
// the one with the highest SEQUENCE is used; of several overrides for the
// same RECURRENCE-ID, likewise.
//
// The recurrence set is the union of the RRULEs (iterated in DTSTART's
// wall clock, so DST is respected; floating and DATE values in UTC wall
// clock) and the RDATEs, less the EXDATEs. As in dateutil, a DTSTART that
// no rule matches is not an instance; when there is no usable RRULE, DTSTART
// is the first instance. Instances are identified by their UTC start; a
// DATE EXDATE or RECURRENCE-ID matches the instance on that date.
//
// An override replaces the instance its RECURRENCE-ID names. An override
// whose RECURRENCE-ID names no instance is kept as an extra instance (and
// no instance of the master is lost for it). A RANGE=THISANDFUTURE override
// also moves every later instance by its start delta and gives it its
// duration, until the next THISANDFUTURE override; a plain override still
// wins for its own instance. Overrides without a master are instances by
// themselves. STATUS:CANCELLED instances are returned with Cancelled set.
//
// Invalid rules (unknown FREQ, UNTIL before DTSTART, rules that can never
// produce an instance or could make the iterator spin) are ignored with a
// warning rather than failing the expansion. Expand returns within
// opts.Timeout (plus one rule step) and sets Truncated when a cap or the
// timeout stopped it. It starts no goroutine. Errors wrap ErrInvalidData
// (a master DTSTART, DTEND or DURATION that cannot be read).
func (tz *TZ) Expand(comps []*goical.Component, opts ExpandOptions) (Expansion, error) {
	if opts.MaxInstances <= 0 {
		opts.MaxInstances = DefaultMaxInstances
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultExpandTimeout
	}
	e := &expander{
		tz:       tz,
		opts:     opts,
		deadline: time.Now().Add(opts.Timeout),
	}
	if err := e.run(comps); err != nil {
		return Expansion{}, err
	}
	return e.out, nil
}

// expander holds the state of one Expand call.
type expander struct {
	tz       *TZ
	opts     ExpandOptions
	deadline time.Time
	steps    int
	out      Expansion
}

func (e *expander) warn(format string, args ...any) {
	e.out.Warnings = appendNew(e.out.Warnings, fmt.Sprintf(format, args...))
}

// override is one parsed RECURRENCE-ID component.
type override struct {
	comp       *goical.Component
	rid        Time // RECURRENCE-ID
	seq        int
	future     bool // RANGE=THISANDFUTURE
	start, end time.Time
	date       bool
	cancelled  bool
}

// occurrence is one member of the master's recurrence set.
type occurrence struct {
	start time.Time // in the iteration zone
	dur   time.Duration
}

func (e *expander) run(comps []*goical.Component) error {
	var master *goical.Component
	masterSeq := 0
	byKey := make(map[string]*override)
	var keys []string
	for _, c := range comps {
		if c == nil {
			continue
		}
		rp := c.Props.Get(goical.PropRecurrenceID)
		if rp == nil {
			seq := sequence(c)
			if master != nil {
				e.warn("two %s components with the same UID and no RECURRENCE-ID: the one with the highest SEQUENCE is used", c.Name)
				if seq <= masterSeq {
					continue
				}
			}
			master, masterSeq = c, seq
			continue
		}
		ov, err := e.parseOverride(c, rp)
		if err != nil {
			e.warn("override ignored: %v", err)
			continue
		}
		k := ridKey(ov.rid)
		if have, ok := byKey[k]; ok {
			if ov.seq <= have.seq {
				continue
			}
		} else {
			keys = append(keys, k)
		}
		byKey[k] = ov
	}
	ovs := make([]*override, 0, len(keys))
	for _, k := range keys {
		ovs = append(ovs, byKey[k])
	}
	sort.SliceStable(ovs, func(i, j int) bool { return ovs[i].rid.Before(ovs[j].rid.Time) })

	if master != nil {
		if err := e.expandMaster(master, ovs); err != nil {
			return err
		}
	}
	for _, ov := range ovs {
		e.emit(Instance{
			Start: ov.start, End: ov.end, RecurrenceID: ov.rid.UTC(), Date: ov.date,
			Comp: ov.comp, Override: true, Cancelled: ov.cancelled,
		})
	}
	inst := e.out.Instances
	sort.SliceStable(inst, func(i, j int) bool {
		if !inst[i].Start.Equal(inst[j].Start) {
			return inst[i].Start.Before(inst[j].Start)
		}
		return inst[i].RecurrenceID.Before(inst[j].RecurrenceID)
	})
	if len(inst) > e.opts.MaxInstances {
		e.out.Instances = inst[:e.opts.MaxInstances]
		e.out.Truncated = true
	}
	return nil
}

// emit adds in to the result if it overlaps the window.
func (e *expander) emit(in Instance) {
	if overlaps(in.Start, in.End, e.opts.Start, e.opts.End) {
		e.out.Instances = append(e.out.Instances, in)
	}
}

// overlaps reports whether [s, en) overlaps [from, to) (zero bounds are
// unbounded); a zero-length instance overlaps when from <= s < to.
func overlaps(s, en, from, to time.Time) bool {
	if !to.IsZero() && !s.Before(to) {
		return false
	}
	if from.IsZero() {
		return true
	}
	if en.After(s) {
		return en.After(from)
	}
	return !s.Before(from)
}

func sequence(c *goical.Component) int {
	if p := c.Props.Get(goical.PropSequence); p != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(p.Value)); err == nil {
			return n
		}
	}
	return 0
}

func cancelled(c *goical.Component) bool {
	p := c.Props.Get(goical.PropStatus)
	return p != nil && strings.EqualFold(strings.TrimSpace(p.Value), "CANCELLED")
}

// ridKey identifies a RECURRENCE-ID: a date for DATE values, else the UTC
// instant.
func ridKey(t Time) string {
	if t.Date {
		return "D" + t.Format("20060102")
	}
	return "T" + strconv.FormatInt(t.Unix(), 10)
}

// duration returns the length of one instance of c given its dates, by
// the defaults of RFC 4791 §9.9, clamping a negative length to zero.
func (e *expander) duration(name string, d dates) time.Duration {
	var dur time.Duration
	switch {
	case d.start == nil:
		return 0
	case name == goical.CompToDo && d.due != nil:
		dur = d.due.Sub(d.start.Time)
	case name != goical.CompToDo && d.end != nil:
		dur = d.end.Sub(d.start.Time)
	case d.duration != nil:
		dur = *d.duration
	case d.start.Date && name != goical.CompToDo:
		dur = 24 * time.Hour
	}
	if dur < 0 {
		e.warn("%s ends before it starts: treated as zero length", name)
		dur = 0
	}
	return dur
}

func (e *expander) parseOverride(c *goical.Component, rp *goical.Prop) (*override, error) {
	rid, w, err := e.tz.ParseTime(rp)
	if err != nil {
		return nil, err
	}
	if w != "" {
		e.warn("%s", w)
	}
	d, err := e.tz.dates(c)
	if err != nil {
		return nil, err
	}
	for _, w := range d.warnings {
		e.warn("%s", w)
	}
	ov := &override{
		comp:      c,
		rid:       rid,
		seq:       sequence(c),
		future:    strings.EqualFold(strings.TrimSpace(rp.Params.Get(goical.ParamRange)), "THISANDFUTURE"),
		cancelled: cancelled(c),
	}
	if d.start != nil {
		ov.start, ov.date = d.start.UTC(), d.start.Date
	} else {
		ov.start, ov.date = rid.UTC(), rid.Date
	}
	ov.end = ov.start.Add(e.duration(c.Name, d))
	return ov, nil
}

// expandMaster expands the recurrence set of master, applies ovs and
// emits the master's instances.
func (e *expander) expandMaster(master *goical.Component, ovs []*override) error {
	d, err := e.tz.dates(master)
	if err != nil {
		return err
	}
	for _, w := range d.warnings {
		e.warn("%s", w)
	}
	if d.start == nil {
		e.warn("%s without DTSTART: no instances", master.Name)
		return nil
	}
	ds := *d.start
	loc := ds.Location()
	if ds.Date || ds.Floating {
		loc = time.UTC
	}
	dur := e.duration(master.Name, d)
	mcancel := cancelled(master)

	// How far overrides can move instances, to widen the window in which
	// original starts are generated.
	var futures []*override
	var maxPos, maxNeg time.Duration
	maxDur := dur
	for _, ov := range ovs {
		if !ov.future {
			continue
		}
		futures = append(futures, ov)
		delta := ov.start.Sub(ov.rid.Time)
		maxPos, maxNeg = max(maxPos, delta), max(maxNeg, -delta)
		maxDur = max(maxDur, ov.end.Sub(ov.start))
	}

	occ := make(map[int64]occurrence)
	rdates := e.values(master, goical.PropRecurrenceDates, dur)
	for _, r := range rdates {
		maxDur = max(maxDur, r.dur)
	}
	lo, hi := e.opts.Start, e.opts.End
	if !lo.IsZero() {
		lo = lo.Add(-maxDur - maxPos)
	}
	if !hi.IsZero() {
		hi = hi.Add(maxNeg)
	}
	limit := e.opts.MaxInstances + len(ovs) + 1

	rules := 0
	for _, p := range master.Props.Values(goical.PropRecurrenceRule) {
		r, err := e.tz.parseRule(&p, ds, loc)
		if err != nil {
			e.warn("RRULE %q ignored: %v", p.Value, err)
			continue
		}
		rules++
		if !e.iterate(r, dur, lo, hi, limit, occ) {
			break
		}
	}
	if rules == 0 {
		occ[ds.Unix()] = occurrence{start: ds.In(loc), dur: dur}
	}
	for _, r := range rdates {
		if _, ok := occ[r.start.Unix()]; !ok {
			occ[r.start.Unix()] = occurrence{start: r.start.In(loc), dur: r.dur}
		}
	}
	// EXDATE: instants, and dates for DATE values (matching that day's
	// instance in the iteration zone).
	exInstant := make(map[int64]bool)
	exDate := make(map[string]bool)
	for _, x := range e.values(master, goical.PropExceptionDates, 0) {
		if x.date {
			exDate[x.start.Format("20060102")] = true
		}
		exInstant[x.start.Unix()] = true
	}
	ovInstant := make(map[int64]bool)
	ovDate := make(map[string]bool)
	for _, ov := range ovs {
		ovInstant[ov.rid.Unix()] = true
		if ov.rid.Date != ds.Date {
			ovDate[ov.rid.Format("20060102")] = true
		}
	}
	for k, o := range occ {
		day := o.start.In(loc).Format("20060102")
		if exInstant[k] || exDate[day] || ovInstant[k] || ovDate[day] {
			continue
		}
		orig := o.start.UTC()
		in := Instance{
			Start: orig, End: orig.Add(o.dur), RecurrenceID: orig, Date: ds.Date,
			Comp: master, Cancelled: mcancel,
		}
		// The latest THISANDFUTURE override before this instance moves it.
		if i := sort.Search(len(futures), func(i int) bool { return !futures[i].rid.Before(orig) }); i > 0 {
			ov := futures[i-1]
			in.Start = orig.Add(ov.start.Sub(ov.rid.Time))
			in.End = in.Start.Add(ov.end.Sub(ov.start))
			in.Date = ov.date
			in.Comp, in.Override, in.Cancelled = ov.comp, true, ov.cancelled
		}
		e.emit(in)
	}
	return nil
}

// iterate adds the occurrences of r whose instance can reach [lo, hi) to
// occ. It reports false when a cap or the deadline stopped it.
func (e *expander) iterate(r *rrule.RRule, dur time.Duration, lo, hi time.Time, limit int, occ map[int64]occurrence) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			e.warn("RRULE iteration failed: %v", p)
			ok = true
		}
	}()
	if days, ok := stepRule(&r.OrigOptions); ok && stepping {
		return e.iterateSteps(&r.OrigOptions, days, dur, lo, hi, limit, occ)
	}
	next := r.Iterator()
	stored := 0
	for {
		if !e.step() {
			return false
		}
		t, more := next()
		if !more {
			return true
		}
		if !hi.IsZero() && !t.Before(hi) {
			return true
		}
		if !lo.IsZero() && t.Before(lo) {
			continue
		}
		if !e.store(occ, t, dur, &stored, limit) {
			return true
		}
	}
}

// stepping enables iterateSteps; tests turn it off to compare.
var stepping = true

// stepRule reports whether a rule's occurrences are exactly DTSTART's
// wall-clock time on every days-th day from DTSTART: FREQ=DAILY or WEEKLY
// with no BY part, except a WEEKLY BYDAY that names DTSTART's own weekday
// alone (as many clients write a plain weekly event). Such a rule, the
// most common kind, is stepped directly to the window instead of being
// iterated from DTSTART.
func stepRule(o *rrule.ROption) (days int, ok bool) {
	if len(o.Bysetpos)+len(o.Bymonth)+len(o.Bymonthday)+len(o.Byyearday)+len(o.Byweekno)+
		len(o.Byhour)+len(o.Byminute)+len(o.Bysecond)+len(o.Byeaster) > 0 || o.Interval < 1 {
		return 0, false
	}
	switch o.Freq {
	case rrule.DAILY:
		if len(o.Byweekday) > 0 {
			return 0, false
		}
		return o.Interval, true
	case rrule.WEEKLY:
		if len(o.Byweekday) > 1 {
			return 0, false
		}
		if len(o.Byweekday) == 1 {
			wd := o.Byweekday[0]
			// rrule counts weekdays from Monday = 0.
			if wd.N() != 0 || wd.Day() != (int(o.Dtstart.Weekday())+6)%7 {
				return 0, false
			}
		}
		return 7 * o.Interval, true
	}
	return 0, false
}

// iterateSteps is iterate for a stepRule rule: occurrence k is DTSTART's
// wall clock k*days days later, as the rrule iterator makes it (the same
// time.Date normalisation in DST gaps), and the first one looked at is a
// little before lo, so a long-running series costs what its window holds.
func (e *expander) iterateSteps(o *rrule.ROption, days int, dur time.Duration, lo, hi time.Time, limit int, occ map[int64]occurrence) bool {
	start := o.Dtstart.Truncate(time.Second)
	until := o.Until.Truncate(time.Second)
	if o.Until.IsZero() {
		until = start.Add(time.Duration(1<<63 - 1)) // the iterator's own bound
	}
	loc := start.Location()
	y, m, d := start.Date()
	hh, mm, ss := start.Clock()
	k := 0
	if !lo.IsZero() && lo.After(start) {
		// Two periods of margin: a zone may move its clock by up to a day
		// (a skipped date), so the guess can be off by one period.
		period := time.Duration(days) * 24 * time.Hour
		k = max(0, int(lo.Sub(start)/period)-2)
	}
	stored := 0
	for ; o.Count == 0 || k < o.Count; k++ {
		if !e.step() {
			return false
		}
		t := time.Date(y, m, d+k*days, hh, mm, ss, 0, loc)
		if t.After(until) || !hi.IsZero() && !t.Before(hi) || t.Year() > 9999 {
			return true
		}
		if !lo.IsZero() && t.Before(lo) {
			continue
		}
		if !e.store(occ, t, dur, &stored, limit) {
			return true
		}
	}
	return true
}

// step counts one iteration step against the expansion's caps; false
// means a cap or the deadline stopped it (the expansion is truncated).
func (e *expander) step() bool {
	if e.steps >= e.opts.MaxSteps {
		e.out.Truncated = true
		return false
	}
	e.steps++
	if e.steps%64 == 0 && time.Now().After(e.deadline) {
		e.out.Truncated = true
		return false
	}
	return true
}

// store adds the occurrence at t to occ unless one is there; false means
// more than limit were stored (the expansion is truncated).
func (e *expander) store(occ map[int64]occurrence, t time.Time, dur time.Duration, stored *int, limit int) bool {
	if _, have := occ[t.Unix()]; have {
		return true
	}
	occ[t.Unix()] = occurrence{start: t, dur: dur}
	if *stored++; *stored > limit {
		e.out.Truncated = true
		return false
	}
	return true
}

// dateValue is one value of an RDATE or EXDATE property.
type dateValue struct {
	start time.Time // in the value's own zone
	dur   time.Duration
	date  bool
}

// values parses every value of every name property of c (comma lists,
// PERIODs with their own length; other values get length dur). Empty
// values are skipped; values that cannot be read are skipped with a
// warning.
func (e *expander) values(c *goical.Component, name string, dur time.Duration) []dateValue {
	var out []dateValue
	for _, p := range c.Props.Values(name) {
		for v := range strings.SplitSeq(p.Value, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			startText, endText, period := strings.Cut(v, "/")
			one := p
			one.Value = startText
			t, w, err := e.tz.ParseTime(&one)
			if err != nil {
				e.warn("%s value %q ignored: %v", name, v, err)
				continue
			}
			if w != "" {
				e.warn("%s", w)
			}
			dv := dateValue{start: t.Time, dur: dur, date: t.Date}
			if period {
				endText = strings.TrimSpace(endText)
				if strings.ContainsAny(endText, "Pp") {
					d, err := ParseDuration(endText)
					if err != nil {
						e.warn("%s period %q ignored: %v", name, v, err)
						continue
					}
					dv.dur = d
				} else {
					one.Value = endText
					end, _, err := e.tz.ParseTime(&one)
					if err != nil {
						e.warn("%s period %q ignored: %v", name, v, err)
						continue
					}
					dv.dur = end.Sub(t.Time)
				}
				if dv.dur < 0 {
					e.warn("%s period %q ends before it starts: treated as zero length", name, v)
					dv.dur = 0
				}
			}
			out = append(out, dv)
		}
	}
	return out
}

var (
	freqs = map[string]rrule.Frequency{
		"YEARLY": rrule.YEARLY, "MONTHLY": rrule.MONTHLY, "WEEKLY": rrule.WEEKLY, "DAILY": rrule.DAILY,
		"HOURLY": rrule.HOURLY, "MINUTELY": rrule.MINUTELY, "SECONDLY": rrule.SECONDLY,
	}
	weekdays = map[string]rrule.Weekday{
		"MO": rrule.MO, "TU": rrule.TU, "WE": rrule.WE, "TH": rrule.TH, "FR": rrule.FR, "SA": rrule.SA, "SU": rrule.SU,
	}
	weekdayList = []rrule.Weekday{rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU}
	// maxInterval bounds INTERVAL per FREQ: a larger one cannot reach a
	// second instance before year 9999, where rrule-go stops, so clamping
	// changes nothing but keeps rrule-go's arithmetic from overflowing.
	maxInterval = map[rrule.Frequency]int{
		rrule.YEARLY: 10000, rrule.MONTHLY: 120000, rrule.WEEKLY: 530000, rrule.DAILY: 3660000,
		rrule.HOURLY: 88000000, rrule.MINUTELY: 5300000000, rrule.SECONDLY: 316000000000,
	}
)

// rule is a parsed RRULE.
type rule struct {
	opt     rrule.ROption
	bounded bool // COUNT or UNTIL
}

// parseRule parses an RRULE value for a component starting at ds, to be
// iterated in loc, and checks that rrule-go can iterate it safely. It is
// lenient where the meaning is clear (a repeated "RRULE:" prefix, parts
// without "=", INTERVAL=0, an UNTIL of the wrong value type) and returns an
// error for a rule that must be ignored.
func (tz *TZ) parseRule(p *goical.Prop, ds Time, loc *time.Location) (*rrule.RRule, error) {
	key := ruleKey{text: p.Value, start: ds.UnixNano(), date: ds.Date, floating: ds.Floating, loc: loc}
	if rr := rules.get(key); rr != nil {
		return rr, nil
	}
	rr, err := buildRule(p.Value, ds, loc)
	if err == nil {
		rules.put(key, rr)
	}
	return rr, err
}

// ruleKey is everything a parsed rule depends on. The location is
// compared by identity: two zones of one name (an object's own VTIMEZONE
// and the IANA zone) may differ.
type ruleKey struct {
	text           string
	start          int64
	date, floating bool
	loc            *time.Location
}

// ruleCache keeps parsed rules: building one (rrule.NewRRule and the
// checks) costs more than iterating a typical series, and the same
// objects are expanded by query after query. A parsed rule is only read
// while iterating, so one can serve concurrent expansions. When full, the
// cache starts over: a simple bound that needs no bookkeeping per use.
type ruleCache struct {
	mu sync.Mutex
	m  map[ruleKey]*rrule.RRule
}

const ruleCacheSize = 8192

var rules ruleCache

func (c *ruleCache) get(k ruleKey) *rrule.RRule {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *ruleCache) put(k ruleKey, r *rrule.RRule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= ruleCacheSize {
		c.m = make(map[ruleKey]*rrule.RRule, ruleCacheSize)
	}
	c.m[k] = r
}

// buildRule parses an RRULE value for a series starting at ds in loc.
func buildRule(text string, ds Time, loc *time.Location) (*rrule.RRule, error) {
	r, err := parseRuleText(text, ds, loc)
	if err != nil {
		return nil, err
	}
	if err := safeCheckRule(&r.opt); err != nil {
		return nil, err
	}
	rr, err := rrule.NewRRule(r.opt)
	if err != nil {
		return nil, fmt.Errorf("%w: RRULE: %v", ErrInvalidData, err)
	}
	return rr, nil
}

func parseRuleText(text string, ds Time, loc *time.Location) (rule, error) {
	var r rule
	bad := func(format string, args ...any) (rule, error) {
		return rule{}, fmt.Errorf("%w: RRULE: %s", ErrInvalidData, fmt.Sprintf(format, args...))
	}
	text = strings.TrimSpace(text)
	for len(text) >= 6 && strings.EqualFold(text[:6], "RRULE:") {
		text = strings.TrimSpace(text[6:])
	}
	r.opt = rrule.ROption{Dtstart: ds.In(loc), Interval: 1}
	freqSet := false
	for part := range strings.SplitSeq(text, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue // e.g. "RRULE:AnythingRandom;FREQ=…": skip the stray part
		}
		k, v = strings.ToUpper(strings.TrimSpace(k)), strings.ToUpper(strings.TrimSpace(v))
		var err error
		switch k {
		case "FREQ":
			f, ok := freqs[v]
			if !ok {
				return bad("unknown FREQ %q", v)
			}
			r.opt.Freq, freqSet = f, true
		case "INTERVAL":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return bad("bad INTERVAL %q", v)
			}
			r.opt.Interval = max(n, 1)
		case "COUNT":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return bad("bad COUNT %q", v)
			}
			r.opt.Count, r.bounded = n, true
		case "UNTIL":
			u, err := parseUntil(v, ds, loc)
			if err != nil {
				return bad("bad UNTIL %q", v)
			}
			r.opt.Until, r.bounded = u, true
		case "WKST":
			w, ok := weekdays[v]
			if !ok {
				return bad("bad WKST %q", v)
			}
			r.opt.Wkst = w
		case "BYSECOND":
			r.opt.Bysecond, err = ints(v)
		case "BYMINUTE":
			r.opt.Byminute, err = ints(v)
		case "BYHOUR":
			r.opt.Byhour, err = ints(v)
		case "BYMONTHDAY":
			r.opt.Bymonthday, err = ints(v)
		case "BYYEARDAY":
			r.opt.Byyearday, err = ints(v)
		case "BYWEEKNO":
			r.opt.Byweekno, err = ints(v)
		case "BYMONTH":
			r.opt.Bymonth, err = ints(v)
		case "BYSETPOS":
			r.opt.Bysetpos, err = ints(v)
		case "BYDAY":
			for d := range strings.SplitSeq(v, ",") {
				d = strings.TrimSpace(d)
				if len(d) < 2 {
					return bad("bad BYDAY %q", v)
				}
				w, ok := weekdays[d[len(d)-2:]]
				if !ok {
					return bad("bad BYDAY %q", v)
				}
				if n := strings.TrimPrefix(d[:len(d)-2], "+"); n != "" {
					i, err := strconv.Atoi(n)
					if err != nil || i == 0 || i > 53 || i < -53 {
						return bad("bad BYDAY %q", v)
					}
					w = w.Nth(i)
				}
				r.opt.Byweekday = append(r.opt.Byweekday, w)
			}
		case "RSCALE": // RFC 7529
			if v != "GREGORIAN" {
				return bad("unsupported RSCALE %q", v)
			}
		case "SKIP": // RFC 7529; without a non-Gregorian RSCALE there is nothing to skip
		default:
			// Unknown and x-name parts: ignored (RFC 5545 §3.3.10 allows x-name parts).
		}
		if err != nil {
			return bad("bad %s %q", k, v)
		}
	}
	if !freqSet {
		return bad("no FREQ")
	}
	if r.opt.Interval > maxInterval[r.opt.Freq] {
		r.opt.Interval = maxInterval[r.opt.Freq]
	}
	return r, nil
}

func ints(v string) ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(s), "+"))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// parseUntil reads an UNTIL value for a rule starting at ds. With a DATE
// DTSTART, only the date of UNTIL counts (a DATE-TIME UNTIL is a common
// error). With a DATE-TIME DTSTART, a DATE UNTIL means the end of that day
// and a floating one is read in DTSTART's zone.
func parseUntil(v string, ds Time, loc *time.Location) (time.Time, error) {
	if len(v) < 8 {
		return time.Time{}, fmt.Errorf("%w: short UNTIL", ErrInvalidData)
	}
	day, err := time.Parse("20060102", v[:8])
	if err != nil {
		return time.Time{}, err
	}
	if ds.Date {
		return day, nil
	}
	switch {
	case len(v) == 8:
		y, m, d := day.Date()
		return time.Date(y, m, d, 23, 59, 59, 0, loc), nil
	case len(v) == 16 && v[15] == 'Z':
		return time.Parse("20060102T150405", v[:15])
	case len(v) == 15:
		return time.ParseInLocation("20060102T150405", v, loc)
	}
	return time.Time{}, fmt.Errorf("%w: bad UNTIL", ErrInvalidData)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// checkRule refuses rules that rrule-go v1.8.2 cannot iterate safely:
// rules that can never produce an instance, and rules whose iterator would
// spin without yielding. rrule-go's generator loops until it finds a value
// or passes year 9999; two cases do not end or end too late:
//
//   - HOURLY, MINUTELY and SECONDLY advance the clock by INTERVAL inside an
//     inner loop until BYHOUR (and BYMINUTE, BYSECOND) match, with no other
//     exit. From DTSTART only the positions DTSTART + k·gcd(INTERVAL, P) of
//     the day are reachable (P = 24, 1440 or 86400): if none matches, the
//     loop never ends.
//   - Day filters that no date satisfies (BYMONTHDAY=31 with BYMONTH=2,
//     BYYEARDAY=366 with BYMONTH=1, …) make it walk every period up to year
//     9999 before giving up, which takes up to a second. A probe over one
//     400-year Gregorian cycle (weekdays and leap years repeat) finds them.
//
// Values outside RFC 5545's ranges (BYSETPOS=0, BYYEARDAY=0 or 367, …) are
// refused by rrule-go itself. What remains can still take rrule-go up to
// year 9999 (an INTERVAL that never meets a satisfiable filter); that walk is
// bounded and short (well under a second), and the caller caps the steps.
func checkRule(o *rrule.ROption) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: RRULE: %s", ErrInvalidData, fmt.Sprintf(format, args...))
	}
	if _, err := rrule.NewRRule(*o); err != nil { // range checks
		return bad("%v", err)
	}
	// BYDAY ordinals count weekdays within the month (MONTHLY, or YEARLY
	// with BYMONTH) or the year (YEARLY): an ordinal past the most a
	// month (5) or a year (53) can hold selects nothing, and rrule-go
	// indexes past its tables on it. Such entries are dropped; a BYDAY
	// left with none can never match.
	if limit := ordinalLimit(o); limit > 0 && len(o.Byweekday) > 0 {
		kept := o.Byweekday[:0:0]
		for _, w := range o.Byweekday {
			if n := w.N(); n <= limit && n >= -limit {
				kept = append(kept, w)
			}
		}
		if len(kept) == 0 {
			return bad("no BYDAY ordinal fits in a %s", map[bool]string{true: "month", false: "year"}[limit == 5])
		}
		o.Byweekday = kept
	}
	// The inner clock loop of HOURLY, MINUTELY and SECONDLY.
	if o.Freq >= rrule.HOURLY {
		byh := o.Byhour
		var bym, bys []int
		period, unit := 24, 3600
		if o.Freq >= rrule.MINUTELY {
			bym, period, unit = o.Byminute, 1440, 60
		}
		if o.Freq == rrule.SECONDLY {
			bys, period, unit = o.Bysecond, 86400, 1
		}
		if len(byh)+len(bym)+len(bys) > 0 {
			h, m, s := o.Dtstart.Clock()
			pos := (h*3600 + m*60 + s) / unit
			g := gcd(o.Interval%period, period)
			found := false
			for u := pos % g; u < period && !found; u += g {
				sec := u * unit
				found = (len(byh) == 0 || contains(byh, sec/3600)) &&
					(len(bym) == 0 || contains(bym, sec/60%60)) &&
					(len(bys) == 0 || contains(bys, sec%60))
			}
			if !found {
				return bad("BYHOUR/BYMINUTE/BYSECOND can never be reached from DTSTART with INTERVAL=%d", o.Interval)
			}
		}
	}
	// DAILY with an INTERVAL of whole weeks only ever lands on DTSTART's
	// weekday: a BYDAY without it never matches, and rrule-go would search
	// up to year 9999 inside one call for an instance that never comes.
	if o.Freq == rrule.DAILY && o.Interval%7 == 0 && len(o.Byweekday) > 0 {
		wd0 := (int(o.Dtstart.Weekday()) + 6) % 7 // rrule counts from Monday = 0
		reached := false
		for _, w := range o.Byweekday {
			reached = reached || w.Day() == wd0
		}
		if !reached {
			return bad("FREQ=DAILY;INTERVAL=%d only reaches DTSTART's weekday, which BYDAY does not name", o.Interval)
		}
	}
	// BYSETPOS larger than any set.
	if len(o.Bysetpos) > 0 {
		n := 1
		for _, l := range [][]int{o.Byhour, o.Byminute, o.Bysecond} {
			n *= max(len(l), 1)
		}
		switch o.Freq {
		case rrule.YEARLY:
			n *= 366
		case rrule.MONTHLY:
			n *= 31
		case rrule.WEEKLY:
			n *= 7
		}
		ok := false
		for _, p := range o.Bysetpos {
			ok = ok || (p <= n && p >= -n)
		}
		if !ok {
			return bad("BYSETPOS can never select an instance")
		}
	}
	// Day filters: probe 400 years just before rrule-go's year 9999 limit.
	if len(o.Byweekno)+len(o.Byyearday)+len(o.Bymonthday)+len(o.Byweekday) > 0 {
		probe := rrule.ROption{
			Freq:       rrule.YEARLY,
			Dtstart:    time.Date(9600, 1, 1, 0, 0, 0, 0, time.UTC),
			Count:      1,
			Wkst:       o.Wkst,
			Bymonth:    o.Bymonth,
			Byweekno:   o.Byweekno,
			Byyearday:  o.Byyearday,
			Bymonthday: o.Bymonthday,
		}
		if o.Freq <= rrule.MONTHLY {
			// BYDAY with ordinals and BYSETPOS mean the same per month or
			// year as in the rule itself.
			probe.Freq = o.Freq
			probe.Byweekday = o.Byweekday
			probe.Bysetpos = o.Bysetpos
		} else {
			for _, w := range o.Byweekday { // ordinals are ignored below MONTHLY
				probe.Byweekday = append(probe.Byweekday, weekdayList[w.Day()])
			}
		}
		pr, err := rrule.NewRRule(probe)
		if err != nil {
			return bad("%v", err)
		}
		if _, ok := pr.Iterator()(); !ok {
			return bad("no date satisfies BYMONTH/BYWEEKNO/BYYEARDAY/BYMONTHDAY/BYDAY")
		}
	}
	return nil
}

// ordinalLimit is the largest BYDAY ordinal that can select a day under
// o's frequency, or 0 where ordinals are ignored (below MONTHLY).
func ordinalLimit(o *rrule.ROption) int {
	switch {
	case o.Freq == rrule.MONTHLY, o.Freq == rrule.YEARLY && len(o.Bymonth) > 0:
		return 5
	case o.Freq == rrule.YEARLY:
		return 53
	}
	return 0
}

// safeCheckRule is checkRule behind recover: its probes run rrule-go,
// which can panic on rules no check above foresaw, and a rule must never
// take down a request or a sync.
func safeCheckRule(o *rrule.ROption) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: RRULE: cannot be iterated (%v)", ErrInvalidData, p)
		}
	}()
	return checkRule(o)
}
