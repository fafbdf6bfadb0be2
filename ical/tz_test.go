package ical

import (
	"errors"
	"github.com/calgate/calgate/internal/fixtures"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // tests must not depend on the system's zoneinfo

	goical "github.com/emersion/go-ical"
)

// tzFixtures is the shared iCalendar corpus.
func tzFixtures(t testing.TB) string { return fixtures.Dir(t) }

func tzParseFixture(t testing.TB, name string) *goical.Calendar {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tzFixtures(t), name))
	if err != nil {
		t.Fatal(err)
	}
	cal, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return cal
}

// tzComponent finds the child of cal whose UID or (trimmed) SUMMARY is key.
func tzComponent(t testing.TB, cal *goical.Calendar, key string) *goical.Component {
	t.Helper()
	for _, c := range cal.Children {
		for _, name := range []string{goical.PropUID, goical.PropSummary} {
			if p := c.Props.Get(name); p != nil && strings.TrimSpace(p.Value) == key {
				return c
			}
		}
	}
	t.Fatalf("no component with UID or SUMMARY %q", key)
	return nil
}

// TestFixtureTimes checks the single time values that EXPECTED.md gives
// for timezones/ (and a few more that follow from the same rules).
func TestFixtureTimes(t *testing.T) {
	for _, tc := range []struct {
		file, key, prop string
		want            string // RFC 3339 in UTC; a floating value has no Z
		warn            bool
	}{
		// EXPECTED.md.
		{"exchange2010-extended-timezone.ics", "Uffe", "DTSTART", "2024-04-26T12:00:00Z", false},
		{"exchange2010-undefined-customized-tz.ics", "Uffe", "DTSTART", "2024-04-26T14:00:00", true},
		{"owa2012-windows-display-tzids.ics", "TEST Syd", "DTSTART", "2020-10-28T02:30:00Z", false},
		{"owa2012-windows-display-tzids.ics", "TEST", "DTSTART", "2020-10-28T17:30:00Z", false},
		{"dst-transition-ambiguity.ics", "0", "DTSTART", "2024-03-02T20:00:00Z", false},
		{"dst-transition-ambiguity.ics", "1", "DTSTART", "2024-08-02T22:00:00Z", false},
		{"dst-transition-ambiguity.ics", "2", "DTSTART", "2024-05-04T22:00:01Z", false},
		{"dst-transition-ambiguity.ics", "3", "DTSTART", "2024-05-04T19:00:01Z", false},
		{"outlook-tz-list-tzid-no-vtimezone.ics", "E689AEB8C02C4E2CADD8C7D3D303CEAD0", "DTSTART", "2024-04-15T17:00:00Z", false},
		{"emclient-vtimezone-year-0001.ics", "vtimezone-year-0001-test@node-ical", "DTSTART", "2024-06-01T08:00:00Z", false},
		{"exchange2010-custom-windows-zones.ics", "Zajęty", "DTSTART", "2024-05-02T09:00:00Z", false},
		{"exchange2010-custom-windows-zones.ics", "Wstępna akceptacja", "DTSTART", "2024-05-21T13:00:00Z", false},
		// Beyond EXPECTED.md.
		{"owa2012-windows-display-tzids.ics", "TEST 3", "DTSTART", "2020-11-02T18:30:00Z", false},
		{"quoted-utc-display-tzid-no-vtimezone.ics", "0000001", "DTSTART", "2015-07-06T16:00:00Z", false},
		{"exchange2010-custom-tz.ics", "Test event", "DTSTART", "2019-04-30T02:00:00Z", false},
		{"cdo-gmt-standard-daylight-tzid.ics", "Sprint 25 Daily Standup", "DTSTART", "2015-07-03T08:00:00Z", false},
		{"ruby-reversed-timezone.ics", "some-unique-uid", "DTSTART", "2023-10-25T23:30:00Z", false},
		{"khal-lots-of-timezones.ics", "123", "DTSTART", "2014-05-09T18:30:00Z", false},
		{"non-ascii-tzid.ics", "", "DTSTART", "2017-05-11T16:30:00Z", false},
		{"zimbra-utc-negative-zero.ics", "And another", "DTSTART", "2012-08-21T21:00:00Z", false},
		{"integer-tzid.ics", "Atelier groupes portail/Nuage", "DTSTART", "2024-01-08T10:00:00Z", false},
		{"invalid-tzoffset.ics", "Some event", "DTSTART", "2012-12-02T07:00:00Z", false},
		{"dst-only-vtimezone.ics", "Sample Event", "DTSTART", "2018-04-03T07:00:00Z", false},
		{"gmt-offset-style-tzid.ics", "Storage Meeting", "DTSTART", "2012-07-26T13:00:00", true},
		{"tzid-without-vtimezone.ics", "An Event", "DTSTART", "2014-04-09T09:30:00", true},
		{"bad-custom-ms-tz.ics", "1173422081SZR322", "DTSTART", "2021-03-25T10:35:00", true},
	} {
		t.Run(tc.file+"/"+tc.key, func(t *testing.T) {
			cal := tzParseFixture(t, filepath.Join("timezones", tc.file))
			var c *goical.Component
			if tc.key == "" {
				c = cal.Children[len(cal.Children)-1]
			} else {
				c = tzComponent(t, cal, tc.key)
			}
			got, warning, err := new(Zones).For(cal.Component).ParseTime(c.Props.Get(tc.prop))
			if err != nil {
				t.Fatal(err)
			}
			if s := tzFormat(got); s != tc.want {
				t.Errorf("%s = %s, want %s", tc.prop, s, tc.want)
			}
			if (warning != "") != tc.warn {
				t.Errorf("warning = %q, want one: %v", warning, tc.warn)
			}
		})
	}
}

