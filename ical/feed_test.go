package ical

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	goical "github.com/emersion/go-ical"
)

// splitFeedNoPanic calls SplitFeed and fails the test if it panics.
func splitFeedNoPanic(t testing.TB, z *Zones, data []byte) (objs []FeedObject, warns []string, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("SplitFeed panicked: %v", r)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return z.SplitFeed(data)
}

// checkFeedObjects checks what SplitFeed promises of every object: a
// valid resource (Parse and Inspect accept it) with the UID and component
// given, valid UTF-8, CRLF, folded at 75 octets, no METHOD, a name derived
// from the UID, unique UIDs, and Identity = FeedIdentity(Data).
func checkFeedObjects(t *testing.T, z *Zones, objs []FeedObject) {
	t.Helper()
	uids := make(map[string]bool, len(objs))
	for _, o := range objs {
		if uids[o.UID] {
			t.Errorf("UID %q in two objects", o.UID)
		}
		uids[o.UID] = true
		if o.Name != feedName(o.UID) || !regexp.MustCompile(`^[0-9a-f]{32}\.ics$`).MatchString(o.Name) {
			t.Errorf("%s: name %q", o.UID, o.Name)
		}
		if o.Identity != FeedIdentity(o.Data) {
			t.Errorf("%s: Identity is not FeedIdentity(Data)", o.UID)
		}
		if !utf8.Valid(o.Data) {
			t.Errorf("%s: Data is not UTF-8", o.UID)
		}
		if !bytes.HasSuffix(o.Data, []byte("END:VCALENDAR\r\n")) {
			t.Errorf("%s: Data does not end with END:VCALENDAR CRLF", o.UID)
		}
		for _, l := range bytes.SplitAfter(o.Data, []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			if !bytes.HasSuffix(l, []byte("\r\n")) || bytes.Count(l, []byte("\r")) != 1 {
				t.Errorf("%s: line %q does not end with one CRLF", o.UID, l)
			}
			if len(l)-2 > 75 {
				t.Errorf("%s: line of %d octets", o.UID, len(l)-2)
			}
		}
		cal, err := Parse(o.Data)
		if err != nil {
			t.Errorf("%s: Parse: %v", o.UID, err)
			continue
		}
		if cal.Props.Get(goical.PropMethod) != nil {
			t.Errorf("%s: METHOD in a stored object", o.UID)
		}
		if v := cal.Props.Get(goical.PropVersion); v == nil || v.Value != "2.0" {
			t.Errorf("%s: VERSION %v", o.UID, v)
		}
		info, err := z.Inspect(cal)
		if err != nil {
			t.Errorf("%s: Inspect: %v", o.UID, err)
			continue
		}
		if info.UID != o.UID || info.Component != o.Component || !info.Start.Equal(o.Start) || !info.End.Equal(o.End) {
			t.Errorf("%s: Inspect says %s %s %v–%v; object says %s %s %v–%v", o.UID,
				info.UID, info.Component, info.Start, info.End, o.UID, o.Component, o.Start, o.End)
		}
	}
}

// TestSplitFeedFixtures runs every fixture through SplitFeed: no panic,
// and every object it returns keeps SplitFeed's promises.
func TestSplitFeedFixtures(t *testing.T) {
	dir := expectedFixtureDir(t)
	z := new(Zones)
	n := 0
	for _, sub := range []string{"feeds", "encoding", "malformed", "components", "recurrence", "timezones"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ics") {
				return err
			}
			n++
			rel, _ := filepath.Rel(dir, path)
			t.Run(filepath.ToSlash(rel), func(t *testing.T) {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				objs, warns, err := splitFeedNoPanic(t, z, data)
				if err != nil {
					if !errors.Is(err, ErrInvalidData) {
						t.Errorf("SplitFeed: %v, want an error wrapping ErrInvalidData", err)
					}
					return
				}
				if len(warns) > maxFeedWarnings+1 {
					t.Errorf("%d feed warnings, want at most %d", len(warns), maxFeedWarnings+1)
				}
				checkFeedObjects(t, z, objs)
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 100 {
		t.Errorf("only %d fixtures found", n)
	}
}

func TestSplitFeedRejects(t *testing.T) {
	z := new(Zones)
	for name, body := range map[string]string{
		"empty":       "",
		"blank":       "\r\n \r\n",
		"bom only":    "\xef\xbb\xbf",
		"html":        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>\n",
		"bare vevent": "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nEND:VEVENT\r\n",
		"unbalanced":  "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
		"stray end":   "END:VCALENDAR\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			objs, _, err := splitFeedNoPanic(t, z, []byte(body))
			if !errors.Is(err, ErrInvalidData) || objs != nil {
				t.Errorf("SplitFeed: %d objects, %v; want ErrInvalidData", len(objs), err)
			}
		})
	}
}

