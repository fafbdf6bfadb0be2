package cache

import (
	"fmt"
	"testing"
)

func TestStats(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "work", "caldav")
	mustKind(t, s, "home", "local")
	if _, err := s.CreateCalendar(Calendar{User: "bob", ID: "b", Components: []string{"VEVENT"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		name := fmt.Sprintf("e%d.ics", i)
		pushed(t, s, "work", name, "uid-"+name, "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", `"u1"`)
	}
	// Two client writes to the caldav calendar queue two outbox entries.
	for _, name := range []string{"e0.ics", "new.ics"} {
		if _, _, err := s.PutObject("alice", "work", Object{Name: name, UID: "uid-" + name, Component: "VEVENT",
			Data: []byte("BEGIN:VCALENDAR\r\nX:" + name + "\r\nEND:VCALENDAR\r\n")}, PutConditions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.PutObject("alice", "home", Object{Name: "h.ics", UID: "h", Component: "VEVENT",
		Data: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")}, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.PutConflict(Conflict{User: "alice", Cal: "work", Name: "e1.ics", Kept: "upstream"}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Stats("alice")
	if err != nil {
		t.Fatal(err)
	}
	want := []CalendarStats{
		{User: "alice", Cal: "home", Kind: "local", Objects: 1},
		{User: "alice", Cal: "work", Kind: "caldav", Objects: 4, Pending: 2, Conflicts: 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Stats(alice) = %+v\nwant %+v", got, want)
	}
	all, err := s.Stats("")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].User != "alice" || all[2].User != "bob" || all[2].Objects != 0 {
		t.Errorf("Stats(\"\") = %+v, want alice's two calendars and bob's empty one", all)
	}
}
