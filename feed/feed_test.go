package feed

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
	goical "github.com/emersion/go-ical"
)

// merged is a store with three member calendars filled from the
// recurrence fixtures, and what a correct feed of them holds.
type merged struct {
	store   *cache.Store
	members []Member
	// owner is the index of the member whose version of each UID wins.
	owner map[string]int
	// marker is the X-TEST-COPY the winning version of a colliding UID
	// carries.
	marker map[string]string
}

// memberFiles assigns the recurrence fixtures to three members. The UID
// event_rrule_recurrence_id is in A (recurrence-id-cancelled.ics, with a
// cancelled override) and in B (multi-uid-recurrence-id-unordered.ics,
// without it): neither has SEQUENCE, LAST-MODIFIED or DTSTAMP, so the
// first member's version wins.
var memberFiles = [3][]string{
	{
		"recurrence-id-cancelled.ics", "thunderbird-cancelled-override.ics", "google-moved-instance.ics",
		"google-override-before-master.ics", "exchange-rrule-until-z.ics", "lotus-notes-rdate-override.ics",
		"daily-count-exdate-recurrence-id.ics", "rdate-period.ics", "sabredav-weekly-two-exdates.ics",
		"cyrus-two-rrules.ics", "google-biweekly-exdate-until.ics",
	},
	{
		"multi-uid-recurrence-id-unordered.ics", "google-dst-weekly.ics", "google-birthdays.ics",
		"zimbra-recur-instances.ics", "allday-moved-over-dst-berlin.ics", "exchange-allday-moved-recurrence.ics",
		"recurrence-sequence.ics", "recurrence-id-formats.ics",
	},
	{
		"khal-thisandfuture-rdate-period.ics", "thisandfuture-reservas.ics", "overrides-without-master.ics", "duplicate-uid-sequence.ics",
		"rscale-rfc7529.ics", "caldav-non-utc-until.ics", "exdate-utc-vs-tzid-dtstart.ics",
		"rdate-on-rrule-until.ics", "until-datetime-with-date-dtstart.ics",
	},
}

// Cancelled overrides of the fixtures, as UID and the instant of their
// RECURRENCE-ID.
var cancelledInstances = []struct {
	uid string
	rid time.Time
}{
	{"event_rrule_recurrence_id", time.Date(2014, 7, 14, 5, 0, 0, 0, time.UTC)},
	{"b65c2b5b-b785-4edc-9560-e0379036d1f2", time.Date(2020, 1, 29, 21, 0, 0, 0, time.UTC)},
}

