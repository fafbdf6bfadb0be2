package ical

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSteppedRulesMatchIterator expands random DAILY and WEEKLY series
// (intervals, COUNT, UNTIL, a BYDAY of DTSTART's own weekday, exceptions,
// zones with DST gaps and folds, a zone that skipped a whole day, floating
// times and dates) over random windows twice: stepped straight to the
// window, and iterated from DTSTART by the rrule library. The instances
// and the truncation flag must be the same. Rules the stepping does not
// take (other BY parts) are mixed in to check they still iterate.
func TestSteppedRulesMatchIterator(t *testing.T) {
	zones := []string{"", "Z", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "DATE"}
	rng := rand.New(rand.NewPCG(11, 17))
	days := []string{"MO", "TU", "WE", "TH", "FR", "SA", "SU"}
	stepped := 0
	for i := range 1500 {
		zone := zones[rng.IntN(len(zones))]
		// Starts cluster around DST changes and Apia's skipped 30 December 2011.
		anchors := []time.Time{
			time.Date(2024, 3, 31, 2, 30, 0, 0, time.UTC), time.Date(2024, 10, 27, 2, 30, 0, 0, time.UTC),
			time.Date(2024, 3, 10, 2, 30, 0, 0, time.UTC), time.Date(2011, 12, 29, 10, 0, 0, 0, time.UTC),
			time.Date(2025, 4, 6, 1, 45, 0, 0, time.UTC),
		}
		start := anchors[rng.IntN(len(anchors))].AddDate(0, 0, -rng.IntN(40)).Add(time.Duration(rng.IntN(4)) * 15 * time.Minute)
		var dtstart string
		switch zone {
		case "":
			dtstart = "DTSTART:" + start.Format("20060102T150405")
		case "Z":
			dtstart = "DTSTART:" + start.Format("20060102T150405Z")
		case "DATE":
			dtstart = "DTSTART;VALUE=DATE:" + start.Format("20060102")
		default:
			dtstart = "DTSTART;TZID=" + zone + ":" + start.Format("20060102T150405")
		}
		rule := []string{"FREQ=DAILY", "FREQ=WEEKLY"}[rng.IntN(2)]
		if n := rng.IntN(4); n > 0 {
			rule += fmt.Sprintf(";INTERVAL=%d", n)
		}
		switch rng.IntN(3) {
		case 0:
			rule += fmt.Sprintf(";COUNT=%d", 1+rng.IntN(400))
		case 1:
			until := start.AddDate(0, 0, rng.IntN(900))
			if zone == "DATE" {
				rule += ";UNTIL=" + until.Format("20060102")
			} else {
				rule += ";UNTIL=" + until.Format("20060102T150405Z")
			}
		}
		if strings.Contains(rule, "WEEKLY") && rng.IntN(2) == 0 {
			wd := (int(start.Weekday()) + 6) % 7
			if rng.IntN(5) == 0 {
				wd = (wd + 1) % 7 // another day: not stepped
			}
			rule += ";BYDAY=" + days[wd]
		}
		if rng.IntN(8) == 0 {
			rule += ";BYMONTH=1,3,10" // not stepped
		}
		body := "BEGIN:VEVENT\r\nUID:s" + fmt.Sprint(i) + "\r\n" + dtstart + "\r\nDURATION:PT1H\r\nRRULE:" + rule + "\r\n"
		if rng.IntN(3) == 0 && zone != "DATE" {
			body += "EXDATE:" + start.AddDate(0, 0, 7).UTC().Format("20060102T150405Z") + "\r\n"
		}
		body += "END:VEVENT\r\n"
		f := parseComps(t, body)
		from := start.AddDate(0, 0, rng.IntN(1200)-100)
		if rng.IntN(2) == 0 {
			// Right at an instance's edges, where a guess off by one
			// period or by a DST shift would show.
			from = start.AddDate(0, 0, 7*rng.IntN(150)).Add(time.Duration(rng.IntN(5)-2) * 30 * time.Minute)
			if zone != "" && zone != "Z" && zone != "DATE" {
				loc, _ := time.LoadLocation(zone)
				w := start.AddDate(0, 0, 7*rng.IntN(150))
				from = time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, loc).Add(time.Duration(rng.IntN(5)-2) * 30 * time.Minute)
			}
		}
		opts := ExpandOptions{Start: from, End: from.Add(time.Duration(1+rng.IntN(24*60)) * time.Hour)}
		if rng.IntN(10) == 0 {
			opts.Start = time.Time{}
		}
		if rng.IntN(10) == 0 {
			opts.End = time.Time{}
		}
		fast, err1 := f.tz.Expand(f.groups["s"+fmt.Sprint(i)], opts)
		stepping = false
		slow, err2 := f.tz.Expand(f.groups["s"+fmt.Sprint(i)], opts)
		stepping = true
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v, %v", body, err1, err2)
		}
		if len(fast.Instances) != len(slow.Instances) || fast.Truncated != slow.Truncated || !sameInstances(fast.Instances, slow.Instances) {
			t.Fatalf("rule %q from %s in %s, window %v..%v:\nstepped  %d instances (truncated %v) %v\niterated %d instances (truncated %v) %v",
				rule, start, zone, opts.Start, opts.End, len(fast.Instances), fast.Truncated, spans(fast.Instances), len(slow.Instances), slow.Truncated, spans(slow.Instances))
		}
		if r := f.groups["s"+fmt.Sprint(i)][0].Props.Get("RRULE"); r != nil && !strings.Contains(rule, "BYMONTH") {
			stepped++
		}
	}
	if stepped < 500 {
		t.Errorf("only %d stepped rules tried", stepped)
	}
}

func sameInstances(a, b []Instance) bool {
	for i := range a {
		if !a[i].Start.Equal(b[i].Start) || !a[i].End.Equal(b[i].End) || !a[i].RecurrenceID.Equal(b[i].RecurrenceID) || a[i].Date != b[i].Date {
			return false
		}
	}
	return reflect.DeepEqual(len(a), len(b))
}

func spans(in []Instance) []string {
	var out []string
	for i, x := range in {
		if i == 6 {
			out = append(out, "...")
			break
		}
		out = append(out, x.Start.Format(time.RFC3339))
	}
	return out
}
