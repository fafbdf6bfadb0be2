package feed

import (
	"bytes"
	"errors"
	"github.com/calgate/calgate/internal/fixtures"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
	goical "github.com/emersion/go-ical"
)

// ci reports whether the tests run in CI, where missing tools and
// fixtures are failures rather than skips.
func ci() bool { return os.Getenv("CI") == "true" }

// need skips the test, or fails it in CI, for a missing prerequisite.
func need(t testing.TB, format string, args ...any) {
	t.Helper()
	if ci() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// fixtureDir returns the shared fixture directory shared/fixtures/ics/sub.
func fixtureDir(t testing.TB, sub string) string {
	return filepath.Join(fixtures.Dir(t), sub)
}

// openStore opens a store in t.TempDir().
func openStore(t testing.TB) *cache.Store {
	t.Helper()
	s, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustCalendar(t testing.TB, s *cache.Store, user, id string) {
	t.Helper()
	if _, err := s.CreateCalendar(cache.Calendar{User: user, ID: id, DisplayName: id}); err != nil {
		t.Fatal(err)
	}
}

// splitFixture reads one fixture file and cuts it into objects.
func splitFixture(t testing.TB, dir, file string) []ical.FeedObject {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	objs, _, err := new(ical.Zones).SplitFeed(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return objs
}

// putObject stores data in user/cal, indexing it as the gateway would.
func putObject(t testing.TB, s *cache.Store, user, cal, name string, data []byte) {
	t.Helper()
	c, err := ical.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	info, err := new(ical.Zones).Inspect(c)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	obj := cache.Object{Name: name, UID: info.UID, Component: info.Component, Start: info.Start, End: info.End, Data: data}
	if _, _, err := s.PutObject(user, cal, obj, cache.PutConditions{}); err != nil {
		t.Fatalf("put %s/%s/%s: %v", user, cal, name, err)
	}
}

// decodeOne decodes data with go-ical as exactly one VCALENDAR.
func decodeOne(t testing.TB, data []byte) *goical.Calendar {
	t.Helper()
	dec := goical.NewDecoder(bytes.NewReader(data))
	cal, err := dec.Decode()
	if err != nil {
		t.Fatalf("go-ical: %v", err)
	}
	if _, err := dec.Decode(); !errors.Is(err, io.EOF) {
		t.Fatalf("go-ical: more than one VCALENDAR or trailing data: %v", err)
	}
	return cal
}

// pythonParse parses data with Debian's python3-icalendar.
func pythonParse(t testing.TB, data []byte) {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import icalendar").Run(); err != nil {
		need(t, "python3-icalendar not available: %v", err)
		return
	}
	cmd := exec.Command(py, "-c", `import icalendar,sys
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
n = sum(1 for c in cal.walk() if c.name in ("VEVENT", "VTODO", "VJOURNAL"))
print(n)`)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3-icalendar refuses the feed: %v\n%s", err, out)
	}
}

// checkLines checks CRLF line ends, lines of at most 75 octets and valid
// UTF-8 on every physical line.
func checkLines(t testing.TB, data []byte) {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Fatal("output does not end with CRLF")
	}
	lines := bytes.Split(data[:len(data)-2], []byte("\r\n"))
	for i, l := range lines {
		switch {
		case len(l) > 75:
			t.Errorf("line %d has %d octets: %q", i+1, len(l), l)
		case bytes.ContainsAny(l, "\r\n"):
			t.Errorf("line %d has a bare CR or LF: %q", i+1, l)
		case !utf8.Valid(l):
			t.Errorf("line %d is not valid UTF-8 by itself: %q", i+1, l)
		case len(l) == 0:
			t.Errorf("line %d is empty", i+1)
		}
	}
}

// walk calls fn for every component under c, depth first.
func walk(c *goical.Component, fn func(*goical.Component)) {
	for _, ch := range c.Children {
		fn(ch)
		walk(ch, fn)
	}
}

// byUID groups the calendar components of cal (not VTIMEZONEs) by UID.
func byUID(cal *goical.Calendar) map[string][]*goical.Component {
	out := make(map[string][]*goical.Component)
	for _, c := range cal.Children {
		if c.Name == goical.CompTimezone {
			continue
		}
		uid := ""
		if p := c.Props.Get(goical.PropUID); p != nil {
			uid = p.Value
		}
		out[uid] = append(out[uid], c)
	}
	return out
}

// setVersion rewrites the SEQUENCE and LAST-MODIFIED of every top-level
// component of an object (not VTIMEZONEs) and marks it with X-TEST-COPY.
func setVersion(data []byte, seq, lastModified, marker string) []byte {
	var out []byte
	depth := 0
	comp := ""
	for _, l := range strings.Split(strings.TrimSuffix(string(ical.Unfold(data)), "\r\n"), "\r\n") {
		name, value, _ := strings.Cut(l, ":")
		switch {
		case name == "BEGIN":
			depth++
			if depth == 2 {
				comp = value
			}
		case name == "END":
			depth--
		case depth == 2 && comp != "VTIMEZONE" && (name == "SEQUENCE" || name == "LAST-MODIFIED" || name == "X-TEST-COPY"):
			continue
		}
		out = append(out, l+"\r\n"...)
		if name == "BEGIN" && depth == 2 && comp != "VTIMEZONE" {
			out = append(out, "SEQUENCE:"+seq+"\r\n"...)
			if lastModified != "" {
				out = append(out, "LAST-MODIFIED:"+lastModified+"\r\n"...)
			}
			out = append(out, "X-TEST-COPY:"+marker+"\r\n"...)
		}
	}
	return out
}
