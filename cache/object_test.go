package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

func put(t *testing.T, s *Store, cal, name, uid, data string) Object {
	t.Helper()
	o, _, err := s.PutObject("alice", cal, Object{Name: name, UID: uid, Component: "VEVENT", Data: []byte(data)}, PutConditions{})
	if err != nil {
		t.Fatalf("PutObject(%s): %v", name, err)
	}
	return o
}

func revision(t *testing.T, s *Store, cal string) uint64 {
	t.Helper()
	c, err := s.GetCalendar("alice", cal)
	if err != nil {
		t.Fatal(err)
	}
	return c.Revision
}

func TestPutGetRoundTrip(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	data := []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n\x00\xff")
	in := Object{
		Name: "u1.ics", UID: "u1", Component: "VEVENT",
		Start:    time.Date(2025, 3, 30, 1, 30, 0, 0, time.FixedZone("CET", 3600)),
		Warnings: []string{"unknown TZID \"Foo\""},
		Data:     data,
		// Set by the store; the caller's values are ignored.
		ETag: "bogus", Size: 1, Revision: 42,
	}
	before := time.Now().UTC()
	meta, created, err := s.PutObject("alice", "work", in, PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("created = false for a new object")
	}
	sum := sha256.Sum256(data)
	wantETag := hex.EncodeToString(sum[:16])
	if meta.ETag != wantETag {
		t.Errorf("ETag = %q, want %q", meta.ETag, wantETag)
	}
	if meta.Size != int64(len(data)) || meta.Revision != 1 || meta.Data != nil || meta.Modified.Before(before.Truncate(time.Second)) {
		t.Errorf("metadata = %+v", meta)
	}
	if !meta.Start.Equal(in.Start) || meta.Start.Location() != time.UTC || !meta.End.IsZero() {
		t.Errorf("Start, End = %v, %v; want %v (UTC), zero", meta.Start, meta.End, in.Start)
	}

	got, err := s.GetObject("alice", "work", "u1.ics")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, data) {
		t.Errorf("Data = %q, want %q", got.Data, data)
	}
	got.Data = nil
	if !reflect.DeepEqual(got, meta) {
		t.Errorf("GetObject = %+v\nwant       %+v", got, meta)
	}

	// Same bytes again: same ETag, a replacement, a new revision.
	again, created, err := s.PutObject("alice", "work", in, PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ETag != meta.ETag || again.Revision != 2 {
		t.Errorf("same content: created=%v ETag=%q rev=%d; want false %q 2", created, again.ETag, again.Revision, meta.ETag)
	}
	// Other bytes: another ETag.
	in.Data = append(bytes.Clone(data), '\n')
	changed, created, err := s.PutObject("alice", "work", in, PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
	if created || changed.ETag == meta.ETag {
		t.Errorf("changed content: created=%v ETag=%q (old %q)", created, changed.ETag, meta.ETag)
	}
	// Empty data is stored as empty.
	if _, _, err := s.PutObject("alice", "work", Object{Name: "empty.ics", UID: "e"}, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	if e, err := s.GetObject("alice", "work", "empty.ics"); err != nil || e.Data == nil || len(e.Data) != 0 || e.Size != 0 {
		t.Errorf("empty object = %+v, %v", e, err)
	}
}

func TestPutConditions(t *testing.T) {
	for _, tc := range []struct {
		name        string
		exists      bool
		cond        PutConditions
		wantErr     error
		wantCreated bool
	}{
		{"none, new", false, PutConditions{}, nil, true},
		{"none, existing", true, PutConditions{}, nil, false},
		{"if-none-match, new", false, PutConditions{IfNoneMatch: true}, nil, true},
		{"if-none-match, existing", true, PutConditions{IfNoneMatch: true}, ErrPrecondition, false},
		{"if-match *, new", false, PutConditions{IfMatch: "*"}, ErrPrecondition, false},
		{"if-match *, existing", true, PutConditions{IfMatch: "*"}, nil, false},
		{"if-match etag, existing", true, PutConditions{IfMatch: "ETAG"}, nil, false},
		{"if-match wrong etag, existing", true, PutConditions{IfMatch: "0123"}, ErrPrecondition, false},
		{"if-match quoted etag, existing", true, PutConditions{IfMatch: `"ETAG"`}, ErrPrecondition, false},
		{"if-match etag, new", false, PutConditions{IfMatch: "0123"}, ErrPrecondition, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			mustCalendar(t, s, "alice", "work")
			var old Object
			if tc.exists {
				old = put(t, s, "work", "a.ics", "a", "old")
			}
			cond := tc.cond
			switch cond.IfMatch {
			case "ETAG":
				cond.IfMatch = old.ETag
			case `"ETAG"`:
				cond.IfMatch = `"` + old.ETag + `"`
			}
			rev := revision(t, s, "work")
			_, created, err := s.PutObject("alice", "work", Object{Name: "a.ics", UID: "a", Data: []byte("new")}, cond)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if created != tc.wantCreated {
				t.Errorf("created = %v, want %v", created, tc.wantCreated)
			}
			wantData, wantRev := "new", rev+1
			if tc.wantErr != nil {
				wantData, wantRev = "old", rev
			}
			if got := revision(t, s, "work"); got != wantRev {
				t.Errorf("revision = %d, want %d", got, wantRev)
			}
			o, err := s.GetObject("alice", "work", "a.ics")
			if tc.wantErr != nil && !tc.exists {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("refused put created the object: %v", err)
				}
				return
			}
			if err != nil || string(o.Data) != wantData {
				t.Errorf("stored %q, %v; want %q", o.Data, err, wantData)
			}
		})
	}
}