// TestSplitFeedLenient checks the repairs on small inputs.
func TestSplitFeedLenient(t *testing.T) {
	z := new(Zones)
	const head = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\nMETHOD:PUBLISH\n"
	for _, tc := range []struct {
		name    string
		feed    string
		objects int
		want    []string // lines each object's Data must contain
		not     []string // ... must not contain
		warn    string   // a feed warning must contain this
	}{
		{
			name:    "LF, mixed case, blank lines, PRODID and no METHOD",
			feed:    "begin:Vcalendar\nPRODID:-//x//EN\n\nBEGIN:vevent\nuid:a\nDtStart:20240101T100000Z\nEND:VEVENT\n\nend:VCALENDAR\n",
			objects: 1,
			want:    []string{"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART:20240101T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"},
		},
		{
			name:    "truncated",
			feed:    head + "BEGIN:VEVENT\nUID:a\nDTSTART:20240101T100000Z\nEND:VEVENT\nBEGIN:VEVENT\nUID:b\nDTSTART:2024",
			objects: 1,
			want:    []string{"UID:a\r\n"},
			warn:    "truncated",
		},
		{
			name:    "Windows-1252",
			feed:    head + "BEGIN:VEVENT\nUID:a\nDTSTART:20240101T100000Z\nSUMMARY:\x80 caf\xe9 \x93quoted\x94 and UTF-8 \xc3\xa9\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"SUMMARY:€ café “quoted” and UTF-8 é\r\n"},
			warn:    "Windows-1252",
		},
		{
			name:    "bad lines and parameters",
			feed:    head + "BEGIN:VEVENT\nUID:a\nNO COLON HERE\nBAD NAME:x\nDTSTART;;VALUE=DATE-TIME;X:20240101T100000\nX-CTL:a\x01b\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"DTSTART;VALUE=DATE-TIME:20240101T100000\r\n", "X-CTL:ab\r\n"},
			not:     []string{"NO COLON", "BAD NAME"},
			warn:    "skipped",
		},
		{
			name:    "trailing white space of DTSTAMP and DURATION, kept in SUMMARY",
			feed:    head + "BEGIN:VEVENT\nUID:a \nDTSTAMP:20240101T100000Z \nDTSTART:20240101T100000Z\nDURATION:PT10M \nSUMMARY:x \nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"UID:a\r\n", "DTSTAMP:20240101T100000Z\r\n", "DURATION:PT10M\r\n", "SUMMARY:x \r\n"},
		},
		{
			name: "bad values dropped, event kept",
			feed: head + "BEGIN:VEVENT\nUID:a\nDTSTART:20240101T100000Z\nDTSTART:20240102T100000Z\nDTEND:20240230T100000Z\n" +
				"DURATION:P999999999999999999W\nGEO:;\nEXDATE;VALUE=DATE:\nRDATE:20240105T100000Z,2024xx\nRRULE:FREQ=SOMETIMES\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"DTSTART:20240101T100000Z\r\n", "RDATE:20240105T100000Z\r\n"},
			not:     []string{"20240102", "DTEND", "DURATION", "GEO", "EXDATE", "RRULE", "2024xx"},
		},
		{
			name:    "VALUE=DATE with a DATE-TIME",
			feed:    head + "BEGIN:VEVENT\nUID:a\nDTSTART;VALUE=DATE:20110804T120000\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"DTSTART:20110804T120000\r\n"},
		},
		{
			name:    "GEO with an escaped semicolon, RRULE:RRULE:",
			feed:    head + "BEGIN:VEVENT\nUID:a\nDTSTART:20240101T100000Z\nGEO:12.5\\;-3.25\nRRULE:RRULE:Junk;FREQ=DAILY;COUNT=2\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"GEO:12.5;-3.25\r\n", "RRULE:FREQ=DAILY;COUNT=2\r\n"},
		},
		{
			name:    "impossible DTSTART drops the event, VEVENT without DTSTART too",
			feed:    head + "BEGIN:VEVENT\nUID:a\nDTSTART:20240230T100000Z\nEND:VEVENT\nBEGIN:VEVENT\nUID:b\nEND:VEVENT\nBEGIN:VEVENT\nUID:c\nDTSTART:20240101T100000Z\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 1,
			want:    []string{"UID:c\r\n"},
			warn:    `"a" dropped`,
		},
		{
			name: "master and overrides together, VTIMEZONE attached once, unused one left out",
			feed: head + "BEGIN:VTIMEZONE\nTZID:Custom/Zone\nBEGIN:STANDARD\nDTSTART:19700101T000000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0100\nEND:STANDARD\nEND:VTIMEZONE\n" +
				"BEGIN:VTIMEZONE\nTZID:Unused/Zone\nBEGIN:STANDARD\nDTSTART:19700101T000000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0200\nEND:STANDARD\nEND:VTIMEZONE\n" +
				"BEGIN:VEVENT\nUID:r\nRECURRENCE-ID;TZID=Custom/Zone:20240102T100000\nDTSTART;TZID=Custom/Zone:20240102T120000\nEND:VEVENT\n" +
				"BEGIN:VEVENT\nUID:other\nDTSTART:20240101T100000Z\nEND:VEVENT\n" +
				"BEGIN:VEVENT\nUID:r\nDTSTART;TZID=Custom/Zone:20240101T100000\nRRULE:FREQ=DAILY;COUNT=3\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 2,
		},
		{
			name: "duplicate masters: highest SEQUENCE, then later LAST-MODIFIED",
			feed: head + "BEGIN:VEVENT\nUID:a\nSEQUENCE:2\nDTSTART:20240101T100000Z\nSUMMARY:seq2\nEND:VEVENT\n" +
				"BEGIN:VEVENT\nUID:a\nSEQUENCE:1\nDTSTART:20240101T100000Z\nSUMMARY:seq1\nEND:VEVENT\n" +
				"BEGIN:VEVENT\nUID:b\nLAST-MODIFIED:20240102T000000Z\nDTSTART:20240101T100000Z\nSUMMARY:newer\nEND:VEVENT\n" +
				"BEGIN:VEVENT\nUID:b\nLAST-MODIFIED:20240101T000000Z\nDTSTART:20240101T100000Z\nSUMMARY:older\nEND:VEVENT\nEND:VCALENDAR\n",
			objects: 2,
			not:     []string{"seq1", "older"},
		},
		{
			name: "several VCALENDARs, stray component and text between them",
			feed: head + "BEGIN:VEVENT\nUID:a\nDTSTART:20240101T100000Z\nEND:VEVENT\nEND:VCALENDAR\ngarbage\nBEGIN:VEVENT\nUID:stray\nEND:VEVENT\n" +
				head + "BEGIN:VTODO\nUID:b\nEND:VTODO\nEND:VCALENDAR\n",
			objects: 2,
			not:     []string{"stray", "garbage"},
			warn:    "outside any VCALENDAR",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, warns, err := splitFeedNoPanic(t, z, []byte(tc.feed))
			if err != nil {
				t.Fatalf("SplitFeed: %v", err)
			}
			checkFeedObjects(t, z, objs)
			if len(objs) != tc.objects {
				t.Fatalf("%d objects, want %d (warnings %q)", len(objs), tc.objects, warns)
			}
			for _, o := range objs {
				for _, w := range tc.want {
					if !bytes.Contains(o.Data, []byte(w)) {
						t.Errorf("%s: no %q in\n%s", o.UID, w, o.Data)
					}
				}
				for _, w := range tc.not {
					if bytes.Contains(o.Data, []byte(w)) {
						t.Errorf("%s: %q in\n%s", o.UID, w, o.Data)
					}
				}
				if bytes.Contains(o.Data, []byte("METHOD")) {
					t.Errorf("%s: METHOD copied", o.UID)
				}
			}
			if tc.warn != "" && !strings.Contains(strings.Join(warns, "\n"), tc.warn) {
				t.Errorf("no warning with %q in %q", tc.warn, warns)
			}
		})
	}
}

