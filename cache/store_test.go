package cache

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// openTest opens a store in a fresh temporary directory and closes it when
// the test ends.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		if tt, ok := t.(*testing.T); ok {
			opts.Logger = slog.New(slog.NewTextHandler(tt.Output(), nil))
		}
	}
	s, err := Open(filepath.Join(t.TempDir(), "calgate.db"), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// mustCalendar creates calendar user/id.
func mustCalendar(t testing.TB, s *Store, user, id string) Calendar {
	t.Helper()
	c, err := s.CreateCalendar(Calendar{User: user, ID: id, DisplayName: id, Components: []string{"VEVENT", "VTODO"}})
	if err != nil {
		t.Fatalf("CreateCalendar(%s/%s): %v", user, id, err)
	}
	return c
}

func TestOpenNewFileHasSchema(t *testing.T) {
	s := openTest(t, Options{})
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keySchema)
		if len(v) != 4 || binary.BigEndian.Uint32(v) != 1 {
			t.Errorf("schema = %x, want 00000001", v)
		}
		for _, name := range rootBuckets {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %q missing", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Path(); filepath.Base(got) != "calgate.db" {
		t.Errorf("Path() = %q", got)
	}
}

func TestReopenPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateCalendar(Calendar{User: "alice", ID: "work", Color: "#3366cc",
		DeadProps: map[string]string{"{urn:x}p": "<p xmlns=\"urn:x\">v</p>"}})
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := s.PutObject("alice", "work", Object{Name: "a.ics", UID: "u1", Component: "VEVENT",
		Start: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC), Warnings: []string{"unknown TZID"}, Data: []byte("BEGIN:VCALENDAR\r\n")}, PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteObject("alice", "work", "a.ics", ""); err != nil {
		t.Fatal(err)
	}
	obj2, _, err := s.PutObject("alice", "work", Object{Name: "b.ics", UID: "u2", Data: []byte("x")}, PutConditions{})
	if err != nil {
		t.Fatal(err)
	}
	cal, err := s.GetCalendar("alice", "work")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gotCal, err := s.GetCalendar("alice", "work")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotCal, cal) {
		t.Errorf("calendar after reopen = %+v, want %+v", gotCal, cal)
	}
	if _, err := s.GetObject("alice", "work", obj.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted object after reopen: err = %v", err)
	}
	got, err := s.GetObject("alice", "work", "b.ics")
	if err != nil {
		t.Fatal(err)
	}
	obj2.Data = []byte("x")
	if !reflect.DeepEqual(got, obj2) {
		t.Errorf("object after reopen = %+v, want %+v", got, obj2)
	}
	rev, changes, err := s.Changes("alice", "work", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{Name: "a.ics", Revision: 2, Deleted: true}, {Name: "b.ics", Revision: 3}}
	if rev != 3 || !reflect.DeepEqual(changes, want) {
		t.Errorf("Changes after reopen = %d %+v, want 3 %+v", rev, changes, want)
	}
	if name, err := s.LookupUID("alice", "work", "u2"); err != nil || name != "b.ics" {
		t.Errorf("LookupUID after reopen = %q, %v", name, err)
	}
}

func TestOpenSchema(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(tx *bbolt.Tx) error
		wantErr error
	}{
		{"newer version", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 2))
		}, ErrSchema},
		{"version zero", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 0))
		}, ErrSchema},
		{"malformed version", func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte{1})
		}, ErrSchema},
		{"no meta bucket, foreign buckets", func(tx *bbolt.Tx) error {
			if err := tx.DeleteBucket(bucketMeta); err != nil {
				return err
			}
			_, err := tx.CreateBucket([]byte("something-else"))
			return err
		}, ErrSchema},
		{"current version", func(tx *bbolt.Tx) error { return nil }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "calgate.db")
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.db.Update(tc.prepare); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path, Options{})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("reopen: err = %v, want %v", err, tc.wantErr)
			}
			if err == nil {
				s.Close()
			} else if !strings.HasPrefix(err.Error(), "cache: ") {
				t.Errorf("error %q lacks the cache: prefix", err)
			}
		})
	}
}

// TestOpenLocked checks that a second Open of a file held open fails with
// ErrLocked. bbolt takes flock(2) on its own file descriptor, and flock
// locks belong to the open file description, so a second open in the same
// process conflicts just like another process would.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s2, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	for _, want := range []string{path, "is another calgate running on it?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The first store still works.
	if _, err := s.ListCalendars("alice"); err != nil {
		t.Fatal(err)
	}
}