func newMerged(t *testing.T) *merged {
	t.Helper()
	dir := fixtureDir(t, "recurrence")
	m := &merged{
		store: openStore(t),
		members: []Member{
			{User: "alice", Cal: "work", Prefix: "Work, Inc: "},
			{User: "alice", Cal: "home"},
			{User: "bob", Cal: "ics", Prefix: "[C] "},
		},
		owner:  make(map[string]int),
		marker: make(map[string]string),
	}
	objs := make([][]ical.FeedObject, 3)
	for i, mb := range m.members {
		mustCalendar(t, m.store, mb.User, mb.Cal)
		for _, f := range memberFiles[i] {
			for _, o := range splitFixture(t, dir, f) {
				if _, dup := m.owner[o.UID]; !dup {
					m.owner[o.UID] = i
				}
				objs[i] = append(objs[i], o)
			}
		}
	}
	// Nine more UIDs of A collide, with versions that decide the winner
	// each way; the last one is in all three members.
	slices.SortFunc(objs[0], func(a, b ical.FeedObject) int { return strings.Compare(a.Name, b.Name) })
	type copyOf struct {
		member             int
		seqA, seq, lmA, lm string
		win                int
	}
	plans := []copyOf{
		{member: 1, seqA: "2", seq: "5", win: 1},                                                  // higher SEQUENCE in B
		{member: 2, seqA: "3", seq: "1", win: 0},                                                  // lower SEQUENCE in C
		{member: 1, seqA: "4", seq: "4", lmA: "20200101T000000Z", lm: "20210101T000000Z", win: 1}, // later LAST-MODIFIED
		{member: 2, seqA: "4", seq: "4", lmA: "20210101T000000Z", lm: "20200101T000000Z", win: 0}, // earlier LAST-MODIFIED
		{member: 1, seqA: "1", seq: "1", lmA: "20200101T000000Z", lm: "20200101T000000Z", win: 0}, // tie: first member
		{member: 2, seqA: "0", seq: "10", win: 2},
		{member: 1, seqA: "7", seq: "6", lmA: "20100101T000000Z", lm: "20300101T000000Z", win: 0}, // SEQUENCE before LAST-MODIFIED
		{member: 2, seqA: "1", seq: "1", lmA: "20200101T000000Z", lm: "20200101T000001Z", win: 2},
	}
	var colliding []ical.FeedObject
	for _, o := range objs[0] {
		if o.UID != "event_rrule_recurrence_id" && o.UID != cancelledInstances[1].uid {
			colliding = append(colliding, o)
		}
	}
	if len(colliding) < len(plans)+1 {
		t.Fatalf("only %d objects in member A", len(colliding))
	}
	letters := "ABC"
	for k, p := range plans {
		o := &colliding[k]
		for j := range objs[0] {
			if objs[0][j].UID == o.UID {
				objs[0][j].Data = setVersion(o.Data, p.seqA, p.lmA, "A")
			}
		}
		cp := *o
		cp.Data = setVersion(o.Data, p.seq, p.lm, letters[p.member:p.member+1])
		objs[p.member] = append(objs[p.member], cp)
		m.owner[o.UID] = p.win
		m.marker[o.UID] = letters[p.win : p.win+1]
	}
	// One UID in all three members: C has the highest SEQUENCE.
	last := colliding[len(plans)]
	for j := range objs[0] {
		if objs[0][j].UID == last.UID {
			objs[0][j].Data = setVersion(last.Data, "2", "", "A")
		}
	}
	for i, seq := range []string{"", "3", "9"} {
		if i == 0 {
			continue
		}
		cp := last
		cp.Data = setVersion(last.Data, seq, "", letters[i:i+1])
		objs[i] = append(objs[i], cp)
	}
	m.owner[last.UID] = 2
	m.marker[last.UID] = "C"
	if n := len(m.marker) + 1; n != 10 {
		t.Fatalf("%d colliding UIDs, want 10", n)
	}

	for i, mb := range m.members {
		for _, o := range objs[i] {
			if _, _, err := m.store.PutObject(mb.User, mb.Cal, cache.Object{
				Name: o.Name, UID: o.UID, Component: o.Component, Start: o.Start, End: o.End, Data: o.Data,
			}, cache.PutConditions{}); err != nil {
				t.Fatalf("put %s into %s/%s: %v", o.Name, mb.User, mb.Cal, err)
			}
		}
	}
	return m
}

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRenderMergedFull(t *testing.T) {
	m := newMerged(t)
	spec := Spec{Name: "all", Title: "Alle, Termine", Members: m.members, Refresh: 90 * time.Minute}
	out, err := Render(m.store, nil, spec, now)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, out)
	pythonParse(t, out)
	cal := decodeOne(t, out)

	if v := cal.Props.Get("X-WR-CALNAME"); v == nil || v.Value != `Alle\, Termine` {
		t.Errorf("X-WR-CALNAME = %+v", v)
	}
	if v := cal.Props.Get("REFRESH-INTERVAL"); v == nil || v.Value != "PT1H30M" || v.Params.Get("VALUE") != "DURATION" {
		t.Errorf("REFRESH-INTERVAL = %+v", v)
	}
	if v := cal.Props.Get("X-PUBLISHED-TTL"); v == nil || v.Value != "PT1H30M" {
		t.Errorf("X-PUBLISHED-TTL = %+v", v)
	}

	groups := byUID(cal)
	if len(groups) != len(m.owner) {
		t.Errorf("%d UIDs in the feed, want %d", len(groups), len(m.owner))
	}
	checkUnique(t, groups)
	for uid, comps := range groups {
		owner, ok := m.owner[uid]
		if !ok {
			t.Errorf("UID %q is in no member", uid)
			continue
		}
		for _, c := range comps {
			if want := m.marker[uid]; want != "" {
				if got := c.Props.Get("X-TEST-COPY"); got == nil || got.Value != want {
					t.Errorf("UID %q: component from copy %v, want %s", uid, got, want)
				}
			}
			p := c.Props.Get(goical.PropSummary)
			if p == nil {
				continue
			}
			s, _ := p.Text()
			prefix := m.members[owner].Prefix
			switch {
			case prefix != "" && !strings.HasPrefix(s, prefix):
				t.Errorf("UID %q (member %d): SUMMARY %q lacks prefix %q", uid, owner, s, prefix)
			case prefix == "" && (strings.HasPrefix(s, "Work, Inc: ") || strings.HasPrefix(s, "[C] ")):
				t.Errorf("UID %q (member %d): SUMMARY %q has another member's prefix", uid, owner, s)
			}
		}
	}
	// Full privacy keeps the cancelled overrides.
	zones := new(ical.Zones)
	for _, ci := range cancelledInstances {
		exp, err := zones.For(cal.Component).Expand(groups[ci.uid], ical.ExpandOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, in := range exp.Instances {
			if in.RecurrenceID.Equal(ci.rid) {
				found = in.Cancelled
			}
		}
		if !found {
			t.Errorf("UID %q: the cancelled override of %v is missing from the full feed", ci.uid, ci.rid)
		}
	}
	checkZones(t, cal)

	again, err := Render(m.store, nil, spec, now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, again) {
		t.Error("two renderings differ")
	}
}

