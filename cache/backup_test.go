package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// putN stores n objects named prefix-i.ics in alice/cal and returns their
// ETags by name.
func putN(t testing.TB, s *Store, cal, prefix string, n int) map[string]string {
	t.Helper()
	etags := make(map[string]string, n)
	for i := range n {
		name := fmt.Sprintf("%s-%d.ics", prefix, i)
		o, _, err := s.PutObject("alice", cal, Object{Name: name, UID: "uid-" + name, Component: "VEVENT",
			Data: []byte("BEGIN:VCALENDAR\r\nX-N:" + name + "\r\nEND:VCALENDAR\r\n")}, PutConditions{})
		if err != nil {
			t.Fatal(err)
		}
		etags[name] = o.ETag
	}
	return etags
}

// TestWriteBackupDuringWrites takes a backup while four writers go on and
// checks that the copy opens, verifies, has the size announced, and holds
// every object acknowledged before the backup started.
func TestWriteBackupDuringWrites(t *testing.T) {
	s := openTest(t, Options{})
	mustCalendar(t, s, "alice", "home")
	before := putN(t, s, "home", "pre", 50)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d.ics", w, i)
				if _, _, err := s.PutObject("alice", "home", Object{Name: name, UID: name, Component: "VEVENT",
					Data: []byte("BEGIN:VCALENDAR\r\nX:" + name + "\r\nEND:VCALENDAR\r\n")}, PutConditions{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var buf bytes.Buffer
	announced := int64(-1)
	n, err := s.WriteBackup(&buf, func(size int64) { announced = size })
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n != announced || int64(buf.Len()) != n {
		t.Fatalf("backup wrote %d bytes, announced %d, buffer has %d", n, announced, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := Verify(path)
	if err != nil {
		t.Fatalf("Verify(backup): %v", err)
	}
	if sum.Schema != schemaVersion || sum.Users != 1 || sum.Calendars != 1 || sum.Objects < len(before) || sum.Size != n {
		t.Errorf("summary %+v, want schema %d, 1 user, 1 calendar, >= %d objects, size %d", sum, schemaVersion, len(before), n)
	}
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objs, err := b.ListObjects("alice", "home")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != sum.Objects {
		t.Errorf("ListObjects gives %d objects, Verify counted %d", len(objs), sum.Objects)
	}
	got := map[string]string{}
	for _, o := range objs {
		got[o.Name] = o.ETag
	}
	for name, etag := range before {
		if got[name] != etag {
			t.Errorf("backup: %s has ETag %q, want %q", name, got[name], etag)
		}
	}
}

// TestVerifyRejects checks that Verify names what is wrong with a file
// that is not a calgate store, one from a newer calgate, and a damaged one.
func TestVerifyRejects(t *testing.T) {
	dir := t.TempDir()

	other := filepath.Join(dir, "other.db")
	db, err := bbolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("things"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Verify(other); !errors.Is(err, ErrSchema) {
		t.Errorf("Verify(non-calgate bbolt file) = %v, want ErrSchema", err)
	}

	newer := filepath.Join(dir, "newer.db")
	s, err := Open(newer, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 99})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Verify(newer); !errors.Is(err, ErrSchema) {
		t.Errorf("Verify(schema 99) = %v, want ErrSchema", err)
	}

	text := filepath.Join(dir, "text.db")
	if err := os.WriteFile(text, []byte("BEGIN:VCALENDAR\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(text); err == nil {
		t.Error("Verify(a text file) succeeded")
	}

	if _, err := Verify(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify(missing) = %v, want ErrNotExist", err)
	}
}

// TestVerifyLocked checks that Verify of a file held by an open Store
// fails with ErrLocked instead of waiting.
func TestVerifyLocked(t *testing.T) {
	s := openTest(t, Options{})
	start := time.Now()
	_, err := Verify(s.Path())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Verify(open store) = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Verify waited %s", d)
	}
}

// TestCompact deletes most of a store's objects, compacts it, and checks
// that the file shrank and what is left is intact; a held file is refused.
func TestCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCalendar(t, s, "alice", "home")
	etags := putN(t, s, "home", "obj", 400)
	for i := 10; i < 400; i++ {
		name := fmt.Sprintf("obj-%d.ics", i)
		if err := s.DeleteObject("alice", "home", name, ""); err != nil {
			t.Fatal(err)
		}
		delete(etags, name)
	}
	cal, err := s.GetCalendar("alice", "home")
	if err != nil {
		t.Fatal(err)
	}

	if _, _, err := Compact(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("Compact(open store) = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	before, after, err := Compact(path)
	if err != nil {
		t.Fatal(err)
	}
	if after <= 0 || after >= before {
		t.Errorf("Compact: %d bytes before, %d after; want smaller", before, after)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != after {
		t.Errorf("file size %v (%v), Compact says %d", fi.Size(), err, after)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs, err := s.ListObjects("alice", "home")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(etags) {
		t.Errorf("%d objects after compaction, want %d", len(objs), len(etags))
	}
	for _, o := range objs {
		if etags[o.Name] != o.ETag {
			t.Errorf("%s: ETag %q, want %q", o.Name, o.ETag, etags[o.Name])
		}
	}
	cal2, err := s.GetCalendar("alice", "home")
	if err != nil {
		t.Fatal(err)
	}
	if cal2.Revision != cal.Revision || cal2.Epoch != cal.Epoch {
		t.Errorf("calendar after compaction: revision %d epoch %s, want %d %s", cal2.Revision, cal2.Epoch, cal.Revision, cal.Epoch)
	}
	// The change log survives too: the last five deletions are in it.
	if _, ch, err := s.Changes("alice", "home", cal.Revision-5); err != nil || len(ch) != 5 {
		t.Errorf("Changes after compaction: %d changes, %v", len(ch), err)
	}
}
