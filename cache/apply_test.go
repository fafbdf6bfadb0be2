package cache

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// up returns an upstream put of name.
func up(name, uid, data, etag string) UpstreamChange {
	return UpstreamChange{Object: Object{Name: name, UID: uid, Component: "VEVENT", Data: []byte(data),
		UpstreamHref: "/up/" + name, UpstreamETag: etag}}
}

// upDel returns an upstream deletion of name.
func upDel(name string) UpstreamChange {
	return UpstreamChange{Delete: true, Object: Object{Name: name}}
}

func TestUpstreamFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustKind(t, s, "dav", "caldav")
	o, err := s.PutObjectUpstream("alice", "dav", Object{Name: "a.ics", UID: "ua", Data: []byte("A"),
		UpstreamHref: "/cal/a b.ics", UpstreamETag: `W/"1"`})
	if err != nil || o.UpstreamHref != "/cal/a b.ics" || o.UpstreamETag != `W/"1"` || o.Revision != 1 {
		t.Fatalf("PutObjectUpstream = %+v, %v", o, err)
	}
	if es := pending(t, s, "dav"); len(es) != 0 {
		t.Fatalf("PutObjectUpstream enqueued %+v", es)
	}
	// A client put keeps the upstream fields; its own values are ignored.
	o, _, err = s.PutObject("alice", "dav", Object{Name: "a.ics", UID: "ua", Data: []byte("A2"),
		UpstreamHref: "/forged", UpstreamETag: "forged"}, PutConditions{})
	if err != nil || o.UpstreamHref != "/cal/a b.ics" || o.UpstreamETag != `W/"1"` {
		t.Fatalf("client PutObject = %+v, %v", o, err)
	}
	o, _, err = s.PutObject("alice", "dav", Object{Name: "new.ics", UID: "un", Data: []byte("N"), UpstreamHref: "/forged"}, PutConditions{})
	if err != nil || o.UpstreamHref != "" || o.UpstreamETag != "" {
		t.Fatalf("client PutObject of a new object = %+v, %v", o, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetObject("alice", "dav", "a.ics")
	if err != nil || got.UpstreamHref != "/cal/a b.ics" || got.UpstreamETag != `W/"1"` || string(got.Data) != "A2" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	list, err := s.ListObjects("alice", "dav")
	if err != nil || len(list) != 2 || list[0].UpstreamETag != `W/"1"` || list[1].UpstreamHref != "" {
		t.Fatalf("ListObjects = %+v, %v", list, err)
	}
	// DeleteObjectUpstream: no outbox entry (the client writes' entries stay).
	before := pending(t, s, "dav")
	if err := s.DeleteObjectUpstream("alice", "dav", "a.ics"); err != nil {
		t.Fatal(err)
	}
	if after := pending(t, s, "dav"); !reflect.DeepEqual(after, before) {
		t.Fatalf("DeleteObjectUpstream changed the outbox: %+v → %+v", before, after)
	}
	if err := s.DeleteObjectUpstream("alice", "dav", "a.ics"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteObjectUpstream: %v", err)
	}
	if _, err := s.LookupUID("alice", "dav", "ua"); !errors.Is(err, ErrNotFound) {
		t.Fatal("DeleteObjectUpstream left the UID indexed")
	}
}

func TestApplyUpstream(t *testing.T) {
	type object struct{ data, upETag string }
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, s *Store) // on a "caldav" calendar alice/dav holding a.ics (upstream "ea") and b.ics (upstream "eb")
		changes []UpstreamChange
		full    bool
		want    ApplyResult
		bumps   uint64
		objects map[string]object // the calendar afterwards
		log     []Change          // the change log entries the call added (revisions relative to before)
	}{
		{
			name:    "put new",
			changes: []UpstreamChange{up("c.ics", "uc", "C", "ec")},
			want:    ApplyResult{Put: 1},
			bumps:   1,
			objects: map[string]object{"a.ics": {"A", "ea"}, "b.ics": {"B", "eb"}, "c.ics": {"C", "ec"}},
			log:     []Change{{Name: "c.ics", Revision: 1}},
		},
		{
			name:    "update",
			changes: []UpstreamChange{up("a.ics", "ua", "A2", "ea2")},
			want:    ApplyResult{Put: 1},
			bumps:   1,
			objects: map[string]object{"a.ics": {"A2", "ea2"}, "b.ics": {"B", "eb"}},
			log:     []Change{{Name: "a.ics", Revision: 1}},
		},
		{
			name:    "identical bytes: no bump, new upstream etag",
			changes: []UpstreamChange{up("a.ics", "ua", "A", "ea-new"), up("b.ics", "ub", "B", "eb")},
			want:    ApplyResult{Unchanged: 2},
			objects: map[string]object{"a.ics": {"A", "ea-new"}, "b.ics": {"B", "eb"}},
		},
		{
			name:    "delete",
			changes: []UpstreamChange{upDel("a.ics"), upDel("missing.ics")},
			want:    ApplyResult{Deleted: 1, Unchanged: 1},
			bumps:   1,
			objects: map[string]object{"b.ics": {"B", "eb"}},
			log:     []Change{{Name: "a.ics", Revision: 1, Deleted: true}},
		},
		{
			name:    "full resync deletes the rest",
			changes: []UpstreamChange{up("a.ics", "ua", "A", "ea"), up("d.ics", "ud", "D", "ed")},
			full:    true,
			want:    ApplyResult{Put: 1, Deleted: 1, Unchanged: 1},
			bumps:   2,
			objects: map[string]object{"a.ics": {"A", "ea"}, "d.ics": {"D", "ed"}},
			log:     []Change{{Name: "b.ics", Revision: 1, Deleted: true}, {Name: "d.ics", Revision: 2}},
		},
		{
			name:    "full resync of nothing",
			full:    true,
			want:    ApplyResult{Deleted: 2},
			bumps:   2,
			objects: map[string]object{},
		},
		{
			name: "skips pending outbox entries",
			setup: func(t *testing.T, s *Store) {
				// A pending put, a pending put of an object the upstream does
				// not have yet, and a pending delete.
				put(t, s, "dav", "a.ics", "ua", "A-local")
				put(t, s, "dav", "new.ics", "un", "N-local")
				if err := s.DeleteObject("alice", "dav", "b.ics", ""); err != nil {
					t.Fatal(err)
				}
			},
			changes: []UpstreamChange{up("a.ics", "ua", "A-up", "ea2"), up("b.ics", "ub", "B-up", "eb2"), upDel("new.ics")},
			full:    true,
			want:    ApplyResult{Skipped: []string{"new.ics", "a.ics", "b.ics"}},
			objects: map[string]object{"a.ics": {"A-local", "ea"}, "new.ics": {"N-local", ""}},
		},
		{
			name:    "UID conflict is reported, the rest applied",
			changes: []UpstreamChange{up("x.ics", "ua", "X", "ex"), up("c.ics", "uc", "C", "ec")},
			want:    ApplyResult{Put: 1, UIDConflicts: []string{"x.ics"}},
			bumps:   1,
			objects: map[string]object{"a.ics": {"A", "ea"}, "b.ics": {"B", "eb"}, "c.ics": {"C", "ec"}},
			log:     []Change{{Name: "c.ics", Revision: 1}},
		},
		{
			name:    "rename: delete before put, no UID conflict",
			changes: []UpstreamChange{up("a2.ics", "ua", "A", "ea2"), upDel("a.ics")},
			want:    ApplyResult{Put: 1, Deleted: 1},
			bumps:   2,
			objects: map[string]object{"a2.ics": {"A", "ea2"}, "b.ics": {"B", "eb"}},
			log:     []Change{{Name: "a.ics", Revision: 1, Deleted: true}, {Name: "a2.ics", Revision: 2}},
		},
		{
			name:    "full resync rename",
			changes: []UpstreamChange{up("a2.ics", "ua", "A", "ea2"), up("b.ics", "ub", "B", "eb")},
			full:    true,
			want:    ApplyResult{Put: 1, Deleted: 1, Unchanged: 1},
			bumps:   2,
			objects: map[string]object{"a2.ics": {"A", "ea2"}, "b.ics": {"B", "eb"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			mustKind(t, s, "dav", "caldav")
			pushed(t, s, "dav", "a.ics", "ua", "A", "ea")
			pushed(t, s, "dav", "b.ics", "ub", "B", "eb")
			if tc.setup != nil {
				tc.setup(t, s)
			}
			outbox := pending(t, s, "dav")
			rev := revision(t, s, "dav")
			st := SourceState{ID: "src-dav", SyncToken: "tok-" + tc.name, LastSuccess: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}

			res, err := s.ApplyUpstream("alice", "dav", tc.changes, tc.full, st)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res, tc.want) {
				t.Errorf("result = %+v, want %+v", res, tc.want)
			}
			if got := revision(t, s, "dav"); got != rev+tc.bumps {
				t.Errorf("revision %d → %d, want +%d", rev, got, tc.bumps)
			}
			list, err := s.ListObjects("alice", "dav")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]object{}
			for _, o := range list {
				full, err := s.GetObject("alice", "dav", o.Name)
				if err != nil {
					t.Fatal(err)
				}
				got[o.Name] = object{string(full.Data), full.UpstreamETag}
				// The UID index follows the objects.
				if n, err := s.LookupUID("alice", "dav", o.UID); err != nil || n != o.Name {
					t.Errorf("LookupUID(%s) = %q, %v, want %s", o.UID, n, err, o.Name)
				}
				if o.UpstreamETag != "" && o.UpstreamHref != "/up/"+o.Name {
					t.Errorf("%s: upstream href %q", o.Name, o.UpstreamHref)
				}
			}
			if !reflect.DeepEqual(got, tc.objects) {
				t.Errorf("objects = %v, want %v", got, tc.objects)
			}
			if tc.log != nil {
				_, changes, err := s.Changes("alice", "dav", rev)
				if err != nil {
					t.Fatal(err)
				}
				for i := range changes {
					changes[i].Revision -= rev
				}
				if !reflect.DeepEqual(changes, tc.log) {
					t.Errorf("change log = %+v, want %+v", changes, tc.log)
				}
			}
			// No outbox entries are created (or dropped).
			if after := pending(t, s, "dav"); !reflect.DeepEqual(after, outbox) {
				t.Errorf("outbox %+v → %+v", outbox, after)
			}
			// The source state was saved with the changes.
			if saved, err := s.GetSource("src-dav"); err != nil || !reflect.DeepEqual(saved, st) {
				t.Errorf("GetSource = %+v, %v, want %+v", saved, err, st)
			}
		})
	}
}

