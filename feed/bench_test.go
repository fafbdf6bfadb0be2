package feed

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

const berlin = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n" +
	"TZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n" +
	"BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\n" +
	"RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"

// benchEvent returns an event of about 1 KB: a VTIMEZONE, a folded
// DESCRIPTION, attendees, an alarm; every tenth one is a weekly series.
func benchEvent(member, i int) []byte {
	start := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i%730) * 24 * time.Hour).Add(time.Duration(i%10) * time.Hour)
	var b []byte
	b = append(b, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n"+berlin+"BEGIN:VEVENT\r\n"...)
	b = fmt.Appendf(b, "UID:bench-%d-%06d@example.org\r\nDTSTAMP:20250101T000000Z\r\nSEQUENCE:%d\r\n", member, i, i%3)
	b = fmt.Appendf(b, "DTSTART;TZID=Europe/Berlin:%s\r\nDTEND;TZID=Europe/Berlin:%s\r\n",
		start.Format("20060102T150405"), start.Add(time.Hour).Format("20060102T150405"))
	if i%10 == 0 {
		b = append(b, "RRULE:FREQ=WEEKLY;COUNT=20\r\n"...)
	}
	if i%7 == 0 {
		b = append(b, "TRANSP:TRANSPARENT\r\n"...)
	}
	b = fmt.Appendf(b, "SUMMARY:Meeting %d about the quarterly plan\\, part %d\r\n", i, member)
	b = ical.FoldLine(b, "DESCRIPTION:"+strings.Repeat("Agenda: budget\\, hiring\\, roadmap. ", 8))
	b = append(b, "LOCATION:Room 4.12\\, Building B\r\n"...)
	b = append(b, "ORGANIZER;CN=Alice:mailto:alice@example.org\r\n"...)
	b = append(b, "ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.org\r\n"...)
	b = append(b, "ATTENDEE;CN=Carol;PARTSTAT=NEEDS-ACTION:mailto:carol@example.org\r\n"...)
	b = append(b, "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:Reminder\r\nEND:VALARM\r\n"...)
	return append(b, "END:VEVENT\r\nEND:VCALENDAR\r\n"...)
}

// fillBench stores n events per member in one transaction each.
func fillBench(b *testing.B, s *cache.Store, members []Member, n int) int {
	b.Helper()
	zones := new(ical.Zones)
	size := 0
	for m, mb := range members {
		if _, err := s.CreateCalendar(cache.Calendar{User: mb.User, ID: mb.Cal, Kind: "ics", Source: mb.Cal}); err != nil {
			b.Fatal(err)
		}
		changes := make([]cache.UpstreamChange, 0, n)
		for i := range n {
			data := benchEvent(m, i)
			size += len(data)
			cal, err := ical.Parse(data)
			if err != nil {
				b.Fatal(err)
			}
			info, err := zones.Inspect(cal)
			if err != nil {
				b.Fatal(err)
			}
			changes = append(changes, cache.UpstreamChange{Object: cache.Object{
				Name: fmt.Sprintf("%06d.ics", i), UID: info.UID, Component: info.Component,
				Start: info.Start, End: info.End, Data: data,
			}})
		}
		if _, err := s.ApplyUpstream(mb.User, mb.Cal, changes, true, cache.SourceState{ID: mb.Cal}); err != nil {
			b.Fatal(err)
		}
	}
	return size
}

// BenchmarkRender10k renders a feed of 10,000 events of about 1 KB in
// two members.
func BenchmarkRender10k(b *testing.B) {
	s := openStore(b)
	members := []Member{{User: "u", Cal: "work", Prefix: "[Work] "}, {User: "u", Cal: "home"}}
	stored := fillBench(b, s, members, 5000)
	b.Logf("stored: 10000 objects, %d bytes", stored)
	zones := new(ical.Zones)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"full", Spec{Name: "full", Members: []Member{{User: "u", Cal: "work"}, {User: "u", Cal: "home"}}}},
		{"full-prefix", Spec{Name: "prefix", Members: members}},
		{"busy", Spec{Name: "busy", Members: members, Busy: true}},
		{"window", Spec{Name: "window", Members: members, Past: 30 * 24 * time.Hour, Future: 90 * 24 * time.Hour}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var out []byte
			for b.Loop() {
				var err error
				if out, err = Render(s, zones, tc.spec, at); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(out)))
			b.ReportMetric(float64(len(out)), "out-bytes")
		})
	}
	b.Run("version", func(b *testing.B) {
		for b.Loop() {
			if _, err := Version(s, Spec{Members: members}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRenderer10k is a Renderer over the same 10,000 events: after
// one object of a member was replaced (the store write is not timed),
// and with nothing changed.
func BenchmarkRenderer10k(b *testing.B) {
	s := openStore(b)
	members := []Member{{User: "u", Cal: "work", Prefix: "[Work] "}, {User: "u", Cal: "home"}}
	fillBench(b, s, members, 5000)
	zones := new(ical.Zones)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"full-prefix", Spec{Name: "prefix", Members: members}},
		{"busy", Spec{Name: "busy", Members: members, Busy: true}},
		{"window", Spec{Name: "window", Members: members, Past: 30 * 24 * time.Hour, Future: 90 * 24 * time.Hour}},
	} {
		r := new(Renderer)
		if _, err := r.Render(s, zones, tc.spec, at); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/rebuild", func(b *testing.B) {
			var out []byte
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				data := setVersion(benchEvent(1, i%5000), fmt.Sprint(3+i), "", fmt.Sprint(i))
				putObject(b, s, "u", "home", fmt.Sprintf("%06d.ics", i%5000), data)
				b.StartTimer()
				res, err := r.Render(s, zones, tc.spec, at)
				if err != nil {
					b.Fatal(err)
				}
				out = res.Body
			}
			b.SetBytes(int64(len(out)))
		})
		b.Run(tc.name+"/unchanged", func(b *testing.B) {
			for b.Loop() {
				if _, err := r.Render(s, zones, tc.spec, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