func tzFormat(t Time) string {
	if t.Floating {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.UTC().Format(time.RFC3339)
}

// TestFixtureBounds reads every DTSTART and DTEND of every file under
// timezones/: no panic, and every result within a day of its wall clock.
func TestFixtureBounds(t *testing.T) {
	dir := filepath.Join(tzFixtures(t), "timezones")
	files, err := filepath.Glob(filepath.Join(dir, "*.ics"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", dir, err)
	}
	z := new(Zones)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cal, err := Parse(data)
			if err != nil {
				// go-ical refuses the file for reasons that are not about
				// time zones: take its VTIMEZONEs and events one by one.
				t.Logf("Parse: %v; reading components one by one", err)
				cal = goical.NewCalendar()
				name := filepath.Join("timezones", filepath.Base(f))
				cal.Children = append(tzFixtureBlocks(t, name, goical.CompTimezone), tzFixtureBlocks(t, name, goical.CompEvent)...)
			}
			tz := z.For(cal.Component)
			for _, c := range cal.Children {
				if c.Name == goical.CompTimezone {
					if p := c.Props.Get(goical.PropTimezoneID); p != nil {
						tz.Location(p.Value)
						_, _ = LoadVTimezone(p.Value, c) // no panic; errors are fine
					}
					continue
				}
				for _, name := range []string{goical.PropDateTimeStart, goical.PropDateTimeEnd} {
					p := c.Props.Get(name)
					if p == nil {
						continue
					}
					got, _, err := tz.ParseTime(p)
					if err != nil {
						if !errors.Is(err, ErrInvalidData) {
							t.Errorf("%s %q: error %v does not wrap ErrInvalidData", name, p.Value, err)
						}
						continue
					}
					v := strings.TrimSuffix(strings.TrimSuffix(p.Value, "Z"), "z")
					wall, err := time.Parse("20060102T150405", v)
					if err != nil {
						wall, err = time.Parse("20060102", v)
					}
					if err != nil {
						t.Fatalf("%s %q: parsed but unreadable here", name, p.Value)
					}
					if d := got.Sub(wall); d > 26*time.Hour || d < -26*time.Hour {
						t.Errorf("%s %q = %v: %v from its wall clock", name, p.Value, got.Time, d)
					}
				}
			}
		})
	}
}

