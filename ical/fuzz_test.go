package ical

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goical "github.com/emersion/go-ical"
)

// fixtureFiles returns the .ics fixtures, or nil when they are missing.
func fixtureFiles() [][]byte {
	dir, ok := findFixtures()
	if !ok {
		return nil
	}
	var out [][]byte
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ics") {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil && len(data) < 256<<10 {
			out = append(out, data)
		}
		return nil
	})
	return out
}

func FuzzParse(f *testing.F) {
	seeds := fixtureFiles()
	if len(seeds) == 0 {
		seeds = [][]byte{
			[]byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"),
			[]byte("BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:t\r\nDUE;VALUE=DATE:20240101\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"),
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	z := new(Zones)
	f.Fuzz(func(t *testing.T, data []byte) {
		cal, err := Parse(data)
		if err != nil {
			return
		}
		_, _ = z.Inspect(cal)
	})
}

func FuzzExpand(f *testing.F) {
	type seed struct{ dtstart, rrule, exdate string }
	seeds := []seed{
		{"20240101T100000Z", "FREQ=DAILY;COUNT=10", "20240103T100000Z"},
		{"TZID=Europe/Berlin:20240331T023000", "FREQ=HOURLY;INTERVAL=2;BYHOUR=1", ""},
		{"VALUE=DATE:20240229", "FREQ=YEARLY;BYMONTHDAY=-1", "VALUE=DATE:20250228"},
		{"20240101T000000", "FREQ=SECONDLY;BYSETPOS=-1", ","},
	}
	// Rules and dates from the fixtures.
	for _, data := range fixtureFiles() {
		for _, line := range strings.Split(string(Unfold(data)), "\n") {
			line = strings.TrimRight(line, "\r")
			if v, ok := strings.CutPrefix(line, "RRULE:"); ok && len(seeds) < 400 {
				seeds = append(seeds, seed{"20240101T100000Z", v, ""})
			}
		}
	}
	for _, s := range seeds {
		f.Add(s.dtstart, s.rrule, s.exdate)
	}
	z := new(Zones)
	f.Fuzz(func(t *testing.T, dtstart, rule, exdate string) {
		clean := func(s string) string { return strings.NewReplacer("\r", "", "\n", "").Replace(s) }
		prefix := func(s string) string {
			if strings.Contains(s, ":") {
				return ";" + clean(s)
			}
			return ":" + clean(s)
		}
		body := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:f\r\nDTSTART" + prefix(dtstart) +
			"\r\nRRULE:" + clean(rule) + "\r\nEXDATE" + prefix(exdate) + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
		cal, err := Parse([]byte(body))
		if err != nil || len(cal.Children) == 0 {
			return
		}
		tz := z.For(cal.Component)
		opts := ExpandOptions{MaxInstances: 50, MaxSteps: 5000, Timeout: 200 * time.Millisecond}
		t0 := time.Now()
		exp, err := tz.Expand([]*goical.Component{cal.Children[0]}, opts)
		if d := time.Since(t0); d > 1500*time.Millisecond {
			t.Fatalf("Expand took %v", d)
		}
		if err == nil && len(exp.Instances) > opts.MaxInstances {
			t.Fatalf("%d instances > %d", len(exp.Instances), opts.MaxInstances)
		}
		t1 := time.Now()
		_, _ = tz.MatchTimeRange(cal.Children[0], time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC))
		if d := time.Since(t1); d > 1500*time.Millisecond {
			t.Fatalf("MatchTimeRange took %v", d)
		}
		t2 := time.Now()
		_, _ = z.Inspect(cal)
		if d := time.Since(t2); d > 1500*time.Millisecond {
			t.Fatalf("Inspect took %v", d)
		}
	})
}
