package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// backupLine matches backup's report.
var backupLine = regexp.MustCompile(`^backup: (\d+) calendars, (\d+) objects, [\d.]+ MB written to (.+) in \S+\n$`)

// TestBackupDuringWrites runs calgate with four writers PUTting new
// objects without pause, takes a backup with the calgate binary (through
// the admin socket), and checks that the backup opens, verifies, and
// holds every write acknowledged before the backup started, with its
// ETag.
func TestBackupDuringWrites(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	srv := startCalgate(t, cfg)

	const (
		writers   = 4
		perWriter = 400 // bounds the writes; the backup normally ends long before
	)
	var (
		mu    sync.Mutex
		acked = map[string]string{} // name → ETag, guarded by mu
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if ctx.Err() != nil {
					return
				}
				name := fmt.Sprintf("w%d-%03d.ics", w, i)
				body := eventICS(strings.TrimSuffix(name, ".ics")+"@backup.test", "write "+name,
					time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Hour))
				resp, _, err := srv.do(ctx, http.MethodPut, personalPath+name, body, http.Header{
					"Content-Type": {"text/calendar; charset=utf-8"}, "If-None-Match": {"*"}})
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("PUT %s: %v", name, err)
					}
					return
				}
				if resp.StatusCode/100 != 2 {
					t.Errorf("PUT %s: %s", name, resp.Status)
					return
				}
				mu.Lock()
				acked[name] = strings.Trim(resp.Header.Get("ETag"), `"`)
				mu.Unlock()
			}
		})
	}
	waitUntil(t, "writes acknowledged before the backup", 30*time.Second, 20*time.Millisecond, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 100, fmt.Sprintf("%d acknowledged", len(acked))
	})
	mu.Lock()
	before := make(map[string]string, len(acked))
	for k, v := range acked {
		before[k] = v
	}
	mu.Unlock()

	file := filepath.Join(t.TempDir(), "calgate-backup.db")
	code, out, errOut := runBinary(t, "backup", "-config", cfg, file)
	cancel()
	wg.Wait()
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	m := backupLine.FindStringSubmatch(out)
	if m == nil || m[1] != "2" || m[3] != file {
		t.Errorf("backup printed %q", out)
	}
	if !strings.Contains(srv.logs.String(), "backup written through the admin socket") {
		t.Errorf("the backup did not go through the admin socket; calgate's log:\n%s", srv.logs.String())
	}
	t.Logf("%d writes acknowledged before the backup, %d in all; %s", len(before), len(acked), strings.TrimSpace(out))

	sum, err := cache.Verify(file)
	if err != nil {
		t.Fatalf("Verify(backup): %v", err)
	}
	if m != nil && fmt.Sprint(sum.Objects) != m[2] {
		t.Errorf("Verify counts %d objects, backup said %s", sum.Objects, m[2])
	}
	b, err := cache.Open(file, cache.Options{})
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer b.Close()
	objs, err := b.ListObjects(testUser, "personal")
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string, len(objs))
	for _, o := range objs {
		got[o.Name] = o.ETag
	}
	missing := 0
	for name, etag := range before {
		if got[name] != etag {
			missing++
			if missing <= 5 {
				t.Errorf("backup: %s has ETag %q, acknowledged with %q", name, got[name], etag)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes are not in the backup as acknowledged", missing, len(before))
	}
}

// TestBackupOffline backs up a stopped calgate's data file (in-process),
// checks the copy, and checks that backup refuses to overwrite the data
// file and reports a missing one.
func TestBackupOffline(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	data := filepath.Join(dir, "calgate.db")

	code, _, errOut := runCLI(t, "", "backup", "-config", cfg, filepath.Join(dir, "b.db"))
	if code != 1 || !strings.Contains(errOut, "no data file to back up") {
		t.Errorf("backup without a data file: exit %d, %q", code, errOut)
	}

	src := filepath.Join(dir, "events.ics")
	var ics strings.Builder
	ics.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n")
	for i := range 30 {
		fmt.Fprintf(&ics, "BEGIN:VEVENT\r\nUID:offline-%d\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240301T%02d0000Z\r\nEND:VEVENT\r\n", i, i%24)
	}
	ics.WriteString("END:VCALENDAR\r\n")
	if err := os.WriteFile(src, []byte(ics.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "", "import", "-config", cfg, testUser+"/personal", src); code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}

	file := filepath.Join(t.TempDir(), "backup.db")
	code, out, errOut := runCLI(t, "", "backup", "-config", cfg, file)
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	if m := backupLine.FindStringSubmatch(out); m == nil || m[1] != "2" || m[2] != "30" || m[3] != file {
		t.Errorf("backup printed %q, want 2 calendars, 30 objects written to %s", out, file)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("backup left %s.tmp: %v", file, err)
	}
	want := componentsByUID(t, data, testUser, "personal")
	if got := componentsByUID(t, file, testUser, "personal"); len(got) != 30 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the backup holds %d objects, not those of the data file", len(got))
	}

	// The data file itself, by another name.
	before, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(data, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{data, filepath.Join(dir, ".", "calgate.db"), link} {
		code, out, errOut := runCLI(t, "", "backup", "-config", cfg, target)
		if code != 1 || !strings.Contains(errOut, "is the data file itself") {
			t.Errorf("backup to %s: exit %d, stdout %q, stderr %q", target, code, out, errOut)
		}
	}
	if after, err := os.ReadFile(data); err != nil || string(after) != string(before) {
		t.Errorf("the data file changed: %v", err)
	}
}