func TestPutObjectInvalid(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	for _, tc := range []struct {
		name string
		user string
		cal  string
		obj  Object
		want error
	}{
		{"empty name", "alice", "work", Object{UID: "u"}, ErrInvalid},
		{"slash in name", "alice", "work", Object{Name: "a/b.ics", UID: "u"}, ErrInvalid},
		{"empty uid", "alice", "work", Object{Name: "a.ics"}, ErrInvalid},
		{"no calendar", "alice", "nope", Object{Name: "a.ics", UID: "u"}, ErrNotFound},
		{"no user", "bob", "work", Object{Name: "a.ics", UID: "u"}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.PutObject(tc.user, tc.cal, tc.obj, PutConditions{}); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if rev := revision(t, s, "work"); rev != 0 {
		t.Errorf("refused puts bumped the revision to %d", rev)
	}
}

func TestUIDConflict(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	mustCalendar(t, s, "alice", "home")
	put(t, s, "work", "a.ics", "same-uid", "a")

	_, _, err := s.PutObject("alice", "work", Object{Name: "b.ics", UID: "same-uid", Data: []byte("b")}, PutConditions{})
	var conflict *UIDConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("err = %v, want *UIDConflictError", err)
	}
	if conflict.Name != "a.ics" {
		t.Errorf("conflict names %q, want a.ics", conflict.Name)
	}
	if _, err := s.GetObject("alice", "work", "b.ics"); !errors.Is(err, ErrNotFound) {
		t.Errorf("conflicting object was stored: %v", err)
	}
	if rev := revision(t, s, "work"); rev != 1 {
		t.Errorf("revision = %d after a refused put, want 1", rev)
	}
	// Replacing the same name with the same UID is fine, and so is the
	// same UID in another calendar.
	put(t, s, "work", "a.ics", "same-uid", "a2")
	put(t, s, "home", "b.ics", "same-uid", "b")
}

func TestChangingUIDFreesOldUID(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	put(t, s, "work", "a.ics", "uid-1", "a")
	put(t, s, "work", "a.ics", "uid-2", "a changed")

	if _, err := s.LookupUID("alice", "work", "uid-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old UID still indexed: %v", err)
	}
	if name, err := s.LookupUID("alice", "work", "uid-2"); err != nil || name != "a.ics" {
		t.Errorf("LookupUID(uid-2) = %q, %v", name, err)
	}
	put(t, s, "work", "b.ics", "uid-1", "b")
	if name, err := s.LookupUID("alice", "work", "uid-1"); err != nil || name != "b.ics" {
		t.Errorf("LookupUID(uid-1) = %q, %v", name, err)
	}
	if _, err := s.LookupUID("alice", "nope", "uid-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupUID in missing calendar: %v", err)
	}
}