func TestApplyUpstreamRefused(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	st := SourceState{ID: "src", SyncToken: "t1"}
	for _, tc := range []struct {
		name    string
		cal     string
		changes []UpstreamChange
		st      SourceState
		want    error
	}{
		{"missing calendar", "nope", []UpstreamChange{up("a.ics", "ua", "A", "e")}, st, ErrNotFound},
		{"empty source id", "dav", nil, SourceState{}, ErrInvalid},
		{"bad name", "dav", []UpstreamChange{up("a/b.ics", "ua", "A", "e")}, st, ErrInvalid},
		{"bad delete name", "dav", []UpstreamChange{upDel("")}, st, ErrInvalid},
		{"empty uid", "dav", []UpstreamChange{up("a.ics", "", "A", "e")}, st, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.ApplyUpstream("alice", tc.cal, tc.changes, true, tc.st); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := s.GetSource("src"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a refused apply saved the source: %v", err)
			}
			if revision(t, s, "dav") != 0 {
				t.Fatal("a refused apply bumped the revision")
			}
		})
	}
}

func TestSources(t *testing.T) {
	s := openTest(t, Options{})
	if _, err := s.GetSource("x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSource(missing) = %v", err)
	}
	if err := s.PutSource(SourceState{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutSource(empty id) = %v", err)
	}
	if l, err := s.ListSources(); err != nil || len(l) != 0 {
		t.Fatalf("ListSources(empty) = %v, %v", l, err)
	}
	b := SourceState{ID: "b", ETag: `"feed"`, LastModified: "Mon, 02 Jan 2006 15:04:05 GMT", Failures: 3,
		LastAttempt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NextDue: time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC),
		LastError: "503", Quarantine: []string{"/x.ics: bad data"}, HeldDeletes: 12}
	a := SourceState{ID: "a", SyncToken: "tok", CTag: "ctag"}
	for _, st := range []SourceState{b, a, {ID: "a", SyncToken: "tok"}} {
		if err := s.PutSource(st); err != nil {
			t.Fatal(err)
		}
	}
	a.CTag = "" // replaced by the last put
	if got, err := s.GetSource("b"); err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("GetSource(b) = %+v, %v", got, err)
	}
	if l, err := s.ListSources(); err != nil || !reflect.DeepEqual(l, []SourceState{a, b}) {
		t.Fatalf("ListSources = %+v, %v", l, err)
	}
}

