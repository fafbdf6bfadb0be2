package cache

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// mustKind creates calendar alice/id of the given kind.
func mustKind(t testing.TB, s *Store, id, kind string) Calendar {
	t.Helper()
	c, err := s.CreateCalendar(Calendar{User: "alice", ID: id, Kind: kind, Source: "src-" + id, Components: []string{"VEVENT"}})
	if err != nil {
		t.Fatalf("CreateCalendar(%s): %v", id, err)
	}
	return c
}

// pending returns the pending outbox entries of alice/cal.
func pending(t testing.TB, s *Store, cal string) []OutboxEntry {
	t.Helper()
	es, err := s.PendingOutbox("alice", cal)
	if err != nil {
		t.Fatalf("PendingOutbox(%s): %v", cal, err)
	}
	return es
}

// pushed stores name in alice/cal as if it had come from the upstream,
// with upstream href "/up/"+name and the given upstream etag.
func pushed(t testing.TB, s *Store, cal, name, uid, data, upETag string) Object {
	t.Helper()
	o, err := s.PutObjectUpstream("alice", cal, Object{Name: name, UID: uid, Component: "VEVENT", Data: []byte(data),
		UpstreamHref: "/up/" + name, UpstreamETag: upETag})
	if err != nil {
		t.Fatalf("PutObjectUpstream(%s): %v", name, err)
	}
	return o
}

