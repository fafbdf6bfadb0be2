package cache

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

// conflictCase sets up alice/dav (a "caldav" calendar) with object
// a.ics in the state a conflict left it in, and the conflict.
type conflictCase struct {
	name      string
	kept      string // Conflict.Kept
	current   string // the object's data now; "" = the object is deleted
	loser     string // Conflict.LoserData; "" = the loser was a deletion
	keep      string // the decision
	wantData  string // the object afterwards; "" = deleted
	wantQueue string // the outbox op afterwards; "" = none
}

func TestResolveConflict(t *testing.T) {
	const (
		upV  = "UPSTREAM VERSION"
		locV = "LOCAL VERSION"
	)
	for _, tc := range []conflictCase{
		// upstream-wins after a 412: the local version lost.
		{name: "kept upstream, keep upstream", kept: KeptUpstream, current: upV, loser: locV, keep: KeptUpstream, wantData: upV},
		{name: "kept upstream, keep local", kept: KeptUpstream, current: upV, loser: locV, keep: KeptLocal, wantData: locV, wantQueue: "put"},
		// deleted locally, modified upstream: the deletion lost.
		{name: "local deletion lost, keep upstream", kept: KeptUpstream, current: upV, keep: KeptUpstream, wantData: upV},
		{name: "local deletion lost, keep local", kept: KeptUpstream, current: upV, keep: KeptLocal, wantQueue: "delete"},
		// local-wins after a 412: the upstream version lost.
		{name: "kept local, keep local", kept: KeptLocal, current: locV, loser: upV, keep: KeptLocal, wantData: locV},
		{name: "kept local, keep upstream", kept: KeptLocal, current: locV, loser: upV, keep: KeptUpstream, wantData: upV, wantQueue: "put"},
		// deleted upstream, modified locally: the upstream deletion lost.
		{name: "upstream deletion lost, keep upstream", kept: KeptLocal, current: locV, keep: KeptUpstream, wantQueue: "delete"},
		// the calendar's object is gone and the loser is a version.
		{name: "object gone, keep the loser", kept: KeptUpstream, loser: locV, keep: KeptLocal, wantData: locV, wantQueue: "put"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			mustKind(t, s, "dav", "caldav")
			cur := Object{}
			if tc.current != "" {
				cur = pushed(t, s, "dav", "a.ics", "uid-a", tc.current, "up-1")
			}
			c, err := s.PutConflict(Conflict{User: "alice", Cal: "dav", Name: "a.ics", Kept: tc.kept,
				LoserData: loserData(tc.loser), Reason: "test"})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.GetConflict("alice", "dav", "a.ics", c.Seq)
			if err != nil || !bytes.Equal(got.LoserData, c.LoserData) || got.Kept != tc.kept {
				t.Fatalf("GetConflict = %+v, %v; want %+v", got, err, c)
			}
			rev := revision(t, s, "dav")
			r := Resolution{Keep: tc.keep, CurrentETag: cur.ETag}
			if tc.loser != "" {
				r.Loser = &Object{UID: "uid-a", Component: "VEVENT", Data: []byte(tc.loser)}
			}
			if err := s.ResolveConflict("alice", "dav", "a.ics", c.Seq, r); err != nil {
				t.Fatalf("ResolveConflict: %v", err)
			}

			if list, _ := s.ListConflicts("alice"); len(list) != 0 {
				t.Errorf("conflicts left: %+v", list)
			}
			if calBucket0(t, s, "alice", "dav") {
				t.Error("empty conflict buckets left behind")
			}
			o, err := s.GetObject("alice", "dav", "a.ics")
			switch {
			case tc.wantData == "" && !errors.Is(err, ErrNotFound):
				t.Errorf("object after resolution: %q, %v; want deleted", o.Data, err)
			case tc.wantData != "" && (err != nil || string(o.Data) != tc.wantData):
				t.Errorf("object after resolution: %q, %v; want %q", o.Data, err, tc.wantData)
			}
			es := pending(t, s, "dav")
			switch {
			case tc.wantQueue == "" && len(es) != 0:
				t.Errorf("outbox: %+v, want empty", es)
			case tc.wantQueue != "" && (len(es) != 1 || es[0].Op != tc.wantQueue || es[0].Name != "a.ics"):
				t.Errorf("outbox: %+v, want one %s of a.ics", es, tc.wantQueue)
			}
			if tc.wantQueue != "" && tc.current != "" && es[0].BaseETag != "up-1" {
				// The push must be conditional on the version the upstream has.
				t.Errorf("outbox base etag %q, want up-1", es[0].BaseETag)
			}
			wantRev := rev
			if tc.wantQueue != "" {
				wantRev++
			}
			if got := revision(t, s, "dav"); got != wantRev {
				t.Errorf("revision %d, want %d", got, wantRev)
			}
			checkIndex(t, s)
		})
	}
}