// TestLoadVTimezoneMatchesIANA evaluates real VTIMEZONEs and compares
// every transition, both ways, with the IANA zone they describe.
func TestLoadVTimezoneMatchesIANA(t *testing.T) {
	for _, tc := range []struct {
		file, tzid, iana string
		from, to         int // years compared
	}{
		{"ruby-reversed-timezone.ics", "NONSTANDARDTZ", "America/Los_Angeles", 1950, 2099},
		{"ns-international-non-dst.ics", "Europe/Brussels", "Europe/Brussels", 1946, 2099},
		{"vtimezone-rdate-posix-vaduz.ics", "posix/Europe/Vaduz", "Europe/Vaduz", 1982, 2099},
		// Before 1996, summer time in Europe ended in September.
		{"emclient-vtimezone-year-0001.ics", "W. Europe Standard Time", "Europe/Berlin", 1997, 2099},
		{"emclient-vtimezone-year-0001.ics", "Europe/Berlin", "Europe/Berlin", 1997, 2099},
		{"exchange2010-ms-timezones.ics", "Eastern Standard Time", "America/New_York", 2008, 2099},
		{"exchange2010-ms-timezones.ics", "Pacific Standard Time", "America/Los_Angeles", 2008, 2099},
		{"exchange2010-ms-timezones.ics", "GMT Standard Time", "Europe/London", 1997, 2099},
		{"exchange2010-custom-windows-zones.ics", "Central European Standard Time", "Europe/Warsaw", 1997, 2099},
		{"exchange-tokyo-same-start-offset.ics", "Tokyo Standard Time", "Asia/Tokyo", 1952, 2099},
		{"exchange2010-custom-tz.ics", "(UTC+07:00) Bangkok, Hanoi, Jakarta", "Asia/Bangkok", 1921, 2099},
		{"khal-lots-of-timezones.ics", "Europe_Amsterdam", "Europe/Amsterdam", 1997, 2099},
		{"tzurl-casablanca-rdates.ics", "Africa/Casablanca", "Africa/Casablanca", 2012, 2018},
	} {
		t.Run(tc.file+"/"+tc.tzid, func(t *testing.T) {
			vtz := tzFixtureVTIMEZONE(t, filepath.Join("timezones", tc.file), tc.tzid)
			got, err := LoadVTimezone(tc.tzid, vtz)
			if err != nil {
				t.Fatal(err)
			}
			want, err := time.LoadLocation(tc.iana)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(tc.from, 1, 1, 0, 0, 0, 0, time.UTC)
			end := time.Date(tc.to+1, 1, 1, 0, 0, 0, 0, time.UTC)
			n := 0
			for _, loc := range []*time.Location{want, got} {
				for at := start; at.Before(end); {
					for _, u := range []time.Time{at.Add(-time.Second), at} {
						_, wo := u.In(want).Zone()
						_, go_ := u.In(got).Zone()
						if wo != go_ && n < 5 {
							t.Errorf("at %v: offset %ds, %s has %ds", u, go_, tc.iana, wo)
							n++
						}
					}
					_, next := at.In(loc).ZoneBounds()
					if next.IsZero() || !next.After(at) {
						break
					}
					at = next
				}
			}
		})
	}
}

// tzFixtureVTIMEZONE returns the VTIMEZONE with TZID tzid of a fixture.
func tzFixtureVTIMEZONE(t testing.TB, name, tzid string) *goical.Component {
	t.Helper()
	for _, c := range tzFixtureBlocks(t, name, goical.CompTimezone) {
		if p := c.Props.Get(goical.PropTimezoneID); p != nil && UnescapeText(p.Value) == tzid {
			return c
		}
	}
	t.Fatalf("%s: no VTIMEZONE %q", name, tzid)
	return nil
}

