package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
	"github.com/calgate/calgate/internal/fixtures"
)

// runCLI runs calgate in-process with args and stdin, and returns its exit
// code, stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// importSummary matches import's summary line.
var importSummary = regexp.MustCompile(`(?m)^imported (\d+) objects \((\d+) replaced, (\d+) unchanged\), (\d+) skipped, in \S+$`)

// checkSummary checks import's summary line against the counts wanted.
func checkSummary(t *testing.T, stdout string, stored, replaced, unchanged, skipped int) {
	t.Helper()
	m := importSummary.FindStringSubmatch(stdout)
	want := []string{fmt.Sprint(stored), fmt.Sprint(replaced), fmt.Sprint(unchanged), fmt.Sprint(skipped)}
	if m == nil || !slices.Equal(m[1:], want) {
		t.Errorf("import printed %q, want imported %s objects (%s replaced, %s unchanged), %s skipped", stdout, want[0], want[1], want[2], want[3])
	}
}

// componentsByUID opens the data file and returns, for each UID of
// calendar user/cal, its components (VEVENT, VTODO, ... with their
// sub-components), unfolded, without DTSTAMP and LAST-MODIFIED, sorted:
// what must survive an export and a re-import, whatever the VCALENDAR
// around them.
func componentsByUID(t *testing.T, data, user, cal string) map[string]string {
	t.Helper()
	store, err := cache.Open(data, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	objs, err := store.SelectObjects(user, cal, func(cache.Object) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(objs))
	for _, o := range objs {
		if _, dup := out[o.UID]; dup {
			t.Errorf("%s: UID %q stored twice", data, o.UID)
		}
		out[o.UID] = componentText(o.Data)
	}
	return out
}

// componentText is the normalised text of the components of an object
// (see componentsByUID).
func componentText(data []byte) string {
	var comps []string
	var cur []string
	depth := 0
	for line := range strings.SplitSeq(strings.ReplaceAll(string(ical.Unfold(data)), "\r\n", "\n"), "\n") {
		upper := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(upper, "BEGIN:") && upper != "BEGIN:VCALENDAR":
			if depth == 0 && upper == "BEGIN:VTIMEZONE" {
				depth = -1 // skip time zones: the export shares them among objects
				continue
			}
			if depth >= 0 {
				depth++
			}
		case strings.HasPrefix(upper, "END:") && upper != "END:VCALENDAR":
			if depth == -1 {
				if upper == "END:VTIMEZONE" {
					depth = 0
				}
				continue
			}
			if depth > 0 {
				depth--
				cur = append(cur, line)
				if depth == 0 {
					comps = append(comps, strings.Join(cur, "\n"))
					cur = nil
				}
				continue
			}
		}
		if depth > 0 && !strings.HasPrefix(upper, "DTSTAMP") && !strings.HasPrefix(upper, "LAST-MODIFIED") {
			cur = append(cur, line)
		}
	}
	slices.Sort(comps)
	return strings.Join(comps, "\n--\n")
}

// TestImportExportRoundTrip imports the 4,770-UID Google export into a
// local calendar, imports it again (nothing changes), exports the
// calendar to a file, imports that file into a second data file, and
// checks that both stores hold the same UIDs with the same components.
func TestImportExportRoundTrip(t *testing.T) {
	src := filepath.Join(fixtures.Dir(t), "feeds", "google-huge-issue42.ics")
	dir1, dir2 := t.TempDir(), t.TempDir()
	cfg1, cfg2 := writeCalgateConfig(t, dir1), writeCalgateConfig(t, dir2)

	code, out, errOut := runCLI(t, "", "import", "-config", cfg1, testUser+"/personal", src)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	const uids = 4770
	checkSummary(t, out, uids, 0, 0, 0)
	t.Logf("first import: %s", strings.TrimSpace(out))

	// Flags after the arguments work too.
	code, out, errOut = runCLI(t, "", "import", testUser+"/personal", src, "-config", cfg1)
	if code != 0 {
		t.Fatalf("re-import: exit %d\n%s%s", code, out, errOut)
	}
	checkSummary(t, out, uids, 0, uids, 0)

	exported := filepath.Join(t.TempDir(), "personal.ics")
	code, out, errOut = runCLI(t, "", "export", "-config", cfg1, "-o", exported, testUser+"/personal")
	if code != 0 || out != "" {
		t.Fatalf("export -o: exit %d, stdout %q\n%s", code, out, errOut)
	}
	if _, err := os.Stat(exported + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("export left %s.tmp: %v", exported, err)
	}
	// The same export on stdout.
	code, out, errOut = runCLI(t, "", "export", "-config", cfg1, testUser+"/personal")
	body, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || out != string(body) {
		t.Errorf("export to stdout: exit %d, %d bytes; the -o file has %d\n%s", code, len(out), len(body), errOut)
	}

	// Re-import of the export, from standard input, into another store.
	code, out, errOut = runCLI(t, string(body), "import", "-config", cfg2, testUser+"/personal", "-")
	if code != 0 {
		t.Fatalf("import of the export: exit %d\n%s%s", code, out, errOut)
	}
	checkSummary(t, out, uids, 0, 0, 0)

	one := componentsByUID(t, filepath.Join(dir1, "calgate.db"), testUser, "personal")
	two := componentsByUID(t, filepath.Join(dir2, "calgate.db"), testUser, "personal")
	if len(one) != uids || len(two) != uids {
		t.Fatalf("stores hold %d and %d UIDs, want %d each", len(one), len(two), uids)
	}
	diffs := 0
	for uid, c := range one {
		if c2, ok := two[uid]; !ok {
			t.Errorf("UID %q is missing after export and re-import", uid)
			diffs++
		} else if c != c2 {
			t.Errorf("UID %q differs after export and re-import:\n%s\n---- vs ----\n%s", uid, c, c2)
			diffs++
		}
		if diffs > 5 {
			t.Fatal("too many differences")
		}
	}
}

