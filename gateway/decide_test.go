package gateway

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// TestDecideAgreesWithParse checks the header-only answer of a simple
// time-range filter against the full parse-and-match path, for every
// object of the real fixture files and for hand-made edge cases (zero
// length, DURATION, DTEND before DTSTART, dates, named zones), over ranges
// placed on and around each object's own edges. Only Exact objects may be
// decided with a time-range, and then the two paths must agree.
func TestDecideAgreesWithParse(t *testing.T) {
	e := newEnv(t)
	z := new(ical.Zones)
	var objs []ical.FeedObject
	add := func(src string, data []byte) {
		got, _, err := z.SplitFeed(data)
		if err != nil {
			t.Logf("%s: %v", src, err)
			return
		}
		if len(got) > 60 { // big feeds: an even sample keeps the test quick
			step := len(got) / 60
			for i := 0; i < len(got); i += step {
				objs = append(objs, got[i])
			}
			return
		}
		objs = append(objs, got...)
	}
	root := fixturesDir(t)
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ics") || strings.Contains(path, "malformed") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		add(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	edge := func(uid, props string) []byte {
		return []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
			"\r\nDTSTAMP:20260101T000000Z\r\n" + props + "END:VEVENT\r\nEND:VCALENDAR\r\n")
	}
	for i, props := range []string{
		"DTSTART:20260301T100000Z\r\nDTEND:20260301T110000Z\r\n",
		"DTSTART:20260301T100000Z\r\n",                                            // instant
		"DTSTART:20260301T100000Z\r\nDTEND:20260301T100000Z\r\n",                  // zero length
		"DTSTART:20260301T100000Z\r\nDTEND:20260301T090000Z\r\n",                  // DTEND before DTSTART
		"DTSTART:20260301T100000Z\r\nDURATION:PT90M\r\n",                          // duration
		"DTSTART:20260301T100000Z\r\nDURATION:PT0S\r\n",                           // zero duration
		"DTSTART:20260301T100000Z\r\nDURATION:-PT1H\r\n",                          // negative duration
		"DTSTART:20260301T100000Z\r\nDTEND:20260301T120000Z\r\nDURATION:PT1H\r\n", // both
		"DTSTART;VALUE=DATE:20260301\r\n",                                         // all-day, floating
		"DTSTART;VALUE=DATE:20260301\r\nDTEND;VALUE=DATE:20260303\r\n",
		"DTSTART:20260301T100000\r\nDTEND:20260301T110000\r\n",                                       // floating
		"DTSTART;TZID=Europe/Berlin:20260329T013000\r\nDTEND;TZID=Europe/Berlin:20260329T033000\r\n", // across the DST gap
		"DTSTART;TZID=America/New_York:20261101T013000\r\nDTEND;TZID=America/New_York:20261101T013000\r\n",
		"DTSTART;TZID=Nowhere/Unknown:20260301T100000\r\nDTEND;TZID=Nowhere/Unknown:20260301T110000\r\n",
		"DTSTART:20260301T100000Z\r\nDTEND:20260301T110000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\n",
		"RECURRENCE-ID:20260302T100000Z\r\nDTSTART:20260302T120000Z\r\nDTEND:20260302T130000Z\r\n",
	} {
		add(fmt.Sprint("edge ", i), edge(fmt.Sprintf("edge-%d@calgate.test", i), props))
	}
	if files < 20 || len(objs) < 400 {
		t.Fatalf("only %d files, %d objects found under %s", files, len(objs), root)
	}

	decided, exact, checked := 0, 0, 0
	for _, fo := range objs {
		o := cache.Object{Name: fo.Name, UID: fo.UID, Component: fo.Component, Start: fo.Start, End: fo.End, Exact: fo.Exact, Data: fo.Data}
		if o.Exact {
			exact++
		}
		var ranges [][2]time.Time
		for _, at := range []time.Time{o.Start, o.End} {
			if at.IsZero() {
				continue
			}
			for _, d := range []time.Duration{-time.Hour, -time.Second, 0, time.Second} {
				ranges = append(ranges, [2]time.Time{at.Add(d), at.Add(d + time.Second)}, [2]time.Time{at.Add(d), at.Add(d + 2*time.Hour)},
					[2]time.Time{at.Add(d), {}}, [2]time.Time{{}, at.Add(d)})
			}
		}
		if !o.Start.IsZero() && o.End.After(o.Start) {
			ranges = append(ranges, [2]time.Time{o.Start, o.End})
		}
		for _, comp := range []string{o.Component, "VEVENT", "VTODO"} {
			for _, r := range ranges {
				q := compileTestFilter(t, comp, r[0], r[1])
				got, ok := q.decide(&o)
				if q.simple == nil && ok {
					t.Fatalf("%s: a filter on %s decided from the header", o.UID, comp)
				}
				if !ok {
					continue
				}
				if comp == o.Component && !o.Exact {
					t.Fatalf("%s (%s): decided without being Exact", o.UID, comp)
				}
				decided++
				slow := *q
				slow.simple = nil
				want, _, err := e.h.matchObject(&slow, &o)
				if err != nil {
					t.Fatalf("%s: %v", o.UID, err)
				}
				checked++
				if got != want {
					t.Errorf("%s, %s %v..%v: decided %v, parsing says %v\n%s", o.UID, comp, r[0], r[1], got, want, o.Data)
				}
			}
		}
	}
	t.Logf("%d objects from %d files, %d exact; %d filters decided from headers, all agreeing with parsing", len(objs), files, exact, checked)
	if exact*4 < len(objs) || decided == 0 {
		t.Errorf("only %d of %d objects exact, %d decided", exact, len(objs), decided)
	}
}

// compileTestFilter is comp-filter VCALENDAR > comp-filter comp with a
// time-range from start to end (zero: absent).
func compileTestFilter(t *testing.T, comp string, start, end time.Time) *compiledFilter {
	t.Helper()
	tr := &timeRangeEl{}
	if !start.IsZero() {
		tr.Start = start.UTC().Format("20060102T150405Z")
	}
	if !end.IsZero() {
		tr.End = end.UTC().Format("20060102T150405Z")
	}
	q, err := compileFilter(&filter{Comp: &compFilter{Name: "VCALENDAR", Comps: []compFilter{{Name: comp, TimeRange: tr}}}})
	if err != nil {
		t.Fatal(err)
	}
	switch comp {
	case "VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY":
		if q.simple == nil {
			t.Fatalf("a one comp-filter time-range query on %s is not simple", comp)
		}
	}
	return q
}