// tzFixtureBlocks cuts every component called comp out of a fixture and
// parses each alone, so that a broken line elsewhere in the file (which
// go-ical refuses) does not matter. Blocks go-ical refuses are left out.
func tzFixtureBlocks(t testing.TB, name, comp string) []*goical.Component {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tzFixtures(t), name))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(Unfold(data)), "\r\n", "\n")
	var out []*goical.Component
	for {
		i := strings.Index(text, "BEGIN:"+comp+"\n")
		if i < 0 {
			return out
		}
		j := strings.Index(text[i:], "END:"+comp)
		if j < 0 {
			return out
		}
		block := text[i : i+j+len("END:"+comp)]
		text = text[i+j:]
		cal, err := Parse([]byte(strings.Replace(tzVcal, "%s", strings.ReplaceAll(block+"\n", "\n", "\r\n"), 1)))
		if err != nil {
			continue
		}
		out = append(out, cal.Children...)
	}
}

func TestLocationNames(t *testing.T) {
	z := new(Zones)
	tz := z.For(nil)
	for _, tc := range []struct{ tzid, want string }{
		{"Europe/Berlin", "Europe/Berlin"},
		{` "America/New_York" `, "America/New_York"},
		{"Europe/lisbon", "Europe/Lisbon"},
		{"europe/lisbon", "Europe/Lisbon"},
		{"AMERICA/ARGENTINA/BUENOS_AIRES", "America/Argentina/Buenos_Aires"},
		{"UTC", "UTC"},
		{"Etc/GMT", "Etc/GMT"},
		// Vendor prefixes.
		{"/mozilla.org/20050126_1/Europe/Berlin", "Europe/Berlin"},
		{"/mozilla.org/20070129_1/America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"},
		{"/softwarestudio.org/Olson_20011030_5/America/New_York", "America/New_York"},
		{"/citadel.org/20190914_1/Europe/Paris", "Europe/Paris"},
		{"/freeassociation.sourceforge.net/Tzfile/Europe/London", "Europe/London"},
		{"/freeassociation.sourceforge.net/europe/london", "Europe/London"},
		{"tzone://Microsoft/Utc", "UTC"},
		{"tzone://Microsoft/W. Europe Standard Time", "Europe/Berlin"},
		{"posix/Europe/Vaduz", "Europe/Vaduz"},
		// Windows ids (CLDR).
		{"W. Europe Standard Time", "Europe/Berlin"},
		{"Central European Standard Time", "Europe/Warsaw"},
		{"Eastern Standard Time", "America/New_York"},
		{"eastern standard time", "America/New_York"},
		{"W. Europe Daylight Time", "Europe/Berlin"},
		{"Tokyo Standard Time", "Asia/Tokyo"},
		{"AUS Eastern Standard Time", "Australia/Sydney"},
		// Display names.
		{"(UTC-05:00) Eastern Time (US & Canada)", "America/New_York"},
		{"(UTC-05:00) Eastern Time (US and Canada)", "America/New_York"},
		{"(GMT-05:00) Eastern Time (US & Canada)", "America/New_York"},
		{"Eastern Time (US & Canada)", "America/New_York"},
		{"(GMT+10:00) Canberra, Melbourne, Sydney", "Australia/Sydney"},
		{"Canberra, Melbourne, Sydney", "Australia/Sydney"},
		{"Amsterdam, Belgrade, Berlin, Brussels, Budapest, Madrid, Paris, Prague, Stockholm", "Europe/Berlin"},
		{"(UTC+07:00) Bangkok, Hanoi, Jakarta", "Asia/Bangkok"},
		{`(UTC+07:00) Bangkok\, Hanoi\, Jakarta`, "Asia/Bangkok"},
		{"(GMT) Greenwich Mean Time : Dublin, Edinburgh, Lisbon, London", "Europe/London"},
		{"(UTC) Dublin, Edinburgh, Lisbon, London", "Europe/London"},
		{"(UTC-03:00) Brasília", "America/Sao_Paulo"},
		{"(UTC+01:00) Sarajevo, Skopje, Warsaw, Zagreb", "Europe/Warsaw"},
		{"(UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi", "Asia/Calcutta"},
		{"(UTC-06:00) Easter Island", "Pacific/Easter"}, // only in windowszones.go
		// Unknown.
		{"GMT-05.00/-04.00", ""},
		{"Customized Time Zone", ""},
		{"tzone://Microsoft/Custom", ""},
		{"FOO", ""},
		{"", ""},
		{`""`, ""},
		{"Local", ""},
		{"localtime", ""},
		{"../../../etc/localtime", ""},
		{"/etc/localtime", ""},
		{"Sydney", ""},
		{strings.Repeat("Europe/", 100) + "Berlin", ""},
	} {
		for range 2 { // the second time from the cache
			loc, ok := tz.Location(tc.tzid)
			got := ""
			if ok {
				got = loc.String()
			}
			if got != tc.want || ok != (loc != nil) {
				t.Errorf("Location(%q) = %q, %v; want %q", tc.tzid, got, ok, tc.want)
			}
		}
	}
}