func loserData(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// unchanged checks that a refused resolution left the conflict, the
// object and the outbox as they were.
func unchanged(t *testing.T, s *Store, seq uint64, data string, rev uint64) {
	t.Helper()
	if _, err := s.GetConflict("alice", "dav", "a.ics", seq); err != nil {
		t.Errorf("conflict gone after a refused resolution: %v", err)
	}
	o, err := s.GetObject("alice", "dav", "a.ics")
	if err != nil || string(o.Data) != data {
		t.Errorf("object after a refused resolution: %q, %v; want %q", o.Data, err, data)
	}
	if got := revision(t, s, "dav"); got != rev {
		t.Errorf("revision %d after a refused resolution, want %d", got, rev)
	}
}

func TestResolveConflictRefused(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	shown := pushed(t, s, "dav", "a.ics", "uid-a", "UPSTREAM", "up-1")
	pushed(t, s, "dav", "b.ics", "uid-b", "OTHER", "up-2")
	c, err := s.PutConflict(Conflict{User: "alice", Cal: "dav", Name: "a.ics", Kept: KeptUpstream,
		LoserData: []byte("LOCAL"), Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	loser := &Object{UID: "uid-a", Component: "VEVENT", Data: []byte("LOCAL")}

	// If-Match: a client write after the page showed the conflict stands.
	raced, _, err := s.PutObject("alice", "dav", Object{Name: "a.ics", UID: "uid-a", Component: "VEVENT", Data: []byte("RACED")}, PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
	rev := revision(t, s, "dav")
	queued := len(pending(t, s, "dav"))
	err = s.ResolveConflict("alice", "dav", "a.ics", c.Seq, Resolution{Keep: KeptLocal, Loser: loser, CurrentETag: shown.ETag})
	if !errors.Is(err, ErrPrecondition) {
		t.Fatalf("resolution against a stale etag: %v, want ErrPrecondition", err)
	}
	unchanged(t, s, c.Seq, "RACED", rev)
	if n := len(pending(t, s, "dav")); n != queued {
		t.Errorf("outbox has %d entries after the refusal, want %d", n, queued)
	}
	// Decided on "no object" while there is one.
	if err := s.ResolveConflict("alice", "dav", "a.ics", c.Seq, Resolution{Keep: KeptLocal, Loser: loser}); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("resolution on a missing object that exists: %v, want ErrPrecondition", err)
	}
	unchanged(t, s, c.Seq, "RACED", rev)

	// The loser's UID is used by another object now.
	taken := &Object{UID: "uid-b", Component: "VEVENT", Data: []byte("LOCAL")}
	c2, err := s.PutConflict(Conflict{User: "alice", Cal: "dav", Name: "a.ics", Kept: KeptUpstream, LoserData: taken.Data})
	if err != nil {
		t.Fatal(err)
	}
	var uc *UIDConflictError
	err = s.ResolveConflict("alice", "dav", "a.ics", c2.Seq, Resolution{Keep: KeptLocal, Loser: taken, CurrentETag: raced.ETag})
	if !errors.As(err, &uc) || uc.Name != "b.ics" {
		t.Fatalf("resolution with a taken UID: %v, want UIDConflictError(b.ics)", err)
	}
	unchanged(t, s, c2.Seq, "RACED", rev)

	for name, r := range map[string]Resolution{
		"bad side":     {Keep: "mine", Loser: loser, CurrentETag: raced.ETag},
		"no loser":     {Keep: KeptLocal, CurrentETag: raced.ETag},
		"wrong loser":  {Keep: KeptLocal, Loser: &Object{UID: "uid-a", Data: []byte("NOT THE LOSER")}, CurrentETag: raced.ETag},
		"loser no uid": {Keep: KeptLocal, Loser: &Object{Data: []byte("LOCAL")}, CurrentETag: raced.ETag},
	} {
		if err := s.ResolveConflict("alice", "dav", "a.ics", c.Seq, r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		unchanged(t, s, c.Seq, "RACED", rev)
	}
	for name, err := range map[string]error{
		"unknown seq":   s.ResolveConflict("alice", "dav", "a.ics", c.Seq+100, Resolution{Keep: KeptUpstream}),
		"other object":  s.ResolveConflict("alice", "dav", "b.ics", c.Seq, Resolution{Keep: KeptUpstream}),
		"other user":    s.ResolveConflict("bob", "dav", "a.ics", c.Seq, Resolution{Keep: KeptUpstream}),
		"get other cal": func() error { _, err := s.GetConflict("alice", "nope", "a.ics", c.Seq); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	unchanged(t, s, c.Seq, "RACED", rev)

	// Once resolved, the same decision again is ErrNotFound.
	if err := s.ResolveConflict("alice", "dav", "a.ics", c.Seq, Resolution{Keep: KeptUpstream}); err != nil {
		t.Fatal(err)
	}
	if err := s.ResolveConflict("alice", "dav", "a.ics", c.Seq, Resolution{Keep: KeptUpstream}); !errors.Is(err, ErrNotFound) {
		t.Errorf("second resolution: %v, want ErrNotFound", err)
	}
}

// TestResolveConflictAtomic checks, from read transactions running
// alongside, that the object write, its outbox entry and the removal of
// the conflict are seen together or not at all.
func TestResolveConflictAtomic(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	const rounds = 40
	type pair struct {
		seq  uint64
		etag string
	}
	names := func(i int) string { return "o" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".ics" }
	var setup []pair
	for i := range rounds {
		name := names(i)
		o := pushed(t, s, "dav", name, "uid-"+name, "UPSTREAM "+name, "up")
		c, err := s.PutConflict(Conflict{User: "alice", Cal: "dav", Name: name, Kept: KeptUpstream, LoserData: []byte("LOCAL " + name)})
		if err != nil {
			t.Fatal(err)
		}
		setup = append(setup, pair{c.Seq, o.ETag})
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	var mixed []string
	var mu sync.Mutex
	wg.Go(func() {
		for n := 0; n < 100000; n++ { // bounded; stops when the writer is done
			select {
			case <-done:
				return
			default:
			}
			err := s.db.View(func(tx *bbolt.Tx) error {
				for i := range rounds {
					name := names(i)
					_, hasConflict, err := getConflict(tx, "alice", "dav", name, setup[i].seq)
					if err != nil {
						return err
					}
					v := calBucket(tx, bucketObjects, "alice", "dav").Get([]byte(name))
					o, err := decodeObject(name, v, true)
					if err != nil {
						return err
					}
					local := bytes.HasPrefix(o.Data, []byte("LOCAL"))
					queued := hasPending(tx, "alice", "dav", name)
					if hasConflict == local || local != queued {
						mu.Lock()
						mixed = append(mixed, name)
						mu.Unlock()
					}
				}
				return nil
			})
			if err != nil {
				t.Error(err)
				return
			}
		}
	})
	for i := range rounds {
		name := names(i)
		err := s.ResolveConflict("alice", "dav", name, setup[i].seq, Resolution{Keep: KeptLocal, CurrentETag: setup[i].etag,
			Loser: &Object{UID: "uid-" + name, Component: "VEVENT", Data: []byte("LOCAL " + name)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if len(mixed) > 0 {
		t.Fatalf("a reader saw a half-done resolution of %v", mixed)
	}
	if n := len(pending(t, s, "dav")); n != rounds {
		t.Errorf("%d outbox entries, want %d", n, rounds)
	}
	if list, _ := s.ListConflicts("alice"); len(list) != 0 {
		t.Errorf("%d conflicts left", len(list))
	}
}