// checkUnique checks that no UID has two masters and no (UID,
// RECURRENCE-ID) pair occurs twice.
func checkUnique(t *testing.T, groups map[string][]*goical.Component) {
	t.Helper()
	tz := new(ical.Zones).For(nil)
	for uid, comps := range groups {
		masters := 0
		rids := make(map[time.Time]bool)
		for _, c := range comps {
			rp := c.Props.Get(goical.PropRecurrenceID)
			if rp == nil {
				masters++
				continue
			}
			rt, _, err := tz.ParseTime(rp)
			if err != nil {
				t.Errorf("UID %q: RECURRENCE-ID %q: %v", uid, rp.Value, err)
				continue
			}
			if rids[rt.Time] {
				t.Errorf("UID %q: RECURRENCE-ID %s twice", uid, rp.Value)
			}
			rids[rt.Time] = true
		}
		if masters > 1 {
			t.Errorf("UID %q has %d masters", uid, masters)
		}
	}
}

// checkZones checks that every TZID a component references has one
// VTIMEZONE when any member had one, and that no VTIMEZONE is unused or
// repeated.
func checkZones(t *testing.T, cal *goical.Calendar) {
	t.Helper()
	refs := make(map[string]bool)
	for _, c := range cal.Children {
		if c.Name == goical.CompTimezone {
			continue
		}
		walk(&goical.Component{Children: []*goical.Component{c}}, func(c *goical.Component) {
			for _, ps := range c.Props {
				for _, p := range ps {
					if id := p.Params.Get(goical.ParamTimezoneID); id != "" {
						refs[id] = true
					}
				}
			}
		})
	}
	seen := make(map[string]bool)
	for _, c := range cal.Children {
		if c.Name != goical.CompTimezone {
			continue
		}
		id := c.Props.Get(goical.PropTimezoneID).Value
		if seen[id] {
			t.Errorf("VTIMEZONE %q twice", id)
		}
		seen[id] = true
		if !refs[id] {
			t.Errorf("VTIMEZONE %q is not used", id)
		}
	}
	if !seen["Europe/Berlin"] {
		t.Error("no VTIMEZONE Europe/Berlin, though members have one and components use it")
	}
}

