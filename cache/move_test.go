package cache

import (
	"errors"
	"testing"
)

func TestMoveObject(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "a")
	mustCalendar(t, s, "alice", "b")
	src := put(t, s, "a", "x.ics", "uid-x", "X data")
	revA, revB := revision(t, s, "a"), revision(t, s, "b")

	out, created, err := s.MoveObject("alice", "a", "x.ics", "b", "y.ics", false, PutConditions{})
	if err != nil || !created || out.ETag != src.ETag || out.UID != "uid-x" {
		t.Fatalf("MoveObject = %+v, %v, %v", out, created, err)
	}
	if _, err := s.GetObject("alice", "a", "x.ics"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("source still there: %v", err)
	}
	got, err := s.GetObject("alice", "b", "y.ics")
	if err != nil || string(got.Data) != "X data" {
		t.Fatalf("destination: %q %v", got.Data, err)
	}
	if revision(t, s, "a") != revA+1 || revision(t, s, "b") != revB+1 {
		t.Fatal("a move must bump both calendars once")
	}
	_, changes, err := s.Changes("alice", "a", revA)
	if err != nil || len(changes) != 1 || !changes[0].Deleted {
		t.Fatalf("source tombstone: %+v %v", changes, err)
	}
	if _, err := s.LookupUID("alice", "a", "uid-x"); !errors.Is(err, ErrNotFound) {
		t.Fatal("source UID index not cleared")
	}

	// Copy keeps the source.
	if _, _, err := s.MoveObject("alice", "b", "y.ics", "a", "copy.ics", true, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetObject("alice", "b", "y.ics"); err != nil {
		t.Fatal("copy removed the source")
	}

	// A refused destination leaves both sides untouched.
	put(t, s, "b", "other.ics", "uid-other", "O")
	put(t, s, "a", "clash.ics", "uid-other", "C")
	ra, rb := revision(t, s, "a"), revision(t, s, "b")
	_, _, err = s.MoveObject("alice", "a", "clash.ics", "b", "new.ics", false, PutConditions{})
	var uc *UIDConflictError
	if !errors.As(err, &uc) || uc.Name != "other.ics" {
		t.Fatalf("UID conflict not reported: %v", err)
	}
	if _, err := s.GetObject("alice", "a", "clash.ics"); err != nil {
		t.Fatal("refused move deleted the source")
	}
	if revision(t, s, "a") != ra || revision(t, s, "b") != rb {
		t.Fatal("refused move changed a revision")
	}
	// Overwrite: F refuses an existing destination.
	if _, _, err := s.MoveObject("alice", "a", "copy.ics", "b", "other.ics", false, PutConditions{IfNoneMatch: true}); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("IfNoneMatch on existing destination: %v", err)
	}
	if _, _, err := s.MoveObject("alice", "a", "nope.ics", "b", "z.ics", false, PutConditions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing source: %v", err)
	}
}

func TestPutObjectUpstreamIf(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "c")
	first := put(t, s, "c", "x.ics", "x", "local v1")
	put(t, s, "c", "x.ics", "x", "local v2") // a client write after the decision
	up := Object{Name: "x.ics", UID: "x", Component: "VEVENT", Data: []byte("upstream"), UpstreamETag: `"u"`}
	if _, err := s.PutObjectUpstreamIf("alice", "c", up, PutConditions{IfMatch: first.ETag}); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("stale condition: %v", err)
	}
	if o, _ := s.GetObject("alice", "c", "x.ics"); string(o.Data) != "local v2" {
		t.Fatalf("client write overwritten: %q", o.Data)
	}
	cur, _ := s.GetObject("alice", "c", "x.ics")
	if _, err := s.PutObjectUpstreamIf("alice", "c", up, PutConditions{IfMatch: cur.ETag}); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.GetObject("alice", "c", "x.ics"); string(o.Data) != "upstream" || o.UpstreamETag != `"u"` {
		t.Fatalf("after a matching condition: %+v", o)
	}
}
