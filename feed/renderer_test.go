package feed

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// poolObject is an object the random tests store: its UID and bytes.
type poolObject struct {
	uid  string
	data []byte
}

// fixturePool returns objects from the shared corpus: every file of some
// directories split by UID (ical.SplitFeed, which normalises them), and
// the files holding one object stored as they are (LF line ends, BOMs,
// bad folding, blank lines, X- components). Objects that take more than
// a millisecond to expand over a few years are left out: the reference
// Render expands them at every step, which made the test slow.
func fixturePool(t *testing.T) []poolObject {
	t.Helper()
	var out []poolObject
	seen := make(map[string]bool)
	zones := new(ical.Zones)
	wide := window{time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	add := func(data []byte) {
		c, err := ical.Parse(data)
		if err != nil {
			return
		}
		info, err := new(ical.Zones).Inspect(c)
		if err != nil || seen[info.UID] {
			return
		}
		if start := time.Now(); expandKeeps(zones, wide, data) && time.Since(start) > time.Millisecond {
			return
		}
		seen[info.UID] = true
		out = append(out, poolObject{uid: info.UID, data: data})
	}
	for _, sub := range []string{"recurrence", "timezones", "components", "encoding", "feeds"} {
		dir := fixtureDir(t, sub)
		files, err := filepath.Glob(filepath.Join(dir, "*.ics"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no fixtures in %s: %v", dir, err)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) > 64<<10 {
				continue // big feeds: a few are enough
			}
			add(raw)
			objs, _, err := new(ical.Zones).SplitFeed(raw)
			if err != nil {
				continue
			}
			for k, o := range objs {
				if k < 40 {
					add(o.Data)
				}
			}
		}
	}
	if len(out) < 200 {
		t.Fatalf("only %d fixture objects", len(out))
	}
	return out
}

// edgeEvent returns a synthetic event near a window edge: in
// Europe/Berlin (a VTIMEZONE many objects share), in UTC, all-day, or
// weekly (bounded or not), with optional busy-mode details.
func edgeEvent(uid string, start time.Time, kind int) []byte {
	var b []byte
	b = append(b, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//test//EN\r\n"...)
	dt := func(name string, t time.Time) {
		switch kind % 4 {
		case 0:
			b = append(b, name+";TZID=Europe/Berlin:"+t.In(berlinLoc).Format("20060102T150405")+"\r\n"...)
		case 1:
			b = append(b, name+":"+t.UTC().Format("20060102T150405Z")+"\r\n"...)
		case 2:
			b = append(b, name+";VALUE=DATE:"+t.UTC().Format("20060102")+"\r\n"...)
		default:
			b = append(b, name+";TZID=\"Berlin, Europe\":"+t.In(berlinLoc).Format("20060102T150405")+"\r\n"...)
		}
	}
	switch kind % 4 {
	case 0:
		b = append(b, berlin...)
	case 3:
		// A TZID with an escaped comma, referenced unescaped and quoted
		// (as Exchange writes it).
		b = append(b, strings.Replace(berlin, "TZID:Europe/Berlin", `TZID:Berlin\, Europe`, 1)...)
	}
	b = append(b, "BEGIN:VEVENT\r\nUID:"+uid+"\r\nDTSTAMP:20240101T000000Z\r\n"...)
	dt("DTSTART", start)
	switch kind % 4 {
	case 2:
		dt("DTEND", start.AddDate(0, 0, 1))
	default:
		dt("DTEND", start.Add(time.Hour))
	}
	switch kind % 5 {
	case 1:
		b = append(b, "RRULE:FREQ=WEEKLY;COUNT=4\r\n"...)
	case 2:
		b = append(b, "RRULE:FREQ=WEEKLY\r\n"...)
	case 3:
		b = append(b, "TRANSP:TRANSPARENT\r\n"...)
	}
	b = append(b, "SUMMARY:Edge\\, "+uid+"\r\nLOCATION:Room 1\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\nEND:VEVENT\r\n"...)
	if kind%5 == 1 {
		// An override of the second instance, cancelled now and then.
		b = append(b, "BEGIN:VEVENT\r\nUID:"+uid+"\r\nDTSTAMP:20240101T000000Z\r\n"...)
		second := start.AddDate(0, 0, 7)
		dt("RECURRENCE-ID", second)
		dt("DTSTART", second.Add(2*time.Hour))
		if kind%4 == 2 {
			dt("DTEND", second.AddDate(0, 0, 1))
		} else {
			dt("DTEND", second.Add(3*time.Hour))
		}
		if kind%3 == 0 {
			b = append(b, "STATUS:CANCELLED\r\n"...)
		}
		b = append(b, "SUMMARY:Moved\r\nEND:VEVENT\r\n"...)
	}
	return append(b, "END:VCALENDAR\r\n"...)
}

var berlinLoc = func() *time.Location {
	l, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	return l
}()

// tryPut stores data as name in user/cal, indexed as the gateway does.
func tryPut(s *cache.Store, user, cal, name string, data []byte) error {
	c, err := ical.Parse(data)
	if err != nil {
		return err
	}
	info, err := new(ical.Zones).Inspect(c)
	if err != nil {
		return err
	}
	_, _, err = s.PutObject(user, cal, cache.Object{Name: name, UID: info.UID, Component: info.Component,
		Start: info.Start, End: info.End, Data: data}, cache.PutConditions{})
	return err
}

// TestRendererMatchesRender applies random changes to three member
// calendars (puts, replaces with newer and older versions, deletes, UIDs
// moving and copied between members, a member deleted and re-created, a
// change log shorter than the changes between two renderings) and checks
// after each step that a Renderer per spec (full, prefixes, busy,
// windows) returns Render's bytes, for a time that moves across the
// windows' edges.
func TestRendererMatchesRender(t *testing.T) {
	pool := fixturePool(t)
	s, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{NoSync: true, MaxChanges: 12})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	members := []Member{
		{User: "alice", Cal: "work", Prefix: "Work, Inc: "},
		{User: "alice", Cal: "home"},
		{User: "bob", Cal: "ics", Prefix: "[C] "},
	}
	plain := []Member{{User: "alice", Cal: "work"}, {User: "alice", Cal: "home"}, {User: "bob", Cal: "ics"}}
	for _, m := range members {
		mustCalendar(t, s, m.User, m.Cal)
	}
	t0 := time.Date(2024, 6, 15, 12, 0, 0, 0, time.UTC)
	specs := []Spec{
		{Name: "full", Members: plain},
		{Name: "prefix", Title: "Prefixed, window", Members: members, Past: 30 * 24 * time.Hour, Future: 90 * 24 * time.Hour, Refresh: time.Hour},
		{Name: "busy", Members: members, Busy: true, BusySummary: "Not free; sorry", Past: 24 * time.Hour, Future: 7 * 24 * time.Hour},
		{Name: "busy-all", Members: slices.Concat(members, members[:1]), Busy: true},
		{Name: "future", Members: []Member{members[2], members[0]}, Future: 365 * 24 * time.Hour},
		{Name: "past", Members: members[1:], Past: 400 * 24 * time.Hour},
		// Shorter than a week: weekly series straddle it without an
		// instance in it, depending on the time.
		{Name: "short", Members: members, Busy: true, Past: time.Hour, Future: 2 * time.Hour},
	}
	// Synthetic events sit on and around every window edge of every spec.
	var edges []poolObject
	for _, sp := range specs {
		for _, at := range []time.Time{t0.Add(-sp.Past), t0.Add(sp.Future), t0} {
			for k, d := range []time.Duration{0, -time.Hour, time.Hour, -30 * time.Minute, 24 * time.Hour, -25 * time.Hour, -7 * 24 * time.Hour} {
				uid := fmt.Sprintf("edge-%s-%d-%d@calgate.test", sp.Name, at.Unix(), k)
				edges = append(edges, poolObject{uid: uid, data: edgeEvent(uid, at.Add(d), k+len(edges))})
			}
		}
	}
	nows := []time.Duration{0, time.Hour, -time.Hour, 30 * time.Minute, 24 * time.Hour, -24 * time.Hour, 7 * 24 * time.Hour, 90 * 24 * time.Hour, -400 * 24 * time.Hour, 3 * 365 * 24 * time.Hour}

	rng := rand.New(rand.NewPCG(1, 2))
	renderers := make([]*Renderer, len(specs))
	prev := make([]Rendering, len(specs))
	for i := range renderers {
		renderers[i] = new(Renderer)
	}
	zones := new(ical.Zones)
	type stored struct {
		m    int
		name string
		uid  string
		data []byte
	}
	var objs []stored // what the members hold
	seq := 0
	pick := func() poolObject {
		if rng.IntN(3) == 0 {
			return edges[rng.IntN(len(edges))]
		}
		return pool[rng.IntN(len(pool))]
	}
	has := func(m int, uid string) bool {
		return slices.ContainsFunc(objs, func(o stored) bool { return o.m == m && o.uid == uid })
	}
	put := func(m int, name, uid string, data []byte) {
		mb := members[m]
		if err := tryPut(s, mb.User, mb.Cal, name, data); err != nil {
			t.Fatalf("put %s/%s/%s: %v", mb.User, mb.Cal, name, err)
		}
		objs = slices.DeleteFunc(objs, func(o stored) bool { return o.m == m && o.name == name })
		objs = append(objs, stored{m, name, uid, data})
	}
	del := func(k int) {
		o := objs[k]
		mb := members[o.m]
		if err := s.DeleteObject(mb.User, mb.Cal, o.name, ""); err != nil {
			t.Fatal(err)
		}
		objs = slices.Delete(objs, k, k+1)
	}
	version := func(data []byte) []byte {
		seq++
		lm := ""
		if rng.IntN(2) == 0 {
			lm = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(1000)) * time.Hour).Format("20060102T150405Z")
		}
		return setVersion(data, fmt.Sprint(rng.IntN(4)), lm, fmt.Sprint("v", seq))
	}
	// Start with a few hundred objects, some UIDs in several members.
	for len(objs) < 300 {
		p, m := pick(), rng.IntN(3)
		if !has(m, p.uid) {
			put(m, fmt.Sprintf("o%04d.ics", len(objs)), p.uid, p.data)
		}
	}

	var log []string
	at := t0
	deleted := -1 // a member calendar deleted in the last step
	steps := 120
	if raceEnabled {
		steps = 30
	}
	for step := range steps {
		if deleted >= 0 {
			mustCalendar(t, s, members[deleted].User, members[deleted].Cal)
			log = append(log, fmt.Sprintf("re-create member %d", deleted))
			deleted = -1
		}
		for range 1 + rng.IntN(6) {
			switch op := rng.IntN(20); {
			case op < 5: // a new object
				p, m := pick(), rng.IntN(3)
				if has(m, p.uid) {
					continue
				}
				name := fmt.Sprintf("n%d-%d.ics", step, rng.IntN(1000))
				put(m, name, p.uid, p.data)
				log = append(log, fmt.Sprintf("put %d/%s %s", m, name, p.uid))
			case op < 10 && len(objs) > 0: // a new version in place
				k := rng.IntN(len(objs))
				o := objs[k]
				put(o.m, o.name, o.uid, version(o.data))
				log = append(log, fmt.Sprintf("replace %d/%s", o.m, o.name))
			case op < 13 && len(objs) > 0:
				k := rng.IntN(len(objs))
				log = append(log, fmt.Sprintf("delete %d/%s", objs[k].m, objs[k].name))
				del(k)
			case op < 16 && len(objs) > 0: // a UID moves (or is copied) to another member
				k := rng.IntN(len(objs))
				o := objs[k]
				to := (o.m + 1 + rng.IntN(2)) % 3
				if has(to, o.uid) {
					continue
				}
				if rng.IntN(2) == 0 {
					del(k)
				}
				name := fmt.Sprintf("moved%d.ics", step)
				put(to, name, o.uid, version(o.data))
				log = append(log, fmt.Sprintf("move %d/%s to %d/%s", o.m, o.name, to, name))
			case op < 17: // the same object under a new name in the same member
				if len(objs) == 0 {
					continue
				}
				k := rng.IntN(len(objs))
				o := objs[k]
				del(k)
				name := fmt.Sprintf("renamed%d.ics", step)
				put(o.m, name, o.uid, o.data)
				log = append(log, fmt.Sprintf("rename %d/%s to %s", o.m, o.name, name))
			case op < 18 && step%37 == 5: // a member goes away
				m := rng.IntN(3)
				if err := s.DeleteCalendar(members[m].User, members[m].Cal); err != nil {
					t.Fatal(err)
				}
				objs = slices.DeleteFunc(objs, func(o stored) bool { return o.m == m })
				deleted = m
				log = append(log, fmt.Sprintf("delete member %d", m))
			}
			if deleted >= 0 {
				break
			}
		}
		if rng.IntN(3) == 0 {
			at = t0.Add(nows[rng.IntN(len(nows))])
		}
		for i, sp := range specs {
			if rng.IntN(3) == 0 {
				continue // this renderer falls behind by more changes
			}
			want, werr := Render(s, zones, sp, at)
			got, gerr := renderers[i].Render(s, zones, sp, at)
			if (werr != nil) != (gerr != nil) || werr != nil && !isNotFound(gerr) {
				t.Fatalf("step %d, %s: Render error %v, Renderer error %v", step, sp.Name, werr, gerr)
			}
			if !bytes.Equal(got.Body, want) {
				t.Fatalf("step %d, %s at %s: Renderer differs from Render: %s\nlast changes: %s", step, sp.Name, at,
					firstDiff(want, got.Body), strings.Join(log[max(0, len(log)-8):], "; "))
			}
			if gerr == nil && prev[i].Body != nil && bytes.Equal(got.Body, prev[i].Body) != (got.Sum == prev[i].Sum) {
				t.Fatalf("step %d, %s: body equal to the last one: %v, Sum equal: %v", step, sp.Name, bytes.Equal(got.Body, prev[i].Body), got.Sum == prev[i].Sum)
			}
			if gerr == nil {
				prev[i] = got
			}
		}
	}
	// Entries of deleted objects are gone: each renderer knows exactly
	// the objects of its members.
	for i, sp := range specs {
		if _, err := renderers[i].Render(s, zones, sp, t0); err != nil {
			t.Fatal(err)
		}
		for _, cs := range renderers[i].cals {
			m := slices.IndexFunc(members, func(mb Member) bool { return mb.User == cs.user && mb.Cal == cs.cal })
			n := 0
			for _, o := range objs {
				if o.m == m {
					n++
				}
			}
			if len(cs.byName) != n || len(cs.order) != n {
				t.Errorf("%s: member %d: renderer keeps %d (%d in order) objects, the store has %d", sp.Name, m, len(cs.byName), len(cs.order), n)
			}
		}
	}
}

