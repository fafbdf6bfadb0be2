package cache

import (
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