// TestWindowsTables checks that every table entry resolves.
func TestWindowsTables(t *testing.T) {
	for id, iana := range windowsZones {
		if loadIANA(iana) == nil {
			t.Errorf("windowsZones[%q] = %q: not loadable", id, iana)
		}
	}
	for _, list := range [][]displayName{outlookDisplayNames[:], windowsDisplayNames[:]} {
		for _, d := range list {
			if _, ok := windowsZones[d.id]; !ok {
				t.Errorf("display name %q: Windows id %q not in windowsZones", d.name, d.id)
			}
			if loadDisplay(d.name) == nil {
				t.Errorf("display name %q does not resolve", d.name)
			}
		}
	}
	if len(outlookDisplayNames) < 30 {
		t.Errorf("only %d hand-kept display names", len(outlookDisplayNames))
	}
}

const tzVcal = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n%sEND:VCALENDAR\r\n"

func tzParseString(t testing.TB, body string) *goical.Calendar {
	t.Helper()
	cal, err := Parse([]byte(strings.Replace(tzVcal, "%s", strings.ReplaceAll(body, "\n", "\r\n"), 1)))
	if err != nil {
		t.Fatal(err)
	}
	return cal
}

// TestOwnVTIMEZONE covers the order between the object's VTIMEZONEs and
// the tables, and VTIMEZONEs that are odd or broken.
func TestOwnVTIMEZONE(t *testing.T) {
	fixed := func(tzid, off string) string {
		return "BEGIN:VTIMEZONE\nTZID:" + tzid + "\nBEGIN:STANDARD\nDTSTART:19700101T000000\nTZOFFSETFROM:" + off +
			"\nTZOFFSETTO:" + off + "\nEND:STANDARD\nEND:VTIMEZONE\n"
	}
	for _, tc := range []struct {
		name, vtz, tzid string
		wall, want      string // wall clock in tzid, UTC RFC 3339 ("" = unknown)
	}{
		{"IANA wins", fixed("Europe/Berlin", "+0500"), "Europe/Berlin", "20240115T120000", "2024-01-15T11:00:00Z"},
		{"Windows id wins", fixed("W. Europe Standard Time", "+0500"), "W. Europe Standard Time", "20240115T120000", "2024-01-15T11:00:00Z"},
		{"VTIMEZONE beats a display name", fixed("(UTC+07:00) Bangkok, Hanoi, Jakarta", "+0800"), "(UTC+07:00) Bangkok, Hanoi, Jakarta", "20240115T120000", "2024-01-15T04:00:00Z"},
		{"VTIMEZONE with escaped TZID beats a display name", fixed(`(UTC+07:00) Bangkok\, Hanoi\, Jakarta`, "+0800"), "(UTC+07:00) Bangkok, Hanoi, Jakarta", "20240115T120000", "2024-01-15T04:00:00Z"},
		{"own zone", fixed("My Zone", "+0530"), "My Zone", "20240115T120000", "2024-01-15T06:30:00Z"},
		{"own zone, other case and quotes", fixed("My Zone", "+0530"), `"my zone"`, "20240115T120000", "2024-01-15T06:30:00Z"},
		{"offset with seconds", fixed("X", "-003020"), "X", "20240115T120000", "2024-01-15T12:30:20Z"},
		{"negative zero", fixed("X", "-0000"), "X", "20240115T120000", "2024-01-15T12:00:00Z"},
		{"bad TZOFFSETTO", fixed("X", "+5328"), "X", "20240115T120000", ""},
		{"empty", "BEGIN:VTIMEZONE\nTZID:X\nX-INVALID-TIMEZONE:TRUE\nEND:VTIMEZONE\n", "X", "20240115T120000", ""},
		{"no DTSTART", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0100\nEND:STANDARD\nEND:VTIMEZONE\n", "X", "20240115T120000", ""},
		{"lenient TZOFFSETFROM", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:18930401T000000\nTZOFFSETFROM:+5328\nTZOFFSETTO:+0100\nEND:STANDARD\nEND:VTIMEZONE\n",
			"X", "20240115T120000", "2024-01-15T11:00:00Z"},
		{"DAYLIGHT only, before and after", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:DAYLIGHT\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nDTSTART:20180325T030000\nEND:DAYLIGHT\nEND:VTIMEZONE\n",
			"X", "20180101T120000", "2018-01-01T11:00:00Z"},
		{"DAYLIGHT only, after", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:DAYLIGHT\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nDTSTART:20180325T030000\nEND:DAYLIGHT\nEND:VTIMEZONE\n",
			"X", "20300101T120000", "2030-01-01T10:00:00Z"},
		{"year 1, far future", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:DAYLIGHT\nDTSTART:00010325T020000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\nEND:DAYLIGHT\n" +
			"BEGIN:STANDARD\nDTSTART:00011028T030000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\nEND:STANDARD\nEND:VTIMEZONE\n",
			"X", "20990701T120000", "2099-07-01T10:00:00Z"},
		{"year 1, year 1", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:DAYLIGHT\nDTSTART:00010325T020000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\nEND:DAYLIGHT\n" +
			"BEGIN:STANDARD\nDTSTART:00011028T030000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\nEND:STANDARD\nEND:VTIMEZONE\n",
			"X", "00010101T120000", "0001-01-01T11:00:00Z"},
		{"SECONDLY rule is ignored", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:20000101T000000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30\nEND:STANDARD\nEND:VTIMEZONE\n",
			"X", "20240115T120000", "2024-01-15T10:00:00Z"},
		{"bad RRULE keeps DTSTART", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:20000101T000000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=SOMETIMES\nEND:STANDARD\nEND:VTIMEZONE\n",
			"X", "20240115T120000", "2024-01-15T10:00:00Z"},
		{"huge COUNT", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nDTSTART:20000101T000000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=MONTHLY;COUNT=999999999\nEND:STANDARD\n" +
			"BEGIN:DAYLIGHT\nDTSTART:20000115T000000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0300\nRRULE:FREQ=MONTHLY;COUNT=999999999\nEND:DAYLIGHT\nEND:VTIMEZONE\n",
			"X", "20240110T120000", "2024-01-10T10:00:00Z"},
		{"two TZIDs", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nTZOFFSETFROM:+0000\nTZOFFSETTO:+0000\nDTSTART:20240101T000000\nEND:STANDARD\nTZID:Y\n" +
			"BEGIN:STANDARD\nTZOFFSETFROM:-0700\nTZOFFSETTO:-0800\nDTSTART:20241103T090000\nEND:STANDARD\nEND:VTIMEZONE\n",
			"X", "20240601T120000", "2024-06-01T12:00:00Z"},
		{"UTC DTSTART and RDATE PERIOD", "BEGIN:VTIMEZONE\nTZID:X\nBEGIN:STANDARD\nTZOFFSETFROM:-0400\nTZOFFSETTO:-0500\nDTSTART:19700101T020000Z\nRDATE;VALUE=PERIOD:19800101T020000/PT1H\nEND:STANDARD\n" +
			"BEGIN:DAYLIGHT\nTZOFFSETFROM:-0500\nTZOFFSETTO:-0400\nDTSTART:19750101T020000\nEND:DAYLIGHT\nEND:VTIMEZONE\n",
			"X", "19770101T120000", "1977-01-01T16:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cal := tzParseString(t, tc.vtz+"BEGIN:VEVENT\nUID:u\nDTSTAMP:20240101T000000Z\nDTSTART;TZID=\""+strings.Trim(tc.tzid, `"`)+"\":"+tc.wall+"\nEND:VEVENT\n")
			tz := new(Zones).For(cal.Component)
			for range 2 {
				got, warning, err := tz.ParseTime(tzComponent(t, cal, "u").Props.Get(goical.PropDateTimeStart))
				if err != nil {
					t.Fatal(err)
				}
				if tc.want == "" {
					if !got.Floating || warning == "" {
						t.Errorf("got %v (floating %v), warning %q; want floating with a warning", got.Time, got.Floating, warning)
					}
					continue
				}
				if s := tzFormat(got); s != tc.want {
					t.Errorf("got %s, want %s", s, tc.want)
				}
			}
		})
	}
}

