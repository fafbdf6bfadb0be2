package cache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestCandidates(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "c")
	day := func(d int) time.Time { return time.Date(2024, 3, d, 0, 0, 0, 0, time.UTC) }
	for _, o := range []Object{
		{Name: "early.ics", UID: "1", Component: "VEVENT", Start: day(1), End: day(2)},
		{Name: "mid.ics", UID: "2", Component: "VEVENT", Start: day(10), End: day(11)},
		{Name: "late.ics", UID: "3", Component: "VEVENT", Start: day(20), End: day(21)},
		{Name: "open.ics", UID: "4", Component: "VEVENT", Start: day(5)},               // recurring, no end
		{Name: "always.ics", UID: "5", Component: "VTODO"},                             // no dates
		{Name: "todo.ics", UID: "6", Component: "VTODO", Start: day(10), End: day(10)}, // instant
	} {
		o.Data = []byte("x")
		if _, _, err := s.PutObject("alice", "c", o, PutConditions{}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(comp string, start, end time.Time, want ...string) {
		t.Helper()
		got, err := s.Candidates("alice", "c", comp, start, end)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Candidates(%q, %v, %v) = %v, want %v", comp, start, end, got, want)
		}
	}
	check("VEVENT", day(9), day(12), "mid.ics", "open.ics")
	check("VEVENT", day(2), day(3), "early.ics") // inclusive bounds
	check("VEVENT", day(3), day(4))
	check("VEVENT", time.Time{}, day(4), "early.ics")
	check("VEVENT", day(15), time.Time{}, "late.ics", "open.ics")
	check("VTODO", day(10), day(10), "always.ics", "todo.ics")
	check("", day(10), day(10), "always.ics", "mid.ics", "open.ics", "todo.ics")

	// A write is seen by the next query: the index follows the revision.
	if _, _, err := s.PutObject("alice", "c", Object{Name: "mid.ics", UID: "2", Component: "VEVENT", Start: day(25), End: day(26), Data: []byte("y")}, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	check("VEVENT", day(9), day(12), "open.ics")
	if err := s.DeleteObject("alice", "c", "open.ics", ""); err != nil {
		t.Fatal(err)
	}
	check("VEVENT", day(9), day(12))
	if _, err := s.Candidates("alice", "nope", "", day(1), day(2)); err == nil {
		t.Fatal("no error for a missing calendar")
	}
}

// TestCandidatesFollowChanges runs random puts (moving spans), deletes
// and re-creations, with queries in between, and checks every answer
// against a scan of all object headers. The index is caught up from the
// change log between queries; a small MaxChanges also makes it fall back
// to a rebuild when the log no longer reaches its revision.
func TestCandidatesFollowChanges(t *testing.T) {
	for _, maxChanges := range []int{0, 5} {
		s := openTest(t, Options{MaxChanges: maxChanges})
		mustCalendar(t, s, "alice", "c")
		rng := rand.New(rand.NewPCG(7, uint64(maxChanges)))
		day := func(d int) time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d) }
		caughtUp := 0
		for step := range 600 {
			name := fmt.Sprintf("o%02d.ics", rng.IntN(60))
			switch k := rng.IntN(10); {
			case k < 7:
				o := Object{Name: name, UID: name, Component: "VEVENT", Data: fmt.Appendf(nil, "v%d", step)}
				switch rng.IntN(5) {
				case 0: // unbounded start
					o.End = day(rng.IntN(100))
				case 1: // open end
					o.Start = day(rng.IntN(100))
				default:
					o.Start = day(rng.IntN(100))
					o.End = o.Start.AddDate(0, 0, rng.IntN(10))
				}
				if rng.IntN(4) == 0 {
					o.Component = "VTODO"
				}
				if _, _, err := s.PutObject("alice", "c", o, PutConditions{}); err != nil {
					t.Fatal(err)
				}
			default:
				if err := s.DeleteObject("alice", "c", name, ""); err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
			if rng.IntN(3) > 0 {
				continue
			}
			before := s.spanIndexAt("alice", "c")
			start, end := day(rng.IntN(110)-5), day(rng.IntN(110)-5)
			if end.Before(start) {
				start, end = end, start
			}
			if rng.IntN(6) == 0 {
				start = time.Time{}
			}
			comp := []string{"", "VEVENT", "VTODO"}[rng.IntN(3)]
			got, err := s.Candidates("alice", "c", comp, start, end)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := s.ListObjects("alice", "c")
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, o := range objs {
				if (comp == "" || o.Component == comp) &&
					(o.End.IsZero() || start.IsZero() || !start.After(o.End)) && (o.Start.IsZero() || !o.Start.After(end)) {
					want = append(want, o.Name)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: Candidates(%q, %v, %v) = %v, want %v", step, comp, start, end, got, want)
			}
			if after := s.spanIndexAt("alice", "c"); before != nil && after != nil && after != before && after.revision > before.revision && maxChanges == 0 {
				caughtUp++
			}
		}
		if maxChanges == 0 && caughtUp == 0 {
			t.Error("no query ran on a caught-up index")
		}
	}
}

// spanIndexAt returns the cached index of a calendar, nil if none.
func (s *Store) spanIndexAt(user, cal string) *spanIndex {
	s.spans.mu.Lock()
	defer s.spans.mu.Unlock()
	return s.spans.m[[2]string{user, cal}]
}