func TestCalendarCreateGetList(t *testing.T) {
	s := openTest(t, Options{})
	before := time.Now().UTC()
	c, err := s.CreateCalendar(Calendar{User: "alice", ID: "work", DisplayName: "Work",
		Epoch: "ignored", Revision: 7, Created: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Epoch) != 16 || strings.Trim(c.Epoch, "0123456789abcdef") != "" {
		t.Errorf("Epoch = %q, want 16 hex chars", c.Epoch)
	}
	if c.Kind != "local" || c.Revision != 0 || c.Created.Before(before) || !c.Modified.Equal(c.Created) {
		t.Errorf("created calendar = %+v", c)
	}
	got, err := s.GetCalendar("alice", "work")
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("GetCalendar = %+v, %v; want %+v", got, err, c)
	}
	if _, err := s.CreateCalendar(Calendar{User: "alice", ID: "work"}); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateCalendar: err = %v, want ErrExists", err)
	}
	mustCalendar(t, s, "alice", "a-first")
	mustCalendar(t, s, "bob", "work")
	if c, err := s.CreateCalendar(Calendar{User: "alice", ID: "feed", Kind: "ics", Source: "hol"}); err != nil || c.Kind != "ics" {
		t.Errorf("CreateCalendar with kind = %+v, %v", c, err)
	}

	list, err := s.ListCalendars("alice")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		if c.User != "alice" {
			t.Errorf("ListCalendars(alice) returned %s/%s", c.User, c.ID)
		}
		ids = append(ids, c.ID)
	}
	if want := []string{"a-first", "feed", "work"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ListCalendars ids = %q, want %q", ids, want)
	}
	if list, err := s.ListCalendars("nobody"); err != nil || list == nil || len(list) != 0 {
		t.Errorf("ListCalendars(nobody) = %v, %v; want empty", list, err)
	}
	if _, err := s.GetCalendar("alice", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetCalendar(missing): err = %v", err)
	}
	if _, err := s.GetCalendar("nobody", "work"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetCalendar(unknown user): err = %v", err)
	}
}

func TestCreateCalendarInvalid(t *testing.T) {
	s := openTest(t, Options{})
	for _, c := range []Calendar{
		{User: "", ID: "work"},
		{User: "alice", ID: ""},
		{User: "alice", ID: "a/b"},
		{User: "alice", ID: ".."},
	} {
		if _, err := s.CreateCalendar(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateCalendar(%q/%q): err = %v, want ErrInvalid", c.User, c.ID, err)
		}
	}
}

