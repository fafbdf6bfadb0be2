package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/internal/fixtures"
)

// compactLine matches compact's report.
var compactLine = regexp.MustCompile(`^compact: (.+): [\d.]+ MB \((\d+) bytes\) before, [\d.]+ MB \((\d+) bytes\) after, \d+% smaller; (\d+) calendars, (\d+) objects; in \S+\n$`)

// TestCompactOffline imports the Google export, deletes most of it,
// compacts the stopped calgate's data file, and checks the sizes it
// reports and that the objects left are intact.
func TestCompactOffline(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	data := filepath.Join(dir, "calgate.db")
	src := filepath.Join(fixtures.Dir(t), "feeds", "google-huge-issue42.ics")
	if code, out, errOut := runCLI(t, "", "import", "-config", cfg, testUser+"/personal", src); code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	store, err := cache.Open(data, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := store.ListObjects(testUser, "personal")
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]string{}
	for i, o := range objs {
		if i%10 == 0 {
			kept[o.Name] = o.ETag
			continue
		}
		if err := store.DeleteObject(testUser, "personal", o.Name, ""); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI(t, "", "compact", "-config", cfg)
	if code != 0 {
		t.Fatalf("compact: exit %d\n%s%s", code, out, errOut)
	}
	m := compactLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("compact printed %q", out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	before, _ := strconv.ParseInt(m[2], 10, 64)
	after, _ := strconv.ParseInt(m[3], 10, 64)
	if m[1] != data || before != fi.Size() || after >= before || m[4] != "2" || m[5] != strconv.Itoa(len(kept)) {
		t.Errorf("compact reported %q; the file had %d bytes and %d objects", out, fi.Size(), len(kept))
	}
	if fi, err := os.Stat(data); err != nil || fi.Size() != after {
		t.Errorf("data file after compaction: %v, %v; want %d bytes", fi, err, after)
	}

	store, err = cache.Open(data, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	objs, err = store.ListObjects(testUser, "personal")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(kept) {
		t.Errorf("%d objects after compaction, want %d", len(objs), len(kept))
	}
	for _, o := range objs {
		if kept[o.Name] != o.ETag {
			t.Errorf("%s: ETag %q after compaction, want %q", o.Name, o.ETag, kept[o.Name])
		}
	}
	if len(objs) > 0 {
		o, err := store.GetObject(testUser, "personal", objs[0].Name)
		if err != nil || o.ETag != kept[o.Name] || len(o.Data) == 0 {
			t.Errorf("GetObject after compaction: %v, %v", o.ETag, err)
		}
	}
}

// TestCompactWhileServing checks that compact refuses, with exit status 1
// and a message saying to stop calgate, while calgate serves, and leaves
// the data file working.
func TestCompactWhileServing(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	srv := startCalgate(t, cfg)
	srv.putNew(t, personalPath+"kept.ics", eventICS("kept", "Kept", time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)))

	code, out, errOut := runBinary(t, "compact", "-config", cfg)
	if code != 1 || out != "" || !strings.Contains(errOut, "stop calgate first: compact rewrites the data file") {
		t.Errorf("compact while serving: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "calgate.db.compact")); !os.IsNotExist(err) {
		t.Errorf("compact left a temporary file: %v", err)
	}
	resp, body := srv.mustDo(t, "GET", personalPath+"kept.ics", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "UID:kept") {
		t.Errorf("GET after the refused compact: %s\n%s", resp.Status, body)
	}
	srv.stop(t)
	code, out, errOut = runBinary(t, "compact", "-config", cfg)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("; %d calendars, %d objects;", 2, 1)) {
		t.Errorf("compact after shutdown: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