// checkIndex verifies that the pending index and the outbox entries agree.
func checkIndex(t testing.TB, s *Store) {
	t.Helper()
	all, err := s.PendingOutbox("", "")
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		n := 0
		if p := tx.Bucket(bucketOutbox).Bucket(keyPending); p != nil {
			err := eachBucket(p, func(_ []byte, ub *bbolt.Bucket) error {
				return eachBucket(ub, func(_ []byte, cb *bbolt.Bucket) error {
					if k, _ := cb.Cursor().First(); k == nil {
						t.Error("empty pending bucket left behind")
					}
					return cb.ForEach(func(_, _ []byte) error { n++; return nil })
				})
			})
			if err != nil {
				return err
			}
		}
		if n != len(all) {
			t.Errorf("pending index has %d names, outbox %d entries", n, len(all))
		}
		for _, e := range all {
			p := pendingBucket(tx, e.User, e.Cal)
			if p == nil || string(p.Get([]byte(e.Name))) != string(seqKey(e.Seq)) {
				t.Errorf("entry %d (%s/%s/%s) not indexed", e.Seq, e.User, e.Cal, e.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOutboxOnlyForCalDAV(t *testing.T) {
	for _, tc := range []struct {
		kind string
		want bool
	}{
		{"local", false},
		{"", false},
		{"ics", false},
		{"caldav", true},
	} {
		t.Run("kind="+tc.kind, func(t *testing.T) {
			s := openTest(t, Options{})
			mustKind(t, s, "c", tc.kind)
			put(t, s, "c", "a.ics", "ua", "A1")
			put(t, s, "c", "b.ics", "ub", "B1")
			if err := s.DeleteObject("alice", "c", "b.ics", ""); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.MoveObject("alice", "c", "a.ics", "c", "m.ics", false, PutConditions{}); err != nil {
				t.Fatal(err)
			}
			es := pending(t, s, "c")
			if !tc.want {
				if len(es) != 0 {
					t.Fatalf("%d outbox entries for a %q calendar: %+v", len(es), tc.kind, es)
				}
				return
			}
			// b: put then delete of a never-pushed object leaves nothing;
			// a: the same through the move; m: a new put.
			if len(es) != 1 || es[0].Name != "m.ics" || es[0].Op != "put" || es[0].BaseETag != "" || es[0].Href != "" {
				t.Fatalf("outbox = %+v", es)
			}
			if e := es[0]; e.User != "alice" || e.Cal != "c" || e.Created.IsZero() || e.NextTry.IsZero() || e.Attempts != 0 {
				t.Errorf("entry fields: %+v", e)
			}
			checkIndex(t, s)
		})
	}
}

func TestOutboxMoveBetweenKinds(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	mustKind(t, s, "dav2", "caldav")
	mustKind(t, s, "loc", "local")
	pushed(t, s, "dav", "x.ics", "ux", "X", "e-x")
	put(t, s, "loc", "y.ics", "uy", "Y")

	// caldav → local: a delete in the source only, against the upstream version.
	if _, _, err := s.MoveObject("alice", "dav", "x.ics", "loc", "x.ics", false, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	if es := pending(t, s, "dav"); len(es) != 1 || es[0].Op != "delete" || es[0].BaseETag != "e-x" || es[0].Href != "/up/x.ics" {
		t.Fatalf("source outbox = %+v", es)
	}
	if es := pending(t, s, "loc"); len(es) != 0 {
		t.Fatalf("local destination got %+v", es)
	}
	// The moved object left its upstream identity behind.
	if o, err := s.GetObject("alice", "loc", "x.ics"); err != nil || o.UpstreamHref != "" || o.UpstreamETag != "" {
		t.Fatalf("moved object = %+v, %v", o, err)
	}
	// local → caldav: a put (new) in the destination only.
	if _, _, err := s.MoveObject("alice", "loc", "y.ics", "dav2", "y.ics", false, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	if es := pending(t, s, "dav2"); len(es) != 1 || es[0].Op != "put" || es[0].BaseETag != "" {
		t.Fatalf("destination outbox = %+v", es)
	}
	// A copy caldav → caldav: only the destination's put.
	pushed(t, s, "dav", "z.ics", "uz", "Z", "e-z")
	if _, _, err := s.MoveObject("alice", "dav", "z.ics", "dav2", "z2.ics", true, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	if es := pending(t, s, "dav"); len(es) != 1 || es[0].Name != "x.ics" {
		t.Fatalf("copy touched the source outbox: %+v", es)
	}
	if es := pending(t, s, "dav2"); len(es) != 2 || es[1].Name != "z2.ics" || es[1].Op != "put" {
		t.Fatalf("copy destination outbox = %+v", es)
	}
	// A refused move enqueues nothing.
	put(t, s, "dav2", "clash.ics", "uclash", "C")
	pushed(t, s, "dav", "w.ics", "uclash", "W", "e-w")
	before := len(pending(t, s, "dav2"))
	if _, _, err := s.MoveObject("alice", "dav", "w.ics", "dav2", "w.ics", false, PutConditions{}); err == nil {
		t.Fatal("move onto a UID conflict succeeded")
	}
	if len(pending(t, s, "dav")) != 1 || len(pending(t, s, "dav2")) != before {
		t.Fatal("refused move changed the outbox")
	}
	checkIndex(t, s)
}

func TestOutboxCoalescing(t *testing.T) {
	type want struct {
		op, base, href string
	}
	for _, tc := range []struct {
		name   string
		pushed bool // the object exists with upstream etag "E0" before the writes
		ops    []string
		want   *want // nil: no entry
	}{
		{"put,put new", false, []string{"put", "put"}, &want{"put", "", ""}},
		{"put,put pushed", true, []string{"put", "put"}, &want{"put", "E0", "/up/o.ics"}},
		{"put new,delete", false, []string{"put", "delete"}, nil},
		{"put new,delete,put", false, []string{"put", "delete", "put"}, &want{"put", "", ""}},
		{"put pushed,delete", true, []string{"put", "delete"}, &want{"delete", "E0", "/up/o.ics"}},
		{"delete pushed", true, []string{"delete"}, &want{"delete", "E0", "/up/o.ics"}},
		{"delete pushed,put", true, []string{"delete", "put"}, &want{"put", "E0", "/up/o.ics"}},
		{"delete pushed,put,delete", true, []string{"delete", "put", "delete"}, &want{"delete", "E0", "/up/o.ics"}},
		// "sent": the push of the pending entry got no reply (MarkOutboxSent).
		{"put new,sent,delete", false, []string{"put", "sent", "delete"}, &want{"delete", "", ""}},
		{"put new,sent,put,delete", false, []string{"put", "sent", "put", "delete"}, &want{"delete", "", ""}},
		{"put new,sent,delete,put", false, []string{"put", "sent", "delete", "put"}, &want{"put", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{})
			mustKind(t, s, "dav", "caldav")
			if tc.pushed {
				pushed(t, s, "dav", "o.ics", "uo", "V0", "E0")
			}
			var first OutboxEntry
			emptied := false // the entry was removed on the way: a fresh one follows
			for i, op := range tc.ops {
				switch op {
				case "put":
					put(t, s, "dav", "o.ics", "uo", "V"+string(rune('1'+i)))
				case "delete":
					if err := s.DeleteObject("alice", "dav", "o.ics", ""); err != nil {
						t.Fatal(err)
					}
				case "sent":
					if err := s.MarkOutboxSent(pending(t, s, "dav")[0].Seq); err != nil {
						t.Fatal(err)
					}
				}
				es := pending(t, s, "dav")
				if i == 0 {
					first = es[0]
				}
				emptied = emptied || len(es) == 0
			}
			es := pending(t, s, "dav")
			checkIndex(t, s)
			if tc.want == nil {
				if len(es) != 0 {
					t.Fatalf("outbox = %+v, want empty", es)
				}
				return
			}
			if len(es) != 1 {
				t.Fatalf("outbox = %+v, want one entry", es)
			}
			e := es[0]
			if got := (want{e.Op, e.BaseETag, e.Href}); got != *tc.want {
				t.Errorf("entry = %+v, want %+v", got, *tc.want)
			}
			if len(tc.ops) > 1 && e.Seq == first.Seq {
				t.Errorf("a replaced entry kept seq %d", e.Seq)
			}
			if !emptied && !e.Created.Equal(first.Created) {
				t.Errorf("Created = %v, want the first write's %v", e.Created, first.Created)
			}
		})
	}
}

// MarkOutboxSent of an entry replaced meanwhile marks the entry that
// replaced it, and leaves the link for CompleteOutbox.
func TestMarkOutboxSentReplaced(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	put(t, s, "dav", "o.ics", "uo", "V1")
	first := pending(t, s, "dav")[0]
	put(t, s, "dav", "o.ics", "uo", "V2")
	if err := s.MarkOutboxSent(first.Seq); err != nil {
		t.Fatal(err)
	}
	if es := pending(t, s, "dav"); len(es) != 1 || !es[0].Sent || es[0].Seq == first.Seq {
		t.Fatalf("outbox = %+v, want the replacing entry marked", es)
	}
	if err := s.CompleteOutbox(first.Seq, "other", "/up/o.ics", "E1"); err != nil {
		t.Fatalf("CompleteOutbox of the replaced entry: %v", err)
	}
	if es := pending(t, s, "dav"); len(es) != 1 || es[0].BaseETag != "E1" {
		t.Fatalf("outbox = %+v, want the replacing entry rebased", es)
	}
	if err := s.MarkOutboxSent(999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkOutboxSent(999) = %v, want ErrNotFound", err)
	}
}

func TestCompleteOutbox(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")

	// Matching ETag: the entry goes, the object learns its upstream identity,
	// and the revision stays.
	v1 := put(t, s, "dav", "a.ics", "ua", "A1")
	e := pending(t, s, "dav")[0]
	rev := revision(t, s, "dav")
	if err := s.CompleteOutbox(e.Seq, v1.ETag, "/up/a.ics", `"u1"`); err != nil {
		t.Fatal(err)
	}
	o, err := s.GetObject("alice", "dav", "a.ics")
	if err != nil || o.UpstreamHref != "/up/a.ics" || o.UpstreamETag != `"u1"` || o.Revision != v1.Revision || string(o.Data) != "A1" || o.ETag != v1.ETag {
		t.Fatalf("after complete: %+v, %v", o, err)
	}
	if revision(t, s, "dav") != rev || len(pending(t, s, "dav")) != 0 {
		t.Fatal("complete bumped the revision or left the entry")
	}
	if err := s.CompleteOutbox(e.Seq, v1.ETag, "/up/a.ics", `"u1"`); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second complete: %v", err)
	}
	// The next client write pushes against the recorded upstream ETag.
	v2 := put(t, s, "dav", "a.ics", "ua", "A2")
	e2 := pending(t, s, "dav")[0]
	if e2.BaseETag != `"u1"` || e2.Href != "/up/a.ics" {
		t.Fatalf("entry after complete: %+v", e2)
	}
	if o, _ := s.GetObject("alice", "dav", "a.ics"); o.UpstreamETag != `"u1"` {
		t.Fatal("a client put lost the upstream etag")
	}

	// Non-matching ETag: the object changed since the push read it; the
	// entry goes but the object keeps its upstream fields.
	if _, err := s.PutObjectUpstream("alice", "dav", Object{Name: "a.ics", UID: "ua", Data: []byte("A3"), UpstreamHref: "/up/a.ics", UpstreamETag: `"u3"`}); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteOutbox(e2.Seq, v2.ETag, "/up/a.ics", `"u2"`); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.GetObject("alice", "dav", "a.ics"); o.UpstreamETag != `"u3"` {
		t.Fatalf("stale complete overwrote the upstream etag: %+v", o)
	}
	if len(pending(t, s, "dav")) != 0 {
		t.Fatal("entry left")
	}

	// Writes during the push replace the entry (twice here): completing
	// the old one rebases the newest entry on the pushed version, so its
	// own push sends If-Match with the upstream's new ETag, not the
	// original base (which would be a false conflict).
	b1 := put(t, s, "dav", "b.ics", "ub", "B1")
	old := pending(t, s, "dav")[0]
	put(t, s, "dav", "b.ics", "ub", "B2")
	b3 := put(t, s, "dav", "b.ics", "ub", "B3")
	if err := s.CompleteOutbox(old.Seq, b1.ETag, "/up/b.ics", `"b1"`); err != nil {
		t.Fatalf("complete of a replaced entry: %v", err)
	}
	es := pending(t, s, "dav")
	if len(es) != 1 || es[0].Name != "b.ics" || es[0].BaseETag != `"b1"` || es[0].Href != "/up/b.ics" {
		t.Fatalf("newer write's entry not rebased: %+v", es)
	}
	if o, err := s.GetObject("alice", "dav", "b.ics"); err != nil || o.ETag != b3.ETag || o.UpstreamETag != `"b1"` {
		t.Fatalf("object after rebase: %+v %v", o, err)
	}
	// The link is used once: a second completion of the old entry is gone.
	if err := s.CompleteOutbox(old.Seq, b1.ETag, "/up/b.ics", `"b1"`); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second completion: %v", err)
	}

	// A delete: the entry goes, nothing else.
	del := pending(t, s, "dav")[0]
	if err := s.CompleteOutbox(del.Seq, "", "", ""); err != nil {
		t.Fatal(err)
	}
	pushed(t, s, "dav", "c.ics", "uc", "C", "ec")
	if err := s.DeleteObject("alice", "dav", "c.ics", ""); err != nil {
		t.Fatal(err)
	}
	d := pending(t, s, "dav")[0]
	if err := s.CompleteOutbox(d.Seq, "", "", ""); err != nil || len(pending(t, s, "dav")) != 0 {
		t.Fatalf("complete delete: %v", err)
	}
	checkIndex(t, s)
}

func TestDueRetryDropOutbox(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	mustKind(t, s, "dav2", "caldav")
	put(t, s, "dav", "1.ics", "u1", "1")
	put(t, s, "dav2", "2.ics", "u2", "2")
	put(t, s, "dav", "3.ics", "u3", "3")
	all, err := s.PendingOutbox("", "")
	if err != nil || len(all) != 3 {
		t.Fatalf("PendingOutbox = %+v, %v", all, err)
	}
	names := func(es []OutboxEntry) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.Name)
		}
		return out
	}
	if got := names(all); !reflect.DeepEqual(got, []string{"1.ics", "2.ics", "3.ics"}) {
		t.Fatalf("Seq order = %v", got)
	}
	if got := names(pending(t, s, "dav")); !reflect.DeepEqual(got, []string{"1.ics", "3.ics"}) {
		t.Fatalf("PendingOutbox(alice, dav) = %v", got)
	}
	if es, _ := s.PendingOutbox("alice", ""); len(es) != 3 {
		t.Fatalf("PendingOutbox(alice, \"\") = %d entries", len(es))
	}
	if es, _ := s.PendingOutbox("bob", ""); len(es) != 0 {
		t.Fatalf("PendingOutbox(bob) = %+v", es)
	}

	now := time.Now()
	later := now.Add(time.Hour)
	if err := s.RetryOutbox(all[0].Seq, later, "503 Service Unavailable"); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryOutbox(all[0].Seq, later, "timeout"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"before retry", now, 0, []string{"2.ics", "3.ics"}},
		{"limit", now, 1, []string{"2.ics"}},
		{"at retry time", later, 0, []string{"1.ics", "2.ics", "3.ics"}},
		{"after, limit", later.Add(time.Second), 2, []string{"1.ics", "2.ics"}},
		{"long ago", now.Add(-time.Hour), 0, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := s.DueOutbox(tc.now, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(es); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DueOutbox = %v, want %v", got, tc.want)
			}
		})
	}
	e := pending(t, s, "dav")[0]
	if e.Attempts != 2 || e.LastError != "timeout" || !e.NextTry.Equal(later) {
		t.Errorf("after two retries: %+v", e)
	}

	if err := s.DropOutbox(all[1].Seq); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"drop again":     s.DropOutbox(all[1].Seq),
		"retry dropped":  s.RetryOutbox(all[1].Seq, now, "x"),
		"retry unknown":  s.RetryOutbox(999, now, "x"),
		"complete gone":  s.CompleteOutbox(all[1].Seq, "", "", ""),
		"drop unknown":   s.DropOutbox(0),
		"complete never": s.CompleteOutbox(12345, "", "", ""),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
	if es := pending(t, s, "dav2"); len(es) != 0 {
		t.Fatalf("dropped entry still pending: %+v", es)
	}
	// A dropped entry no longer coalesces: the next write starts afresh.
	put(t, s, "dav2", "2.ics", "u2", "2b")
	if es := pending(t, s, "dav2"); len(es) != 1 || es[0].Seq <= all[2].Seq {
		t.Fatalf("after drop and write: %+v", es)
	}
	checkIndex(t, s)
}

func TestUpdateCalendarPropsOutbox(t *testing.T) {
	s := openTest(t, Options{})
	mustKind(t, s, "dav", "caldav")
	mustCalendar(t, s, "alice", "local")
	for _, cal := range []string{"dav", "local"} {
		for range 2 { // two changes coalesce into one entry
			if _, err := s.UpdateCalendarProps("alice", cal, func(c *Calendar) error { c.DisplayName += "x"; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.UpdateCalendar("alice", "dav", func(c *Calendar) error { c.Color = "#000000"; return nil }); err != nil {
		t.Fatal(err)
	}
	es := pending(t, s, "dav")
	if len(es) != 1 || es[0].Op != "proppatch" || es[0].Name != PropsName {
		t.Fatalf("caldav calendar outbox: %+v", es)
	}
	if es := pending(t, s, "local"); len(es) != 0 {
		t.Fatalf("local calendar outbox: %+v", es)
	}
	if err := s.CompleteOutbox(es[0].Seq, "", "", ""); err != nil || len(pending(t, s, "dav")) != 0 {
		t.Fatalf("complete: %v", err)
	}
	checkIndex(t, s)
}
