package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calgate/calgate/cache"
)

// BenchmarkScrape is one /metrics scrape over a store of 10,000 objects
// in 20 calendars with 20 sources: the per-calendar and per-source gauges
// are read from the store at scrape time.
func BenchmarkScrape(b *testing.B) {
	s, err := cache.Open(filepath.Join(b.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for c := range 20 {
		id := fmt.Sprintf("cal%02d", c)
		if _, err := s.CreateCalendar(cache.Calendar{User: "alice", ID: id, Kind: "caldav", Components: []string{"VEVENT"}}); err != nil {
			b.Fatal(err)
		}
		changes := make([]cache.UpstreamChange, 0, 500)
		for i := range 500 {
			uid := fmt.Sprintf("%s-%d", id, i)
			changes = append(changes, cache.UpstreamChange{Object: cache.Object{Name: uid + ".ics", UID: uid, Component: "VEVENT", Data: eventData(uid)}})
		}
		if _, err := s.ApplyUpstream("alice", id, changes, true, cache.SourceState{ID: "alice/" + id}); err != nil {
			b.Fatal(err)
		}
	}
	m := New(Options{Store: s})
	h := m.Handler()
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != 200 || !strings.Contains(string(body), `calgate_calendar_items{calendar="cal19",kind="caldav",user="alice"} 500`) {
			b.Fatalf("scrape: %d\n%.2000s", rec.Code, body)
		}
		size = len(body)
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