func TestConflicts(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	mustKind(t, s, "dav2", "caldav")
	if _, err := s.CreateCalendar(Calendar{User: "bob", ID: "dav", Kind: "caldav"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var stored []Conflict
	for _, c := range []Conflict{
		{User: "alice", Cal: "dav", Name: "a.ics", Kept: "upstream", LoserData: []byte("LOCAL"), LoserETag: "e1", Reason: "412 on push: modified on both sides", Created: t0.Add(2 * time.Minute)},
		{User: "alice", Cal: "dav2", Name: "b.ics", Kept: "local", Reason: "deleted upstream, modified locally", Created: t0},
		{User: "alice", Cal: "dav", Name: "a.ics", Kept: "upstream", LoserData: []byte("LOCAL2"), Created: t0.Add(time.Minute)},
		{User: "bob", Cal: "dav", Name: "z.ics", Kept: "upstream", Created: t0},
	} {
		got, err := s.PutConflict(c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq == 0 || slices.ContainsFunc(stored, func(o Conflict) bool { return o.Seq == got.Seq }) {
			t.Fatalf("Seq %d not new", got.Seq)
		}
		c.Seq = got.Seq
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("PutConflict = %+v, want %+v", got, c)
		}
		stored = append(stored, got)
	}
	list, err := s.ListConflicts("alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Conflict{stored[1], stored[2], stored[0]}; !reflect.DeepEqual(list, want) {
		t.Fatalf("ListConflicts(alice) =\n%+v\nwant\n%+v", list, want)
	}
	if list, _ := s.ListConflicts(""); len(list) != 4 {
		t.Fatalf("ListConflicts(all) has %d", len(list))
	}
	if list, _ := s.ListConflicts("carol"); len(list) != 0 {
		t.Fatalf("ListConflicts(carol) = %+v", list)
	}
	// A conflict without Created gets the current time.
	if c, err := s.PutConflict(Conflict{User: "bob", Cal: "dav", Name: "y.ics"}); err != nil || c.Created.IsZero() {
		t.Fatalf("PutConflict without Created = %+v, %v", c, err)
	}

	if err := s.DeleteConflict("alice", "dav", "a.ics", stored[0].Seq); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"again":      s.DeleteConflict("alice", "dav", "a.ics", stored[0].Seq),
		"wrong name": s.DeleteConflict("alice", "dav", "b.ics", stored[2].Seq),
		"wrong cal":  s.DeleteConflict("alice", "nope", "a.ics", stored[2].Seq),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteConflict %s: %v, want ErrNotFound", name, err)
		}
	}
	if err := s.DeleteConflict("alice", "dav", "a.ics", stored[2].Seq); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.ListConflicts("alice"); !reflect.DeepEqual(list, []Conflict{stored[1]}) {
		t.Fatalf("after deletes: %+v", list)
	}
	if calBucket0(t, s, "alice", "dav") {
		t.Error("empty conflict buckets left behind")
	}

	if _, err := s.PutConflict(Conflict{User: "alice", Cal: "nope", Name: "a.ics"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("PutConflict(missing calendar) = %v", err)
	}
	if _, err := s.PutConflict(Conflict{User: "alice", Cal: "dav"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("PutConflict(no name) = %v", err)
	}
}

// Recording the same loser of an object again returns the first record;
// another loser, another object or a conflict without loser data is a
// new record.
func TestPutConflictIdempotent(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	c := Conflict{User: "alice", Cal: "dav", Name: "a.ics", Kept: "local", LoserData: []byte("UP"), LoserETag: "e1", Reason: "412 on push: modified on both sides"}
	first, err := s.PutConflict(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.PutConflict(c)
	if err != nil || again.Seq != first.Seq || !again.Created.Equal(first.Created) {
		t.Fatalf("PutConflict again = %+v, %v; want the first record %+v", again, err, first)
	}
	news := []Conflict{c, c, c, c, {User: "alice", Cal: "dav", Name: "a.ics", Kept: "local", Reason: "deleted upstream, modified locally"}}
	news[0].LoserETag = "e2"
	news[1].LoserData = []byte("UP2")
	news[2].Name = "b.ics"
	news[3].Kept = "upstream"
	for _, n := range append(news, news[4]) {
		if got, err := s.PutConflict(n); err != nil || got.Seq == first.Seq {
			t.Fatalf("PutConflict(%+v) = %+v, %v; want a new record", n, got, err)
		}
	}
	if list, _ := s.ListConflicts("alice"); len(list) != 7 {
		t.Fatalf("%d conflicts, want 7: %+v", len(list), list)
	}
}

// calBucket0 reports whether conflicts/user/cal exists.
func calBucket0(t *testing.T, s *Store, user, cal string) bool {
	t.Helper()
	var ok bool
	if err := s.db.View(func(tx *bbolt.Tx) error {
		ok = calBucket(tx, bucketConflicts, user, cal) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestDeleteCalendarRemovesOutboxAndConflicts(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	mustKind(t, s, "keep", "caldav")
	put(t, s, "dav", "a.ics", "ua", "A")
	put(t, s, "keep", "k.ics", "uk", "K")
	put(t, s, "dav", "b.ics", "ub", "B")
	for _, cal := range []string{"dav", "keep"} {
		if _, err := s.PutConflict(Conflict{User: "alice", Cal: cal, Name: "a.ics", Kept: "upstream"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutSource(SourceState{ID: "src-dav", SyncToken: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCalendar("alice", "dav"); err != nil {
		t.Fatal(err)
	}
	all, err := s.PendingOutbox("", "")
	if err != nil || len(all) != 1 || all[0].Cal != "keep" {
		t.Fatalf("outbox after DeleteCalendar = %+v, %v", all, err)
	}
	if list, err := s.ListConflicts("alice"); err != nil || len(list) != 1 || list[0].Cal != "keep" {
		t.Fatalf("conflicts after DeleteCalendar = %+v, %v", list, err)
	}
	checkIndex(t, s)
	if _, err := s.GetSource("src-dav"); err != nil {
		t.Errorf("the source state went with the calendar: %v", err)
	}
	// A re-created calendar starts with an empty outbox and writes afresh.
	mustKind(t, s, "dav", "caldav")
	put(t, s, "dav", "a.ics", "ua", "A")
	if es := pending(t, s, "dav"); len(es) != 1 || es[0].BaseETag != "" {
		t.Fatalf("re-created calendar outbox = %+v", es)
	}
}

func TestSyncStateSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustKind(t, s, "dav", "caldav")
	if _, err := s.ApplyUpstream("alice", "dav", []UpstreamChange{up("a.ics", "ua", "A", "ea"), up("b.ics", "ub", "B", "eb")},
		true, SourceState{ID: "src-dav", SyncToken: "t1"}); err != nil {
		t.Fatal(err)
	}
	put(t, s, "dav", "a.ics", "ua", "A-local")
	c, err := s.PutConflict(Conflict{User: "alice", Cal: "dav", Name: "b.ics", Kept: "upstream", LoserData: []byte("B-local")})
	if err != nil {
		t.Fatal(err)
	}
	wantOutbox := pending(t, s, "dav")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pending(t, s, "dav"); !reflect.DeepEqual(got, wantOutbox) {
		t.Errorf("outbox after reopen = %+v, want %+v", got, wantOutbox)
	}
	if st, err := s.GetSource("src-dav"); err != nil || st.SyncToken != "t1" {
		t.Errorf("source after reopen = %+v, %v", st, err)
	}
	if list, err := s.ListConflicts("alice"); err != nil || len(list) != 1 || list[0].Seq != c.Seq || string(list[0].LoserData) != "B-local" {
		t.Errorf("conflicts after reopen = %+v, %v", list, err)
	}
	if o, err := s.GetObject("alice", "dav", "b.ics"); err != nil || o.UpstreamETag != "eb" || o.UpstreamHref != "/up/b.ics" {
		t.Errorf("object after reopen = %+v, %v", o, err)
	}
	// The pending index survived: the next write coalesces, and upstream skips.
	put(t, s, "dav", "a.ics", "ua", "A-local2")
	if es := pending(t, s, "dav"); len(es) != 1 || es[0].BaseETag != "ea" || es[0].Href != "/up/a.ics" {
		t.Errorf("coalescing after reopen: %+v", es)
	}
	res, err := s.ApplyUpstream("alice", "dav", []UpstreamChange{up("a.ics", "ua", "A-up", "ea2")}, false, SourceState{ID: "src-dav", SyncToken: "t2"})
	if err != nil || !reflect.DeepEqual(res.Skipped, []string{"a.ics"}) {
		t.Errorf("ApplyUpstream after reopen = %+v, %v", res, err)
	}
	// Sequence numbers continue.
	c2, err := s.PutConflict(Conflict{User: "alice", Cal: "dav", Name: "b.ics"})
	if err != nil || c2.Seq <= c.Seq {
		t.Errorf("conflict seq after reopen = %d (before %d), %v", c2.Seq, c.Seq, err)
	}
	checkIndex(t, s)
}

// TestConcurrentClientAndUpstream interleaves client writes with upstream
// batches on one mirrored calendar. Every revision must be handed out
// once, the revision must equal the number of real changes, the last
// client write of every object must win over the upstream until pushed,
// and the outbox must hold exactly one entry per client-written object.
func TestConcurrentClientAndUpstream(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	const clients, each, rounds = 4, 30, 30
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		changes uint64 // real changes reported
	)
	count := func(n int) {
		mu.Lock()
		changes += uint64(n)
		mu.Unlock()
	}
	for w := range clients {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("c%d-%d.ics", w, i%10)
				if _, _, err := s.PutObject("alice", "dav", Object{Name: name, UID: name, Data: []byte(fmt.Sprintf("client %d", i))}, PutConditions{}); err != nil {
					t.Errorf("PutObject(%s): %v", name, err)
					return
				}
				count(1)
			}
		})
	}
	wg.Go(func() {
		for r := range rounds {
			var batch []UpstreamChange
			for i := range 10 {
				name := fmt.Sprintf("u-%d.ics", i)
				if (r+i)%4 == 0 {
					batch = append(batch, upDel(name))
				} else {
					batch = append(batch, up(name, name, fmt.Sprintf("up %d", r/2), "e"))
				}
				// Upstream also reports the client's objects: skipped once pending.
				c := fmt.Sprintf("c%d-%d.ics", i%clients, i)
				batch = append(batch, up(c, c, "upstream copy", "e"))
			}
			res, err := s.ApplyUpstream("alice", "dav", batch, r%5 == 4, SourceState{ID: "src-dav", SyncToken: fmt.Sprint(r)})
			if err != nil {
				t.Errorf("ApplyUpstream: %v", err)
				return
			}
			count(res.Put + res.Deleted)
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	rev := revision(t, s, "dav")
	if rev != changes {
		t.Errorf("revision = %d, real changes reported = %d", rev, changes)
	}
	if _, log, err := s.Changes("alice", "dav", 0); err != nil || len(log) == 0 || log[len(log)-1].Revision != rev {
		t.Errorf("change log ends at %v, %v; want revision %d", log, err, rev)
	}
	for w := range clients {
		for i := range 10 {
			name := fmt.Sprintf("c%d-%d.ics", w, i)
			o, err := s.GetObject("alice", "dav", name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			last := (each-1)/10*10 + i
			if last >= each {
				last -= 10
			}
			if want := fmt.Sprintf("client %d", last); string(o.Data) != want {
				t.Errorf("%s = %q, want the last client write %q", name, o.Data, want)
			}
		}
	}
	if es := pending(t, s, "dav"); len(es) != clients*10 {
		t.Errorf("%d outbox entries, want %d", len(es), clients*10)
	}
	if st, err := s.GetSource("src-dav"); err != nil || st.SyncToken != fmt.Sprint(rounds-1) {
		t.Errorf("source = %+v, %v", st, err)
	}
	checkIndex(t, s)
}