func TestRenderMergedBusy(t *testing.T) {
	m := newMerged(t)
	const busy = "Occupé, busy; out"
	spec := Spec{Name: "busy", Members: m.members, Busy: true, BusySummary: busy}
	out, err := Render(m.store, nil, spec, now)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, out)
	pythonParse(t, out)
	cal := decodeOne(t, out)
	groups := byUID(cal)
	checkUnique(t, groups)
	if len(groups) < len(m.owner)/2 {
		t.Errorf("only %d of %d UIDs in the busy feed", len(groups), len(m.owner))
	}
	removed := []string{"DESCRIPTION", "LOCATION", "ATTENDEE", "ORGANIZER", "ATTACH", "URL", "CONTACT", "COMMENT", "CATEGORIES"}
	for _, c := range cal.Children {
		if c.Name == goical.CompTimezone {
			continue
		}
		uid := c.Props.Get(goical.PropUID).Value
		if len(c.Children) > 0 {
			t.Errorf("UID %q keeps sub-component %s", uid, c.Children[0].Name)
		}
		sums := c.Props.Values(goical.PropSummary)
		if len(sums) != 1 {
			t.Errorf("UID %q: %d SUMMARY properties, want 1", uid, len(sums))
		}
		for _, p := range sums {
			if s, _ := p.Text(); s != busy {
				t.Errorf("UID %q: SUMMARY %q, want %q", uid, s, busy)
			}
		}
		for _, name := range removed {
			if c.Props.Get(name) != nil {
				t.Errorf("UID %q keeps %s", uid, name)
			}
		}
		if p := c.Props.Get(goical.PropTransparency); p != nil && strings.EqualFold(p.Value, "TRANSPARENT") {
			t.Errorf("UID %q: a TRANSPARENT component is kept", uid)
		}
		if p := c.Props.Get(goical.PropStatus); p != nil && strings.EqualFold(p.Value, "CANCELLED") {
			t.Errorf("UID %q: a CANCELLED component is kept", uid)
		}
	}
	for _, l := range strings.Split(string(ical.Unfold(out)), "\r\n") {
		name, _, _ := strings.Cut(l, ":")
		name, _, _ = strings.Cut(name, ";")
		if slices.Contains(removed, strings.ToUpper(name)) || strings.EqualFold(l, "BEGIN:VALARM") ||
			strings.HasSuffix(l, ":TRANSPARENT") || strings.HasSuffix(l, ":CANCELLED") {
			t.Errorf("line %q is in the busy feed", l)
		}
	}
	// A cancelled override is left out, and its instance does not come
	// back from the master.
	zones := new(ical.Zones)
	for _, ci := range cancelledInstances {
		comps := groups[ci.uid]
		if len(comps) == 0 {
			t.Errorf("UID %q is missing", ci.uid)
			continue
		}
		exp, err := zones.For(cal.Component).Expand(comps, ical.ExpandOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(exp.Instances) < 2 {
			t.Errorf("UID %q: %d instances left", ci.uid, len(exp.Instances))
		}
		for _, in := range exp.Instances {
			if in.RecurrenceID.Equal(ci.rid) {
				t.Errorf("UID %q: the cancelled instance %v came back", ci.uid, ci.rid)
			}
		}
	}
	checkZones(t, cal)
}

