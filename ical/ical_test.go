package ical

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUnfold(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"A:b\r\n c\r\n", "A:bc\r\n"},
		{"A:b\n\tc\n", "A:bc\n"},
		{"A:x\xc2\r\n \xa0y\r\n", "A:x\xc2\xa0y\r\n"}, // a UTF-8 sequence split by a fold
		{"A:b\r\n  c\r\n", "A:b c\r\n"},               // only the first space goes
		{"A:b\r\nB:c\r\n", "A:b\r\nB:c\r\n"},
	} {
		if got := string(Unfold([]byte(tc.in))); got != tc.want {
			t.Errorf("Unfold(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"PT1H", time.Hour, false},
		{"P1D", 24 * time.Hour, false},
		{"P1W", 7 * 24 * time.Hour, false},
		{"-PT15M", -15 * time.Minute, false},
		{"P1DT2H3M4S", 26*time.Hour + 3*time.Minute + 4*time.Second, false},
		{"PT0S", 0, false},
		{"P999999999999999999W", 0, true},
		{"PT", 0, true},
		{"1H", 0, true},
		{"P1H", 0, true},
		{"PT1D", 0, true},
		{"P", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("ParseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestInspect(t *testing.T) {
	wrap := func(body string) string {
		return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + body + "END:VCALENDAR\r\n"
	}
	z := new(Zones)
	for _, tc := range []struct {
		name    string
		data    string
		err     error
		uid     string
		start   string
		end     string
		warning bool
	}{
		{name: "event", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nDTEND:20240101T110000Z\r\nEND:VEVENT\r\n"),
			uid: "a", start: "2024-01-01T10:00:00Z", end: "2024-01-01T11:00:00Z"},
		{name: "all-day", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20240101\r\nEND:VEVENT\r\n"),
			uid: "a", start: "2023-12-31T10:00:00Z", end: "2024-01-02T14:00:00Z"}, // floating: widened by the zones in use
		{name: "tzid", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART;TZID=Europe/Berlin:20240101T100000\r\nDURATION:PT2H\r\nEND:VEVENT\r\n"),
			uid: "a", start: "2024-01-01T09:00:00Z", end: "2024-01-01T11:00:00Z"},
		{name: "recurring open end", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nRRULE:FREQ=DAILY\r\nEND:VEVENT\r\n"),
			uid: "a", start: "2024-01-01T10:00:00Z", end: ""},
		{name: "override before master", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nRECURRENCE-ID:20240102T100000Z\r\nDTSTART:20231231T100000Z\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\n"),
			uid: "a", start: "2023-12-31T10:00:00Z", end: "2024-01-03T10:00:00Z"}, // COUNT=3: the last instance ends Jan 3
		{name: "unknown tzid", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART;TZID=Nowhere/Special:20240101T100000\r\nEND:VEVENT\r\n"),
			uid: "a", start: "2023-12-31T20:00:00Z", end: "2024-01-02T00:00:00Z", warning: true},
		{name: "todo without dates", data: wrap("BEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\n"), uid: "t"},
		{name: "no uid", data: wrap("BEGIN:VEVENT\r\nDTSTART:20240101T100000Z\r\nEND:VEVENT\r\n"), err: ErrInvalidObject},
		{name: "two masters", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n"), err: ErrInvalidObject},
		{name: "mixed", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\nBEGIN:VTODO\r\nUID:a\r\nEND:VTODO\r\n"), err: ErrInvalidObject},
		{name: "request", data: strings.Replace(wrap("BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n"), "PRODID:x", "PRODID:x\r\nMETHOD:REQUEST", 1), err: ErrInvalidObject},
		{name: "publish", data: strings.Replace(wrap("BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n"), "PRODID:x", "PRODID:x\r\nMETHOD:PUBLISH", 1), uid: "a"},
		{name: "only timezone", data: wrap("BEGIN:VTIMEZONE\r\nTZID:X\r\nEND:VTIMEZONE\r\n"), err: ErrInvalidObject},
		{name: "bad date", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:2024-01-01\r\nEND:VEVENT\r\n"), err: ErrInvalidData},
		{name: "overflowing duration", data: wrap("BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nDURATION:P999999999999999999W\r\nEND:VEVENT\r\n"), err: ErrInvalidData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cal, err := Parse([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			info, err := z.Inspect(cal)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fmtT := func(t time.Time) string {
				if t.IsZero() {
					return ""
				}
				return t.UTC().Format(time.RFC3339)
			}
			if info.UID != tc.uid || fmtT(info.Start) != tc.start || fmtT(info.End) != tc.end {
				t.Fatalf("got uid %q span %q..%q, want %q %q..%q", info.UID, fmtT(info.Start), fmtT(info.End), tc.uid, tc.start, tc.end)
			}
			if tc.warning != (len(info.Warnings) > 0) {
				t.Fatalf("warnings %v", info.Warnings)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for name, data := range map[string]string{
		"empty":        "",
		"not ical":     "hello world",
		"two":          "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
		"truncated":    "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n",
		"latin1":       "BEGIN:VCALENDAR\r\nX:St\xe4da\r\nEND:VCALENDAR\r\n",
		"nul":          "BEGIN:VCALENDAR\r\nX:a\x00b\r\nEND:VCALENDAR\r\n",
		"param panic":  "BEGIN:VCALENDAR\r\nDTSTART;TZID=\"a:b\"\r\nEND:VCALENDAR\r\n",
		"bare vevent":  "BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n",
		"unbalanced":   "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
		"deep nesting": "BEGIN:VCALENDAR\r\n" + strings.Repeat("BEGIN:X\r\n", 5000) + "END:VCALENDAR\r\n",
	} {
		if _, err := Parse([]byte(data)); err == nil {
			t.Errorf("%s: Parse accepted it", name)
		}
	}
	// A BOM and a fold inside a UTF-8 sequence are fine.
	if _, err := Parse([]byte("\xef\xbb\xbfBEGIN:VCALENDAR\r\nX:a\xc2\r\n \xa0b\r\nEND:VCALENDAR\r\n")); err != nil {
		t.Errorf("BOM and split UTF-8: %v", err)
	}
}

func TestSplitRawAndFold(t *testing.T) {
	data := "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VTIMEZONE\nTZID:Europe/Berlin\nEND:VTIMEZONE\nBEGIN:VEVENT\nUID:a\nSUMMARY:long\n  folded\nEND:VEVENT\nEND:VCALENDAR\n"
	comps := SplitRaw([]byte(data))
	if len(comps) != 2 || comps[0].Name != "VTIMEZONE" || comps[0].TZID != "Europe/Berlin" || comps[1].Name != "VEVENT" {
		t.Fatalf("SplitRaw: %+v", comps)
	}
	if want := "BEGIN:VEVENT\r\nUID:a\r\nSUMMARY:long\r\n  folded\r\nEND:VEVENT\r\n"; string(comps[1].Data) != want {
		t.Fatalf("VEVENT bytes %q", comps[1].Data)
	}
	line := "SUMMARY:" + strings.Repeat("ä", 60)
	folded := string(FoldLine(nil, line))
	for _, l := range strings.Split(strings.TrimSuffix(folded, "\r\n"), "\r\n") {
		if len(l) > 75 {
			t.Fatalf("line of %d octets", len(l))
		}
	}
	if got := string(Unfold([]byte(folded))); got != line+"\r\n" {
		t.Fatalf("fold/unfold round trip: %q", got)
	}
}