func TestDeleteObject(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cal     string
		obj     string
		ifMatch string
		wantErr error
	}{
		{"unconditional", "work", "a.ics", "", nil},
		{"if-match *", "work", "a.ics", "*", nil},
		{"if-match etag", "work", "a.ics", "ETAG", nil},
		{"if-match wrong etag", "work", "a.ics", "0123", ErrPrecondition},
		{"missing object", "work", "zzz.ics", "", ErrNotFound},
		{"missing object, if-match *", "work", "zzz.ics", "*", ErrNotFound},
		{"missing calendar", "nope", "a.ics", "", ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			mustCalendar(t, s, "alice", "work")
			o := put(t, s, "work", "a.ics", "uid-a", "a")
			if tc.ifMatch == "ETAG" {
				tc.ifMatch = o.ETag
			}
			err := s.DeleteObject("alice", tc.cal, tc.obj, tc.ifMatch)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			rev, changes, err := s.Changes("alice", "work", 1)
			if err != nil {
				t.Fatal(err)
			}
			_, getErr := s.GetObject("alice", "work", "a.ics")
			_, uidErr := s.LookupUID("alice", "work", "uid-a")
			if tc.wantErr != nil {
				if rev != 1 || len(changes) != 0 || getErr != nil || uidErr != nil {
					t.Errorf("refused delete changed something: rev=%d changes=%v get=%v uid=%v", rev, changes, getErr, uidErr)
				}
				return
			}
			if want := []Change{{Name: "a.ics", Revision: 2, Deleted: true}}; rev != 2 || !reflect.DeepEqual(changes, want) {
				t.Errorf("Changes = %d %+v, want 2 %+v", rev, changes, want)
			}
			if !errors.Is(getErr, ErrNotFound) || !errors.Is(uidErr, ErrNotFound) {
				t.Errorf("after delete: get=%v uid=%v, want ErrNotFound", getErr, uidErr)
			}
		})
	}
}