func TestLoadVTimezoneErrors(t *testing.T) {
	for _, c := range []*goical.Component{
		nil,
		goical.NewComponent(goical.CompEvent),
		goical.NewComponent(goical.CompTimezone),
	} {
		if _, err := LoadVTimezone("X", c); !errors.Is(err, ErrInvalidData) {
			t.Errorf("LoadVTimezone(%v) error %v, want ErrInvalidData", c, err)
		}
	}
}

func TestWallTime(t *testing.T) {
	load := func(name string) *time.Location {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	cal := tzParseFixture(t, filepath.Join("timezones", "dst-transition-ambiguity.ics"))
	my, ok := new(Zones).For(cal.Component).Location("MyTimezone")
	if !ok {
		t.Fatal("MyTimezone does not resolve")
	}
	ny, berlin, lh, apia := load("America/New_York"), load("Europe/Berlin"), load("Australia/Lord_Howe"), load("Pacific/Apia")
	for _, tc := range []struct {
		name  string
		loc   *time.Location
		wall  string // YYYYMMDDTHHMMSS
		want  string // UTC
		shown string // wall clock of the result in loc, if it differs
	}{
		{"NY normal", ny, "20240115T120000", "2024-01-15T17:00:00Z", ""},
		{"NY gap", ny, "20240310T023000", "2024-03-10T07:30:00Z", "03:30 EDT"},
		{"NY gap start", ny, "20240310T020000", "2024-03-10T07:00:00Z", "03:00 EDT"},
		{"NY after gap", ny, "20240310T030000", "2024-03-10T07:00:00Z", ""},
		{"NY overlap", ny, "20241103T013000", "2024-11-03T05:30:00Z", "01:30 EDT"},
		{"NY overlap end", ny, "20241103T020000", "2024-11-03T07:00:00Z", "02:00 EST"},
		{"NY before overlap", ny, "20241103T005959", "2024-11-03T04:59:59Z", ""},
		{"Berlin gap", berlin, "20240331T023000", "2024-03-31T01:30:00Z", "03:30 CEST"},
		{"Berlin overlap", berlin, "20241027T023000", "2024-10-27T00:30:00Z", "02:30 CEST"},
		{"Lord Howe half-hour gap", lh, "20241006T021500", "2024-10-05T15:45:00Z", "02:45 +11"},
		{"Lord Howe half-hour overlap", lh, "20240407T014500", "2024-04-06T14:45:00Z", "01:45 +11"},
		{"Apia skipped day", apia, "20111230T120000", "2011-12-30T22:00:00Z", "12:00 +14"},
		{"custom zone gap", my, "20240101T010000", "2023-12-31T15:00:00Z", "03:00 winter"},
		{"custom zone overlap", my, "20240505T070001", "2024-05-04T19:00:01Z", "07:00 winter"},
		{"custom zone after overlap", my, "20240505T080001", "2024-05-04T22:00:01Z", "08:00 summer"},
		{"custom zone overlap start", my, "20240505T060000", "2024-05-04T18:00:00Z", "06:00 winter"},
		{"UTC", time.UTC, "20240310T023000", "2024-03-10T02:30:00Z", ""},
	} {
		w, err := time.Parse("20060102T150405", tc.wall)
		if err != nil {
			t.Fatal(err)
		}
		got := WallTime(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), tc.loc)
		if s := got.UTC().Format(time.RFC3339); s != tc.want {
			t.Errorf("%s: WallTime(%s) = %s, want %s", tc.name, tc.wall, s, tc.want)
		}
		if got.Location() != tc.loc {
			t.Errorf("%s: result in %v, want %v", tc.name, got.Location(), tc.loc)
		}
		if tc.shown != "" {
			if s := got.Format("15:04 MST"); s != tc.shown {
				t.Errorf("%s: shown as %s, want %s", tc.name, s, tc.shown)
			}
		} else if s := got.Format("20060102T150405"); s != tc.wall {
			t.Errorf("%s: shown as %s, want %s", tc.name, s, tc.wall)
		}
	}
}