func TestSplitFeedGrouping(t *testing.T) {
	z := new(Zones)
	feed := "BEGIN:VCALENDAR\r\nPRODID:x\r\n" +
		"BEGIN:VTIMEZONE\r\nTZID:Custom/Zone\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n" +
		"BEGIN:VEVENT\r\nUID:r\r\nRECURRENCE-ID;TZID=Custom/Zone:20240102T100000\r\nDTSTART;TZID=Custom/Zone:20240102T120000\r\nEND:VEVENT\r\n" +
		"BEGIN:VEVENT\r\nUID:r\r\nDTSTART;TZID=Custom/Zone:20240101T100000\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	objs, _, err := z.SplitFeed([]byte(feed))
	if err != nil || len(objs) != 1 {
		t.Fatalf("%d objects, %v", len(objs), err)
	}
	d := string(objs[0].Data)
	if strings.Count(d, "BEGIN:VTIMEZONE") != 1 || strings.Index(d, "BEGIN:VTIMEZONE") > strings.Index(d, "BEGIN:VEVENT") {
		t.Errorf("want one VTIMEZONE before the events:\n%s", d)
	}
	master, override := strings.Index(d, "RRULE"), strings.Index(d, "RECURRENCE-ID")
	if master < 0 || override < 0 || master > override {
		t.Errorf("want the master first, then the override:\n%s", d)
	}
	// 2024-01-01 10:00 at +01:00 is 09:00Z; the last instance ends 2024-01-03 09:00Z.
	if got := objs[0].Start.UTC().Format("2006-01-02T15:04Z"); got != "2024-01-01T09:00Z" {
		t.Errorf("Start %s", got)
	}
}