func TestUpdateCalendar(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "work")
	if _, _, err := s.PutObject("alice", "work", Object{Name: "a.ics", UID: "a", Data: []byte("a")}, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	orig, _ := s.GetCalendar("alice", "work")

	got, err := s.UpdateCalendar("alice", "work", func(c *Calendar) error {
		c.DisplayName = "Work!"
		c.Color = "#ff0000"
		c.DeadProps = map[string]string{"{urn:x}a": "<a xmlns=\"urn:x\"/>"}
		// Immutable fields: these changes are ignored.
		c.User, c.ID, c.Epoch, c.Revision, c.Created = "mallory", "other", "0000000000000000", 99, time.Unix(0, 0)
		c.Kind = ""
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := orig
	want.DisplayName, want.Color = "Work!", "#ff0000"
	want.DeadProps = map[string]string{"{urn:x}a": "<a xmlns=\"urn:x\"/>"}
	want.Modified = got.Modified
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UpdateCalendar = %+v, want %+v", got, want)
	}
	if got.Modified.Before(orig.Modified) {
		t.Errorf("Modified went back: %v < %v", got.Modified, orig.Modified)
	}
	if stored, _ := s.GetCalendar("alice", "work"); !reflect.DeepEqual(stored, got) {
		t.Errorf("stored = %+v, want %+v", stored, got)
	}

	boom := errors.New("boom")
	if _, err := s.UpdateCalendar("alice", "work", func(c *Calendar) error {
		c.DisplayName = "lost"
		return boom
	}); err != boom {
		t.Errorf("UpdateCalendar with failing fn: err = %v, want boom", err)
	}
	if stored, _ := s.GetCalendar("alice", "work"); stored.DisplayName != "Work!" {
		t.Errorf("failed update was stored: %q", stored.DisplayName)
	}
	if _, err := s.UpdateCalendar("alice", "nope", func(*Calendar) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateCalendar(missing): err = %v", err)
	}
}

func TestDeleteCalendarRemovesEverything(t *testing.T) {
	s := openTest(t, Options{})
	old := mustCalendar(t, s, "alice", "work")
	mustCalendar(t, s, "alice", "home")
	for _, name := range []string{"a.ics", "b.ics", "c.ics"} {
		if _, _, err := s.PutObject("alice", "work", Object{Name: name, UID: "uid-" + name, Data: []byte(name)}, PutConditions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.PutObject("alice", "home", Object{Name: "h.ics", UID: "h", Data: []byte("h")}, PutConditions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteObject("alice", "work", "c.ics", ""); err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteCalendar("alice", "work"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCalendar("alice", "work"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteCalendar: err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCalendar("alice", "work"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetCalendar after delete: err = %v", err)
	}
	if _, err := s.ListObjects("alice", "work"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListObjects after delete: err = %v", err)
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, root := range [][]byte{bucketObjects, bucketUIDs, bucketChanges} {
			if b := calBucket(tx, root, "alice", "work"); b != nil {
				t.Errorf("bucket %s/alice/work survived", root)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The other calendar is untouched.
	if objs, err := s.ListObjects("alice", "home"); err != nil || len(objs) != 1 {
		t.Errorf("other calendar: %v, %v", objs, err)
	}

	c := mustCalendar(t, s, "alice", "work")
	if c.Epoch == old.Epoch {
		t.Errorf("re-created calendar kept epoch %q", c.Epoch)
	}
	if c.Revision != 0 {
		t.Errorf("re-created calendar has revision %d", c.Revision)
	}
	if objs, err := s.ListObjects("alice", "work"); err != nil || len(objs) != 0 {
		t.Errorf("re-created calendar lists %v, %v", objs, err)
	}
	if _, err := s.LookupUID("alice", "work", "uid-a.ics"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old UID still indexed: err = %v", err)
	}
	if rev, ch, err := s.Changes("alice", "work", 0); err != nil || rev != 0 || len(ch) != 0 {
		t.Errorf("Changes of re-created calendar = %d %v %v", rev, ch, err)
	}
	if _, _, err := s.Changes("alice", "work", 3); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("old token on re-created calendar: err = %v, want ErrTokenExpired", err)
	}
	// The old UID is free again.
	if _, created, err := s.PutObject("alice", "work", Object{Name: "new.ics", UID: "uid-a.ics", Data: []byte("n")}, PutConditions{IfNoneMatch: true}); err != nil || !created {
		t.Errorf("put into re-created calendar: created=%v err=%v", created, err)
	}
}

func TestMergedCalendarRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.CreateCalendar(Calendar{User: "alice", ID: "everything", Kind: "merged",
		Members: []string{"personal", "work", "holidays"}, WriteTo: "personal"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(want.Members, []string{"personal", "work", "holidays"}) || want.WriteTo != "personal" {
		t.Fatalf("CreateCalendar returned Members %v WriteTo %q", want.Members, want.WriteTo)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetCalendar("alice", "everything")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen = %+v, want %+v", got, want)
	}
	// UpdateCalendar keeps them unless fn changes them.
	got, err = s.UpdateCalendar("alice", "everything", func(c *Calendar) error {
		c.DisplayName = "All"
		return nil
	})
	if err != nil || !slices.Equal(got.Members, want.Members) || got.WriteTo != "personal" {
		t.Fatalf("UpdateCalendar = %+v, %v", got, err)
	}
	got, err = s.UpdateCalendar("alice", "everything", func(c *Calendar) error {
		c.Members, c.WriteTo = []string{"work"}, ""
		return nil
	})
	if err != nil || !slices.Equal(got.Members, []string{"work"}) || got.WriteTo != "" {
		t.Fatalf("UpdateCalendar = %+v, %v", got, err)
	}
	// Other kinds do not carry the keys at all.
	mustCalendar(t, s, "alice", "plain")
	var raw string
	if err := s.db.View(func(tx *bbolt.Tx) error {
		raw = string(tx.Bucket(bucketCalendars).Bucket([]byte("alice")).Get([]byte("plain")))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "members") || strings.Contains(raw, "write_to") {
		t.Errorf("record of a local calendar: %s", raw)
	}
}