func TestRenderWindow(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "u", "a")
	mustCalendar(t, s, "u", "b")
	event := func(uid, props string) []byte {
		return []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:test\r\nBEGIN:VEVENT\r\nUID:" + uid +
			"\r\nDTSTAMP:20200101T000000Z\r\nSUMMARY:" + uid + "\r\n" + props + "END:VEVENT\r\nEND:VCALENDAR\r\n")
	}
	// now is 2026-03-01 12:00Z; the window is [2026-02-01 12:00, 2026-04-30 12:00).
	objs := map[string][]byte{
		"weekly-open":      event("weekly-open", "DTSTART:20200106T090000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=WEEKLY\r\n"),
		"weekly-ended":     event("weekly-ended", "DTSTART:20200106T090000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=WEEKLY;UNTIL=20210101T000000Z\r\n"),
		"yearly-july":      event("yearly-july", "DTSTART;VALUE=DATE:20200701\r\nRRULE:FREQ=YEARLY\r\n"),
		"old":              event("old", "DTSTART:20200301T100000Z\r\nDTEND:20200301T110000Z\r\n"),
		"later":            event("later", "DTSTART:20270301T100000Z\r\nDTEND:20270301T110000Z\r\n"),
		"inside":           event("inside", "DTSTART:20260310T100000Z\r\nDTEND:20260310T110000Z\r\n"),
		"straddle":         event("straddle", "DTSTART:20260130T000000Z\r\nDTEND:20260202T000000Z\r\n"),
		"ends-at-edge":     event("ends-at-edge", "DTSTART:20260131T120000Z\r\nDTEND:20260201T120000Z\r\n"),
		"monthly-override": event("monthly-override", "DTSTART:20250115T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=MONTHLY;COUNT=24\r\n"),
	}
	// The series keeps its override from 2025, far outside the window.
	objs["monthly-override"] = bytes.Replace(objs["monthly-override"], []byte("END:VCALENDAR"),
		[]byte("BEGIN:VEVENT\r\nUID:monthly-override\r\nDTSTAMP:20200101T000000Z\r\nRECURRENCE-ID:20250215T100000Z\r\n"+
			"DTSTART:20250216T100000Z\r\nDURATION:PT1H\r\nSUMMARY:moved\r\nEND:VEVENT\r\nEND:VCALENDAR"), 1)
	for uid, data := range objs {
		putObject(t, s, "u", "a", uid+".ics", data)
	}
	// "moved-out" is inside the window in a, but b has a newer version
	// outside it: the UID is left out. "moved-in" is the other way round.
	putObject(t, s, "u", "a", "moved-out.ics", event("moved-out", "SEQUENCE:1\r\nDTSTART:20260310T100000Z\r\nDURATION:PT1H\r\n"))
	putObject(t, s, "u", "b", "moved-out.ics", event("moved-out", "SEQUENCE:2\r\nDTSTART:20250310T100000Z\r\nDURATION:PT1H\r\n"))
	putObject(t, s, "u", "a", "moved-in.ics", event("moved-in", "SEQUENCE:1\r\nDTSTART:20250310T100000Z\r\nDURATION:PT1H\r\n"))
	putObject(t, s, "u", "b", "moved-in.ics", event("moved-in", "SEQUENCE:2\r\nDTSTART:20260310T100000Z\r\nDURATION:PT1H\r\n"))

	spec := Spec{Name: "w", Members: []Member{{User: "u", Cal: "a"}, {User: "u", Cal: "b"}}, Past: 28*24*time.Hour + 0, Future: 60 * 24 * time.Hour}
	out, err := Render(s, nil, spec, now)
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, out)
	pythonParse(t, out)
	cal := decodeOne(t, out)
	groups := byUID(cal)
	var got []string
	for uid := range groups {
		got = append(got, uid)
	}
	slices.Sort(got)
	want := []string{"inside", "monthly-override", "moved-in", "straddle", "weekly-open"}
	if !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if n := len(groups["monthly-override"]); n != 2 {
		t.Errorf("monthly-override has %d components, want the series whole (2)", n)
	}
	if p := groups["moved-in"][0].Props.Get(goical.PropSequence); p == nil || p.Value != "2" {
		t.Errorf("moved-in: kept SEQUENCE %v, want 2", p)
	}

	// No window: everything.
	spec.Past, spec.Future = 0, 0
	out, err = Render(s, nil, spec, now)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(byUID(decodeOne(t, out))); n != len(objs)+2 {
		t.Errorf("unbounded: %d UIDs, want %d", n, len(objs)+2)
	}
}

