package cache

import (
	"errors"
	"reflect"
	"testing"

	"go.etcd.io/bbolt"
)

func TestChanges(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	put(t, s, "work", "a.ics", "a", "a1") // 1
	put(t, s, "work", "b.ics", "b", "b1") // 2
	put(t, s, "work", "a.ics", "a", "a2") // 3
	if err := s.DeleteObject("alice", "work", "b.ics", ""); err != nil {
		t.Fatal(err) // 4
	}
	put(t, s, "work", "c.ics", "c", "c1") // 5
	put(t, s, "work", "b.ics", "b", "b2") // 6: b is back
	if err := s.DeleteObject("alice", "work", "c.ics", ""); err != nil {
		t.Fatal(err) // 7
	}

	for _, tc := range []struct {
		since uint64
		want  []Change
		err   error
	}{
		{0, []Change{{"a.ics", 3, false}, {"b.ics", 6, false}, {"c.ics", 7, true}}, nil},
		{2, []Change{{"a.ics", 3, false}, {"b.ics", 6, false}, {"c.ics", 7, true}}, nil},
		{3, []Change{{"b.ics", 6, false}, {"c.ics", 7, true}}, nil},
		{4, []Change{{"b.ics", 6, false}, {"c.ics", 7, true}}, nil},
		{5, []Change{{"b.ics", 6, false}, {"c.ics", 7, true}}, nil},
		{6, []Change{{"c.ics", 7, true}}, nil},
		{7, []Change{}, nil},
		{8, nil, ErrTokenExpired},
		{1 << 62, nil, ErrTokenExpired},
	} {
		rev, got, err := s.Changes("alice", "work", tc.since)
		if !errors.Is(err, tc.err) {
			t.Errorf("Changes(%d): err = %v, want %v", tc.since, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if rev != 7 || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Changes(%d) = %d %+v, want 7 %+v", tc.since, rev, got, tc.want)
		}
	}
}

func TestChangesExpiry(t *testing.T) {
	const max = 3
	s := openTest(t, Options{MaxChanges: max})
	mustCalendar(t, s, "alice", "work")
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for _, n := range names {
		put(t, s, "work", n+".ics", n, n) // revisions 1..10
	}
	// Kept: revisions 8, 9, 10. A token is valid iff every change after it
	// is kept: since >= 7.
	for since := uint64(0); since <= 11; since++ {
		rev, got, err := s.Changes("alice", "work", since)
		valid := since >= 7 && since <= 10
		if valid != (err == nil) {
			t.Errorf("Changes(%d): err = %v, valid = %v", since, err, valid)
			continue
		}
		if !valid {
			if !errors.Is(err, ErrTokenExpired) {
				t.Errorf("Changes(%d): err = %v, want ErrTokenExpired", since, err)
			}
			continue
		}
		want := []Change{}
		for r := since + 1; r <= 10; r++ {
			want = append(want, Change{Name: names[r-1] + ".ics", Revision: r})
		}
		if rev != 10 || !reflect.DeepEqual(got, want) {
			t.Errorf("Changes(%d) = %d %+v, want 10 %+v", since, rev, got, want)
		}
	}
	// The log really holds only max entries.
	err := s.db.View(func(tx *bbolt.Tx) error {
		if n := calBucket(tx, bucketChanges, "alice", "work").Stats().KeyN; n != max {
			t.Errorf("change log has %d entries, want %d", n, max)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
