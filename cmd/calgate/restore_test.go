package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestoreE2E backs up a running calgate, goes on writing (a client
// syncs those changes), restores the backup with calgate stopped, and
// starts calgate again: the calendar holds exactly the backup's objects,
// and the client's sync token from after the backup is refused, so the
// client resyncs in full instead of missing changes.
func TestRestoreE2E(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	srv := startCalgate(t, cfg)
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range 5 {
		srv.putNew(t, personalPath+fmt.Sprintf("kept-%d.ics", i), eventICS(fmt.Sprintf("kept-%d@restore.test", i), "kept", at.Add(time.Duration(i)*time.Hour)))
	}
	_, _, token := srv.syncCollection(t, personalPath, "")
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, out, errOut := runBinary(t, "backup", "-config", cfg, backup); code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	for i := range 3 {
		srv.putNew(t, personalPath+fmt.Sprintf("lost-%d.ics", i), eventICS(fmt.Sprintf("lost-%d@restore.test", i), "lost", at.Add(time.Duration(i)*time.Hour)))
	}
	changed, _, afterBackup := srv.syncCollection(t, personalPath, token)
	if len(changed) != 3 {
		t.Fatalf("client saw %d changes after the backup, want 3", len(changed))
	}

	code, _, errOut := runBinary(t, "restore", "-config", cfg, backup)
	if code != 1 || !strings.Contains(errOut, "stop calgate first") {
		t.Errorf("restore while serving: exit %d, %q; want 1 and \"stop calgate first\"", code, errOut)
	}
	srv.stop(t)
	code, out, errOut := runBinary(t, "restore", "-config", cfg, backup)
	if code != 0 || !strings.Contains(out, "5 objects") {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}

	srv = startCalgate(t, cfg)
	objs := srv.calendarObjects(t, personalPath)
	// (checked before any new write)
	if len(objs) != 5 {
		t.Errorf("%d objects after restore, want the backup's 5: %v", len(objs), objs)
	}
	for href := range objs {
		if !strings.Contains(href, "kept-") {
			t.Errorf("%s after restore: written after the backup", href)
		}
	}
	// New writes bring the restored calendar's revision back up to the
	// number in the client's token from after the backup: that token must
	// still be refused, or the client would never see these objects.
	for i := range 3 {
		srv.putNew(t, personalPath+fmt.Sprintf("new-%d.ics", i), eventICS(fmt.Sprintf("new-%d@restore.test", i), "new", at.Add(time.Duration(i)*time.Hour)))
	}
	resp, body := srv.mustDo(t, "REPORT", personalPath, []byte(`<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:"><D:sync-token>`+afterBackup+`</D:sync-token><D:sync-level>1</D:sync-level>
<D:prop><D:getetag/></D:prop></D:sync-collection>`), http.Header{"Content-Type": {"application/xml"}, "Depth": {"0"}})
	if resp.StatusCode/100 != 4 || !strings.Contains(string(body), "valid-sync-token") {
		t.Errorf("sync-collection with a token from after the backup: %s\n%s\nwant a 4xx with DAV:valid-sync-token", resp.Status, body)
	}
	// A full resync works and finds the backup's objects.
	changed, _, _ = srv.syncCollection(t, personalPath, "")
	if len(changed) != 8 {
		t.Errorf("full resync: %d objects, want the backup's 5 and 3 new", len(changed))
	}
}
