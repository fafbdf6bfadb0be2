package ical

import (
	"strings"
	"testing"
)

const pruneSample = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTIMEZONE\r\nTZID:Z\r\nEND:VTIMEZONE\r\n" +
	"BEGIN:VEVENT\r\nUID:a\r\nSUMMARY:long\r\n  folded\r\nDESCRIPTION:secret\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nEND:VALARM\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:a\r\nRECURRENCE-ID:20240101T000000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

func TestPrune(t *testing.T) {
	spec := &PruneSpec{Name: "VCALENDAR", Props: map[string]bool{"VERSION": true}, Comps: map[string]*PruneSpec{
		"VEVENT": {Name: "VEVENT", Props: map[string]bool{"UID": true, "SUMMARY": true}},
	}}
	got := string(Prune([]byte(pruneSample), spec))
	want := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:long\r\n  folded\r\nEND:VEVENT\r\n" +
		"BEGIN:VEVENT\r\nUID:a\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	if got != want {
		t.Fatalf("Prune:\n%q\nwant\n%q", got, want)
	}
	all := &PruneSpec{Name: "VCALENDAR", AllProp: true, AllComp: true}
	if got := string(Prune([]byte(pruneSample), all)); got != pruneSample {
		t.Fatalf("allprop/allcomp changed the data:\n%q", got)
	}
	if got := string(Prune([]byte(pruneSample), nil)); got != pruneSample {
		t.Fatal("nil spec changed the data")
	}
}

func TestFilterComponents(t *testing.T) {
	got := string(FilterComponents([]byte(pruneSample), func(i int, name string) bool { return i != 2 }))
	if strings.Contains(got, "RECURRENCE-ID") || !strings.Contains(got, "TZID:Z") || !strings.Contains(got, "BEGIN:VALARM") || !strings.HasSuffix(got, "END:VCALENDAR\r\n") {
		t.Fatalf("FilterComponents:\n%s", got)
	}
}