func TestGetListSelect(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	mustCalendar(t, s, "alice", "empty")
	for _, name := range []string{"c", "a", "b", "d"} {
		put(t, s, "work", name+".ics", "uid-"+name, "data "+name)
	}

	got, err := s.GetObjects("alice", "work", []string{"d.ics", "missing.ics", "a.ics"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "d.ics" || string(got[0].Data) != "data d" || got[1].Name != "a.ics" || string(got[1].Data) != "data a" {
		t.Errorf("GetObjects = %+v", got)
	}

	list, err := s.ListObjects("alice", "work")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range list {
		names = append(names, o.Name)
		if o.Data != nil || o.Size != int64(len("data a")) || o.ETag == "" || o.UID != "uid-"+o.Name[:1] {
			t.Errorf("ListObjects entry = %+v", o)
		}
	}
	if want := []string{"a.ics", "b.ics", "c.ics", "d.ics"}; !reflect.DeepEqual(names, want) {
		t.Errorf("ListObjects names = %q, want %q", names, want)
	}

	var seen []string
	sel, err := s.SelectObjects("alice", "work", func(o Object) bool {
		if o.Data != nil {
			t.Errorf("keep got Data for %s", o.Name)
		}
		seen = append(seen, o.Name)
		return o.Name == "b.ics" || o.Name == "d.ics"
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 4 {
		t.Errorf("keep called for %q, want all 4", seen)
	}
	if len(sel) != 2 || sel[0].Name != "b.ics" || string(sel[0].Data) != "data b" || sel[1].Name != "d.ics" || string(sel[1].Data) != "data d" {
		t.Errorf("SelectObjects = %+v", sel)
	}

	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"GetObject", func() error { _, err := s.GetObject("alice", "nope", "a.ics"); return err }},
		{"GetObjects", func() error { _, err := s.GetObjects("alice", "nope", []string{"a.ics"}); return err }},
		{"ListObjects", func() error { _, err := s.ListObjects("alice", "nope"); return err }},
		{"SelectObjects", func() error {
			_, err := s.SelectObjects("bob", "work", func(Object) bool { return true })
			return err
		}},
		{"Changes", func() error { _, _, err := s.Changes("alice", "nope", 0); return err }},
	} {
		if err := tc.call(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s on a missing calendar: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if l, err := s.ListObjects("alice", "empty"); err != nil || l == nil || len(l) != 0 {
		t.Errorf("ListObjects(empty) = %v, %v; want empty", l, err)
	}
	if l, err := s.GetObjects("alice", "empty", []string{"a.ics"}); err != nil || len(l) != 0 {
		t.Errorf("GetObjects(empty) = %v, %v; want empty", l, err)
	}
}

func TestRevisionBumps(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	steps := []struct {
		name string
		do   func() error
		bump bool
	}{
		{"put new", func() error {
			_, _, err := s.PutObject("alice", "work", Object{Name: "a.ics", UID: "a"}, PutConditions{})
			return err
		}, true},
		{"put replace", func() error {
			_, _, err := s.PutObject("alice", "work", Object{Name: "a.ics", UID: "a"}, PutConditions{})
			return err
		}, true},
		{"update calendar", func() error {
			_, err := s.UpdateCalendar("alice", "work", func(c *Calendar) error { c.Color = "#000"; return nil })
			return err
		}, false},
		{"get", func() error { _, err := s.GetObject("alice", "work", "a.ics"); return err }, false},
		{"delete", func() error { return s.DeleteObject("alice", "work", "a.ics", "") }, true},
	}
	var want uint64
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.bump {
			want++
		}
		if got := revision(t, s, "work"); got != want {
			t.Errorf("after %s: revision = %d, want %d", st.name, got, want)
		}
	}
}

func TestConcurrentPuts(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("w%d-%03d.ics", w, i)
				if _, created, err := s.PutObject("alice", "work", Object{Name: name, UID: name, Data: []byte(name)}, PutConditions{IfNoneMatch: true}); err != nil || !created {
					errs <- fmt.Errorf("put %s: created=%v err=%w", name, created, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := s.ListObjects("alice", "work")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != workers*each {
		t.Errorf("%d objects, want %d", len(list), workers*each)
	}
	if rev := revision(t, s, "work"); rev != workers*each {
		t.Errorf("revision = %d, want %d", rev, workers*each)
	}
	// Every revision 1..400 was handed out exactly once.
	_, changes, err := s.Changes("alice", "work", 0)
	if err != nil {
		t.Fatal(err)
	}
	revs := make(map[uint64]bool)
	for _, c := range changes {
		revs[c.Revision] = true
	}
	if len(changes) != workers*each || len(revs) != workers*each {
		t.Errorf("%d changes with %d distinct revisions, want %d", len(changes), len(revs), workers*each)
	}
}

// TestConcurrentConflicts mixes refused and accepted writes in the same
// batches: a refusal must not undo or repeat the others.
func TestConcurrentConflicts(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	var wg sync.WaitGroup
	var mu sync.Mutex
	createdN := 0
	for range 16 {
		wg.Go(func() {
			for i := range 10 {
				name := fmt.Sprintf("%d.ics", i)
				_, created, err := s.PutObject("alice", "work", Object{Name: name, UID: name}, PutConditions{IfNoneMatch: true})
				if err != nil && !errors.Is(err, ErrPrecondition) {
					t.Errorf("put %s: %v", name, err)
				}
				if created {
					mu.Lock()
					createdN++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if createdN != 10 {
		t.Errorf("%d creations, want 10", createdN)
	}
	if rev := revision(t, s, "work"); rev != 10 {
		t.Errorf("revision = %d, want 10", rev)
	}
}