// brokenICS holds four good events among items that cannot be stored:
// an event without DTSTART, one with an unreadable DTSTART, and a to-do
// (the tasks calendar takes only to-dos, personal takes all).
const brokenICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" +
	"BEGIN:VEVENT\r\nUID:good-1\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240301T090000Z\r\nSUMMARY:one\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:no-start\r\nDTSTAMP:20240101T000000Z\r\nSUMMARY:no start\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:good-2\r\nDTSTAMP:20240101T000000Z\r\nDTSTART;VALUE=DATE:20240302\r\nSUMMARY:two\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:bad-start\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:next tuesday\r\nSUMMARY:bad\r\nEND:VEVENT\r\n" +
	"this line is not iCalendar\r\n" +
	"BEGIN:VEVENT\r\nUID:good-3\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240303T090000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nEND:VEVENT\r\n" +
	"BEGIN:VTODO\r\nUID:todo-1\r\nDTSTAMP:20240101T000000Z\r\nSUMMARY:a task\r\nEND:VTODO\r\n" +
	"BEGIN:VEVENT\r\nUID:good-4\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:20240304T090000Z\r\nEND:VEVENT\r\n" +
	"END:VCALENDAR\r\n"

// TestImportBrokenItems checks that the readable items of a file with
// broken ones are stored, each broken one is reported on a line of its
// own, the counts add up, and a file with nothing to store exits 1.
func TestImportBrokenItems(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	file := filepath.Join(dir, "broken.ics")
	if err := os.WriteFile(file, []byte(brokenICS), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI(t, "", "import", "-config", cfg, testUser+"/personal", file)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	checkSummary(t, out, 5, 0, 0, 2)
	for _, uid := range []string{"no-start", "bad-start"} {
		if !strings.Contains(errOut, `"`+uid+`" dropped`) {
			t.Errorf("stderr does not report %s:\n%s", uid, errOut)
		}
	}
	if !strings.Contains(errOut, "skipped") {
		t.Errorf("stderr does not report the line that is not iCalendar:\n%s", errOut)
	}
	got := componentsByUID(t, filepath.Join(dir, "calgate.db"), testUser, "personal")
	want := []string{"good-1", "good-2", "good-3", "good-4", "todo-1"}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("stored UIDs %v, want %v", keys, want)
	}

	// The tasks calendar takes to-dos only: the events are reported.
	code, out, errOut = runCLI(t, "", "import", "-config", cfg, testUser+"/tasks", file)
	if code != 0 {
		t.Fatalf("tasks: exit %d\n%s%s", code, out, errOut)
	}
	checkSummary(t, out, 1, 0, 0, 6)
	if n := strings.Count(errOut, "does not accept VEVENT"); n != 4 {
		t.Errorf("tasks: %d lines about VEVENTs, want 4:\n%s", n, errOut)
	}

	// Nothing readable: exit 1.
	for name, body := range map[string]string{
		"html":     "<html><body>Not found</body></html>\n",
		"all bad":  "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nSUMMARY:no start\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		"empty":    "",
		"all todo": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20240101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
	} {
		target := testUser + "/personal"
		if name == "all todo" {
			target = testUser + "/tasks"
		}
		code, out, errOut := runCLI(t, body, "import", "-config", cfg, target, "-")
		if code != 1 || errOut == "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and a reason", name, code, out, errOut)
		}
	}
}

// TestImportRefusals checks the messages for a calendar that does not
// exist (it lists those that do), a calendar mirroring a feed, a bad
// target and a data file held by another process.
func TestImportRefusals(t *testing.T) {
	dir := t.TempDir()
	cfg := writeCalgateConfig(t, dir)
	file := filepath.Join(dir, "one.ics")
	if err := os.WriteFile(file, eventICS("one", "One", time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{testUser + "/nope", file}, 1, "no calendar alice/nope (calendars that take imports: alice/personal, alice/tasks)"},
		{[]string{"nope", file}, 2, `"nope" is not USER/CALENDAR`},
		{[]string{testUser + "/personal"}, 2, "missing arguments"},
		{[]string{testUser + "/personal", filepath.Join(dir, "missing.ics")}, 1, "no such file"},
	} {
		code, out, errOut := runCLI(t, "", append([]string{"import", "-config", cfg}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("import %v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}

	store, err := cache.Open(filepath.Join(dir, "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "import", "-config", cfg, testUser+"/personal", file)
	store.Close()
	if code != 1 || !strings.Contains(errOut, "stop calgate first: import needs the data file") {
		t.Errorf("import into a held data file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