// TestFeedIdentity checks that DTSTAMP and LAST-MODIFIED do not count.
func TestFeedIdentity(t *testing.T) {
	dir := expectedFixtureDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "feeds", "google-public-holidays.ics"))
	if err != nil {
		t.Fatal(err)
	}
	z := new(Zones)
	before, _, err := z.SplitFeed(data)
	if err != nil {
		t.Fatal(err)
	}
	stamp := regexp.MustCompile(`(?m)^DTSTAMP:\d{8}T\d{6}Z`)
	if !stamp.Match(data) {
		t.Fatal("no DTSTAMP in the feed")
	}
	restamped := stamp.ReplaceAll(data, []byte("DTSTAMP:20991231T235959Z"))
	restamped = bytes.ReplaceAll(restamped, []byte("END:VEVENT\r\n"), []byte("LAST-MODIFIED:20991231T235959Z\r\nEND:VEVENT\r\n"))
	after, _, err := z.SplitFeed(restamped)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(after) || len(before) != 111 {
		t.Fatalf("%d and %d objects, want 111", len(before), len(after))
	}
	for i := range before {
		b, a := before[i], after[i]
		if b.Name != a.Name || b.UID != a.UID {
			t.Fatalf("object %d: %s/%s vs %s/%s", i, b.UID, b.Name, a.UID, a.Name)
		}
		if bytes.Equal(b.Data, a.Data) {
			t.Errorf("%s: Data unchanged; the test should change DTSTAMP", b.UID)
		}
		if b.Identity != a.Identity {
			t.Errorf("%s: Identity changed with DTSTAMP/LAST-MODIFIED only", b.UID)
		}
	}
	// A real change does count.
	changed := bytes.Replace(data, []byte("SUMMARY:"), []byte("SUMMARY:Moved "), 1)
	objs, _, err := z.SplitFeed(changed)
	if err != nil {
		t.Fatal(err)
	}
	diff := 0
	for i := range objs {
		if objs[i].Identity != before[i].Identity {
			diff++
		}
	}
	if diff != 1 {
		t.Errorf("%d identities changed with one SUMMARY, want 1", diff)
	}
}

// TestSplitFeedStableUID checks that UIDs derived from content do not
// depend on DTSTAMP or on the run, and tell identical components apart.
func TestSplitFeedStableUID(t *testing.T) {
	z := new(Zones)
	ev := "BEGIN:VEVENT\r\nDTSTAMP:%s\r\nDTSTART:20240101T100000Z\r\nSUMMARY:same\r\nEND:VEVENT\r\n"
	feed := func(stamp string) []byte {
		return []byte("BEGIN:VCALENDAR\r\n" + fmt.Sprintf(ev, stamp) + fmt.Sprintf(ev, stamp) + "END:VCALENDAR\r\n")
	}
	a, _, err := z.SplitFeed(feed("20240101T000000Z"))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := z.SplitFeed(feed("20250101T000000Z"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || len(b) != 2 {
		t.Fatalf("%d and %d objects, want 2 (identical UID-less events are kept apart)", len(a), len(b))
	}
	for i := range a {
		if !strings.HasPrefix(a[i].UID, "calgate-") || a[i].UID != b[i].UID || a[i].Identity != b[i].Identity {
			t.Errorf("object %d: UIDs %q / %q", i, a[i].UID, b[i].UID)
		}
		if !bytes.Contains(Unfold(a[i].Data), []byte("UID:"+a[i].UID+"\r\n")) {
			t.Errorf("object %d: the UID is not written into Data", i)
		}
	}
	if a[0].UID == a[1].UID {
		t.Error("two objects with one UID")
	}
}

// BenchmarkSplitFeed reads the 1.6 MB Google feed of EXPECTED.md, which
// must split into 4770 objects fast (well under a second).
func BenchmarkSplitFeed(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(expectedFixtureDir(b), "feeds", "google-huge-issue42.ics"))
	if err != nil {
		b.Fatal(err)
	}
	z := new(Zones)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		objs, _, err := z.SplitFeed(data)
		if err != nil || len(objs) != 4770 {
			b.Fatalf("%d objects, %v", len(objs), err)
		}
	}
}

func FuzzSplitFeed(f *testing.F) {
	seeds := fixtureFiles()
	if len(seeds) == 0 {
		seeds = [][]byte{[]byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20240101T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	z := new(Zones)
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _, err := z.SplitFeed(data)
		if err != nil {
			return
		}
		for _, o := range objs {
			cal, err := Parse(o.Data)
			if err != nil {
				t.Fatalf("object %s does not parse: %v\n%q", o.UID, err, o.Data)
			}
			if _, err := z.Inspect(cal); err != nil {
				t.Fatalf("object %s: Inspect: %v", o.UID, err)
			}
		}
	})
}