func TestRenderFoldingAndBytes(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "u", "a")
	long := strings.Repeat("Grüße aus Köln 🎉, ", 12)
	// A line folded inside a UTF-8 sequence (é is C3 A9), LF line ends, a
	// blank line, and an unfolded line far over 75 octets.
	data := "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:test\n\nBEGIN:VEVENT\nUID:fold\nDTSTAMP:20200101T000000Z\n" +
		"DTSTART:20260310T100000Z\nSUMMARY:caf\xc3\n \xa9 au lait\nDESCRIPTION:" + ical.EscapeText(long) + "\n" +
		"LOCATION:short\r\n  folded nicely\r\nEND:VEVENT\nEND:VCALENDAR\n"
	putObject(t, s, "u", "a", "fold.ics", []byte(data))
	for _, spec := range []Spec{
		{Name: "plain", Members: []Member{{User: "u", Cal: "a"}}},
		{Name: "prefix", Members: []Member{{User: "u", Cal: "a", Prefix: strings.Repeat("Präfix; ", 10)}}},
	} {
		t.Run(spec.Name, func(t *testing.T) {
			out, err := Render(s, nil, spec, now)
			if err != nil {
				t.Fatal(err)
			}
			checkLines(t, out)
			pythonParse(t, out)
			ev := decodeOne(t, out).Children[0]
			sum, _ := ev.Props.Get(goical.PropSummary).Text()
			if want := spec.Members[0].Prefix + "café au lait"; sum != want {
				t.Errorf("SUMMARY %q, want %q", sum, want)
			}
			if d, _ := ev.Props.Get(goical.PropDescription).Text(); d != long {
				t.Errorf("DESCRIPTION %q, want %q", d, long)
			}
			// A line folded well is copied as it was.
			if !bytes.Contains(out, []byte("LOCATION:short\r\n  folded nicely\r\n")) {
				t.Error("the folded LOCATION line was not copied as stored")
			}
		})
	}
}