// TestZonesConcurrent shares one Zones (and one TZ) between goroutines;
// run with -race.
func TestZonesConcurrent(t *testing.T) {
	cal := tzParseFixture(t, filepath.Join("timezones", "exchange2010-custom-windows-zones.ics"))
	z := new(Zones)
	shared := z.For(cal.Component)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tz := shared
			if i%2 == 0 {
				tz = z.For(cal.Component)
			}
			for _, id := range []string{"Customized Time Zone", "Central European Standard Time", "Europe/Paris", "nope"} {
				loc, ok := tz.Location(id)
				if ok != (id != "nope") || ok && loc == nil {
					t.Errorf("Location(%q) = %v, %v", id, loc, ok)
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkLocationVTIMEZONE(b *testing.B) {
	cal := tzParseFixture(b, filepath.Join("timezones", "exchange2010-custom-windows-zones.ics"))
	z := new(Zones)
	b.Run("sameTZ", func(b *testing.B) {
		tz := z.For(cal.Component)
		for b.Loop() {
			if _, ok := tz.Location("Customized Time Zone"); !ok {
				b.Fatal("unknown")
			}
		}
	})
	b.Run("newTZ", func(b *testing.B) { // an object seen again: hash of the VTIMEZONE
		for b.Loop() {
			if _, ok := z.For(cal.Component).Location("Customized Time Zone"); !ok {
				b.Fatal("unknown")
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		var vtz *goical.Component
		for _, c := range cal.Children {
			if p := c.Props.Get(goical.PropTimezoneID); p != nil && p.Value == "Customized Time Zone" {
				vtz = c
			}
		}
		for b.Loop() {
			if _, err := LoadVTimezone("Customized Time Zone", vtz); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParseTimeIANA(b *testing.B) {
	tz := new(Zones).For(nil)
	prop := goical.NewProp(goical.PropDateTimeStart)
	prop.Value = "20240310T023000"
	prop.Params.Set(goical.ParamTimezoneID, "America/New_York")
	for b.Loop() {
		if _, _, err := tz.ParseTime(prop); err != nil {
			b.Fatal(err)
		}
	}
}
