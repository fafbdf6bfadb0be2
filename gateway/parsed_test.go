package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestSharedParsesUnderConcurrentQueries runs expand and time-range
// queries from many goroutines over recurring objects whose parses (and
// recurrence rules) are shared through the caches: every answer must be
// the one a lone query gets, and the race detector must find nothing.
func TestSharedParsesUnderConcurrentQueries(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		body := mixedEvent(80 + i%20) // the recurring kinds of the benchmark calendar
		body = strings.ReplaceAll(body, fmt.Sprintf("UID:mixed-%d@", 80+i%20), fmt.Sprintf("UID:shared-%d@", i))
		wantStatus(t, e.do("alice", "PUT", fmt.Sprintf("/dav/calendars/alice/personal/s%d.ics", i), body, ct, icsType), http.StatusCreated)
	}
	queries := []string{
		`<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data><c:expand start="20240301T000000Z" end="20240501T000000Z"/></c:calendar-data></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20240301T000000Z" end="20240501T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
		`<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20240610T000000Z" end="20240617T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>`,
	}
	query := func(body string) (string, error) {
		req, err := http.NewRequest("REPORT", e.srv.URL+"/dav/calendars/alice/personal/", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		req.SetBasicAuth("alice", testPassword)
		req.Header.Set("Depth", "1")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusMultiStatus {
			return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		return string(b), err
	}
	want := make([]string, len(queries))
	for i, q := range queries {
		var err error
		if want[i], err = query(q); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(want[0], "RECURRENCE-ID"); n < 30 {
		t.Fatalf("the expand query found %d instances; the test needs recurring answers", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*10)
	for g := range 8 {
		wg.Go(func() {
			for k := range 10 {
				i := (g + k) % len(queries)
				got, err := query(queries[i])
				if err == nil && got != want[i] {
					err = fmt.Errorf("query %d from goroutine %d: answer differs from a lone query's", i, g)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if e.h.parsed.len() == 0 {
		t.Error("no parse was cached")
	}
}
