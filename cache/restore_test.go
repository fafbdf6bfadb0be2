package cache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRestore restores a backup over a store that moved on after it: the
// objects are the backup's, every calendar has a new epoch (so a sync
// token from after the backup cannot be mistaken for a restored
// revision), and the replaced file is kept.
func TestRestore(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "calgate.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCalendar(t, s, "alice", "home")
	kept := putN(t, s, "home", "pre", 5)
	backup := filepath.Join(dir, "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteBackup(f, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	atBackup, err := s.GetCalendar("alice", "home")
	if err != nil {
		t.Fatal(err)
	}
	putN(t, s, "home", "post", 3) // after the backup: lost by the restore

	// While the store is open, restore refuses.
	if _, err := Restore(backup, path); !errors.Is(err, ErrLocked) {
		t.Fatalf("Restore while the store is open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A file that is no backup is refused and nothing changes.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(junk, path); err == nil {
		t.Fatal("Restore of a junk file: no error")
	}

	sum, err := Restore(backup, path)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Objects != 5 || sum.Calendars != 1 {
		t.Errorf("restored summary %+v, want 1 calendar and 5 objects", sum)
	}
	if _, err := os.Stat(path + ".before-restore"); err != nil {
		t.Errorf("the replaced file was not kept: %v", err)
	}
	if before, err := Verify(path + ".before-restore"); err != nil || before.Objects != 8 {
		t.Errorf("kept file: %+v, %v; want the 8 objects it had", before, err)
	}
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	objs, err := r.ListObjects("alice", "home")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(kept) {
		t.Fatalf("%d objects after restore, want %d", len(objs), len(kept))
	}
	for _, o := range objs {
		if kept[o.Name] != o.ETag {
			t.Errorf("%s: etag %s, want %s", o.Name, o.ETag, kept[o.Name])
		}
	}
	cal, err := r.GetCalendar("alice", "home")
	if err != nil {
		t.Fatal(err)
	}
	if cal.Epoch == atBackup.Epoch || cal.Epoch == "" {
		t.Errorf("epoch %q after restore, want a new one (was %q)", cal.Epoch, atBackup.Epoch)
	}
	if cal.Revision != atBackup.Revision {
		t.Errorf("revision %d after restore, want the backup's %d", cal.Revision, atBackup.Revision)
	}
}