// TestRenderUntouched checks that full privacy without prefix copies
// every component byte for byte (CRLF and well folded as stored).
func TestRenderUntouched(t *testing.T) {
	dir := fixtureDir(t, "recurrence")
	s := openStore(t)
	mustCalendar(t, s, "u", "a")
	var want [][]byte
	for _, o := range splitFixture(t, dir, "google-moved-instance.ics") {
		putObject(t, s, "u", "a", o.Name, o.Data)
		for _, c := range ical.SplitRaw(o.Data) {
			want = append(want, c.Data)
		}
	}
	out, err := Render(s, nil, Spec{Name: "x", Members: []Member{{User: "u", Cal: "a"}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !bytes.Contains(out, w) {
			t.Errorf("component not copied as stored:\n%s", w)
		}
	}
}

func TestRenderZones(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "u", "a")
	mustCalendar(t, s, "u", "b")
	vtz := func(id, off string) string {
		return "BEGIN:VTIMEZONE\r\nTZID:" + id + "\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:" + off +
			"\r\nTZOFFSETTO:" + off + "\r\nTZNAME:X\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
	}
	obj := func(uid, zones, tzid string) []byte {
		return []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:test\r\n" + zones + "BEGIN:VEVENT\r\nUID:" + uid +
			"\r\nDTSTAMP:20200101T000000Z\r\nDTSTART;TZID=" + tzid + ":20260310T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
	}
	putObject(t, s, "u", "a", "1.ics", obj("1", vtz("Custom Zone", "+0300")+vtz("Unused/Zone", "+0500"), `"Custom Zone"`))
	putObject(t, s, "u", "b", "2.ics", obj("2", vtz("Custom Zone", "+0400"), "Custom Zone"))
	putObject(t, s, "u", "b", "3.ics", obj("3", vtz("Dropped/Zone", "+0600"), "Dropped/Zone"))
	putObject(t, s, "u", "b", "4.ics", obj("4", "", "Europe/Paris"))
	// 3.ics is busy-dropped (TRANSPARENT): its zone goes with it.
	data, _ := s.GetObjects("u", "b", []string{"3.ics"})
	putObject(t, s, "u", "b", "3.ics", bytes.Replace(data[0].Data, []byte("DTSTAMP"), []byte("TRANSP:TRANSPARENT\r\nDTSTAMP"), 1))

	out, err := Render(s, nil, Spec{Name: "z", Busy: true, Members: []Member{{User: "u", Cal: "a"}, {User: "u", Cal: "b"}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	cal := decodeOne(t, out)
	var ids []string
	for _, c := range cal.Children {
		if c.Name == goical.CompTimezone {
			ids = append(ids, c.Props.Get(goical.PropTimezoneID).Value)
			if off := c.Children[0].Props.Get("TZOFFSETTO").Value; off != "+0300" {
				t.Errorf("VTIMEZONE from the second member (%s) won", off)
			}
		}
	}
	if !slices.Equal(ids, []string{"Custom Zone"}) {
		t.Errorf("VTIMEZONEs %q, want [Custom Zone]", ids)
	}
	if n := len(byUID(cal)); n != 3 {
		t.Errorf("%d UIDs, want 3", n)
	}
}

func TestWinner(t *testing.T) {
	obj := func(props ...string) cache.Object {
		return cache.Object{Data: []byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n" + strings.Join(props, "\r\n") +
			"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")}
	}
	override := func(props ...string) string {
		return "END:VEVENT\r\nBEGIN:VEVENT\r\nUID:x\r\nRECURRENCE-ID:20200101T000000Z\r\n" + strings.Join(props, "\r\n")
	}
	for _, tc := range []struct {
		name string
		objs []cache.Object
		want int
	}{
		{"none", nil, -1},
		{"one", []cache.Object{obj()}, 0},
		{"sequence", []cache.Object{obj("SEQUENCE:1"), obj("SEQUENCE:2"), obj("SEQUENCE:0")}, 1},
		{"sequence before last-modified", []cache.Object{obj("SEQUENCE:3", "LAST-MODIFIED:20200101T000000Z"), obj("SEQUENCE:2", "LAST-MODIFIED:20250101T000000Z")}, 0},
		{"last-modified", []cache.Object{obj("SEQUENCE:2", "LAST-MODIFIED:20200101T000000Z"), obj("SEQUENCE:2", "LAST-MODIFIED:20250101T000000Z")}, 1},
		{"missing sequence is 0", []cache.Object{obj("LAST-MODIFIED:20250101T000000Z"), obj("SEQUENCE:0", "LAST-MODIFIED:20250102T000000Z")}, 1},
		{"dtstamp", []cache.Object{obj("DTSTAMP:20200102T000000Z"), obj("DTSTAMP:20200103T000000Z")}, 1},
		{"last-modified before dtstamp", []cache.Object{obj("LAST-MODIFIED:20200105T000000Z", "DTSTAMP:20200101T000000Z"), obj("LAST-MODIFIED:20200104T000000Z", "DTSTAMP:20200109T000000Z")}, 0},
		{"tie: first", []cache.Object{obj("SEQUENCE:1"), obj("SEQUENCE:1")}, 0},
		{"edited override", []cache.Object{obj("SEQUENCE:1", "LAST-MODIFIED:20200101T000000Z"), obj("SEQUENCE:1", "LAST-MODIFIED:20200101T000000Z", override("SEQUENCE:1", "LAST-MODIFIED:20240101T000000Z"))}, 1},
		{"valarm ignored", []cache.Object{obj("SEQUENCE:1"), obj("BEGIN:VALARM", "SEQUENCE:5", "END:VALARM")}, 0},
		{"folded, lower case", []cache.Object{obj("SEQUENCE:1"), obj("sequence:", " 12")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Winner(tc.objs); got != tc.want {
				t.Errorf("Winner = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	s := openStore(t)
	for _, c := range []string{"a", "b", "other"} {
		mustCalendar(t, s, "u", c)
	}
	ev := func(uid, summary string) []byte {
		return []byte(fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\nBEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20200101T000000Z\r\n"+
			"DTSTART:20260310T100000Z\r\nSUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", uid, summary))
	}
	putObject(t, s, "u", "a", "1.ics", ev("1", "one"))
	spec := Spec{Name: "v", Members: []Member{{User: "u", Cal: "a"}, {User: "u", Cal: "b"}}}
	version := func(spec Spec) string {
		t.Helper()
		v, err := Version(s, spec)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v0 := version(spec)
	if v0 != version(spec) || len(v0) != 32 {
		t.Fatalf("Version %q is not stable or not 32 hex digits", v0)
	}
	putObject(t, s, "u", "other", "1.ics", ev("1", "elsewhere"))
	if v := version(spec); v != v0 {
		t.Error("a change in a calendar that is not a member changed the version")
	}
	putObject(t, s, "u", "b", "2.ics", ev("2", "two"))
	v1 := version(spec)
	if v1 == v0 {
		t.Error("a change in member b did not change the version")
	}
	if err := s.DeleteObject("u", "a", "1.ics", ""); err != nil {
		t.Fatal(err)
	}
	if version(spec) == v1 {
		t.Error("a delete in member a did not change the version")
	}
	for _, change := range []func(*Spec){
		func(s *Spec) { s.Busy = true },
		func(s *Spec) { s.Title = "x" },
		func(s *Spec) { s.Members[0].Prefix = "p" },
		func(s *Spec) { s.Members[0], s.Members[1] = s.Members[1], s.Members[0] },
		func(s *Spec) { s.Future = time.Hour },
	} {
		sp := spec
		sp.Members = slices.Clone(spec.Members)
		change(&sp)
		if version(sp) == version(spec) {
			t.Errorf("spec change %+v did not change the version", sp)
		}
	}
	if _, err := Version(s, Spec{Members: []Member{{User: "u", Cal: "missing"}}}); !isNotFound(err) {
		t.Errorf("Version of a missing member: %v, want ErrNotFound", err)
	}
	if _, err := Render(s, nil, Spec{Members: []Member{{User: "u", Cal: "missing"}}}, now); !isNotFound(err) {
		t.Errorf("Render of a missing member: %v, want ErrNotFound", err)
	}
}

func isNotFound(err error) bool { return errors.Is(err, cache.ErrNotFound) }

func TestRenderEmpty(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "u", "a")
	for _, spec := range []Spec{{Name: "none"}, {Name: "empty", Members: []Member{{User: "u", Cal: "a"}, {User: "u", Cal: "a"}}}} {
		out, err := Render(s, nil, spec, now)
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, out)
		pythonParse(t, out)
		cal := decodeOne(t, out)
		if len(cal.Children) != 0 {
			t.Errorf("%s: %d components", spec.Name, len(cal.Children))
		}
		if v := cal.Props.Get("X-WR-CALNAME"); v == nil || v.Value != spec.Name {
			t.Errorf("%s: X-WR-CALNAME %v, want the name", spec.Name, v)
		}
		if cal.Props.Get("REFRESH-INTERVAL") != nil || cal.Props.Get("X-PUBLISHED-TTL") != nil {
			t.Errorf("%s: refresh properties without Refresh", spec.Name)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "PT1H", 90 * time.Minute: "PT1H30M", 24 * time.Hour: "P1D", 36 * time.Hour: "P1DT12H",
		500 * time.Millisecond: "PT1S", 61 * time.Second: "PT1M1S", 7 * 24 * time.Hour: "P7D",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestUnknownComponentsLeftOut: a stored object may hold a top-level X-
// component; no feed carries it (subscribers refuse unknown components).
func TestUnknownComponentsLeftOut(t *testing.T) {
	st := openStoreForXTest(t)
	data := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:x1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240101T100000Z\r\nSUMMARY:Kept\r\nEND:VEVENT\r\nBEGIN:X-UNKNOWN\r\nX-FOO:bar\r\nEND:X-UNKNOWN\r\nEND:VCALENDAR\r\n"
	if _, _, err := st.PutObject("alice", "c", cache.Object{Name: "x1.ics", UID: "x1", Component: "VEVENT", Data: []byte(data)}, cache.PutConditions{}); err != nil {
		t.Fatal(err)
	}
	for _, busy := range []bool{false, true} {
		out, err := Render(st, nil, Spec{Name: "f", Busy: busy, Members: []Member{{User: "alice", Cal: "c"}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "X-UNKNOWN") || !strings.Contains(string(out), "BEGIN:VEVENT") {
			t.Fatalf("busy=%v:\n%s", busy, out)
		}
	}
}

func openStoreForXTest(t *testing.T) *cache.Store {
	t.Helper()
	st, err := cache.Open(filepath.Join(t.TempDir(), "x.db"), cache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: "c", Components: []string{"VEVENT"}}); err != nil {
		t.Fatal(err)
	}
	return st
}