// firstDiff describes where a and b first differ, by line.
func firstDiff(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\r\n")), bytes.Split(b, []byte("\r\n"))
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y []byte
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("line %d: want %q, got %q (%d vs %d lines)", i+1, x, y, len(la), len(lb))
		}
	}
	return "same lines"
}

// TestRendererReadsOnlyChanges checks that after one replaced object a
// Renderer transforms that object alone, that an unchanged store gives
// back the same rendering without work, and that deleting everything
// leaves nothing behind.
func TestRendererReadsOnlyChanges(t *testing.T) {
	s := openStore(t)
	mustCalendar(t, s, "u", "a")
	mustCalendar(t, s, "u", "b")
	spec := Spec{Name: "f", Members: []Member{{User: "u", Cal: "a", Prefix: "[A] "}, {User: "u", Cal: "b"}}}
	for i := range 50 {
		putObject(t, s, "u", []string{"a", "b"}[i%2], fmt.Sprintf("%02d.ics", i), benchEvent(i%2, i))
	}
	r := new(Renderer)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first, err := r.Render(s, nil, spec, at)
	if err != nil {
		t.Fatal(err)
	}
	countPrepared := func() (n int) {
		for _, cs := range r.cals {
			for _, e := range cs.order {
				if e.prep != nil {
					n++
				}
			}
		}
		return n
	}
	if n := countPrepared(); n != 50 {
		t.Fatalf("%d objects prepared, want 50", n)
	}
	again, err := r.Render(s, nil, spec, at)
	if err != nil || &again.Body[0] != &first.Body[0] || again.Sum != first.Sum {
		t.Fatalf("an unchanged store rendered again (err %v)", err)
	}
	// Mark every prepared object; a replaced one gets a new one.
	marks := make(map[*prepared]bool)
	for _, cs := range r.cals {
		for _, e := range cs.order {
			marks[e.prep] = true
		}
	}
	putObject(t, s, "u", "b", "07.ics", setVersion(benchEvent(1, 7), "9", "", "new"))
	out, err := r.Render(s, nil, spec, at)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := Render(s, nil, spec, at); !bytes.Equal(out.Body, want) {
		t.Fatalf("after a replace: %s", firstDiff(want, out.Body))
	}
	if out.Sum == first.Sum {
		t.Fatal("a new rendering has the old Sum")
	}
	fresh := 0
	for _, cs := range r.cals {
		for _, e := range cs.order {
			if !marks[e.prep] {
				fresh++
				if e.name != "07.ics" {
					t.Errorf("%s/%s was transformed again", cs.cal, e.name)
				}
			}
		}
	}
	if fresh != 1 {
		t.Fatalf("%d objects transformed again, want 1", fresh)
	}
	if r.Size() < int64(len(out.Body)) {
		t.Fatalf("Size %d is less than the rendering (%d bytes)", r.Size(), len(out.Body))
	}
	for i := range 50 {
		if err := s.DeleteObject("u", []string{"a", "b"}[i%2], fmt.Sprintf("%02d.ics", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	out, err = r.Render(s, nil, spec, at)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := Render(s, nil, spec, at); !bytes.Equal(out.Body, want) {
		t.Fatalf("after deleting everything: %s", firstDiff(want, out.Body))
	}
	for _, cs := range r.cals {
		if len(cs.byName) != 0 || len(cs.order) != 0 {
			t.Fatalf("%s: %d entries left after every object was deleted", cs.cal, len(cs.byName))
		}
	}
	if r.Size() > int64(len(out.Body))+1024 {
		t.Fatalf("Size %d after every object was deleted", r.Size())
	}
	// A member calendar deleted: an error, and its objects are forgotten.
	putObject(t, s, "u", "b", "late.ics", benchEvent(1, 99))
	if _, err := r.Render(s, nil, spec, at); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCalendar("u", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Render(s, nil, spec, at); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("a deleted member: %v", err)
	}
	if n := len(r.cals[1].byName); n != 0 {
		t.Fatalf("%d objects of a deleted member kept", n)
	}
	if _, err := r.Render(s, nil, Spec{Name: "x", Members: []Member{{User: "u", Cal: "nope"}}}, at); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("a missing member: %v", err)
	}
}
