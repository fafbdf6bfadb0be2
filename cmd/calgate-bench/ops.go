package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// opNames are the measured operations, in the order they run. The feed
// operations run only with a feed URL.
var opNames = []string{
	"get", "propfind_d0", "propfind_d1", "query_month", "query_week_expand",
	"multiget_100", "sync_after_change", "get_collection", "put_update", "mixed",
	"feed_get", "feed_304", "feed_after_change",
}

// checkOps fails on a name that is not an operation.
func checkOps(ops []string) error {
	for _, o := range ops {
		if !slices.Contains(opNames, o) {
			return fmt.Errorf("bench: unknown operation %q (known: %s)", o, strings.Join(opNames, ", "))
		}
	}
	return nil
}

// mixWeights is the mixed read load: what a population of synchronising
// clients (Apple Calendar, Thunderbird, DAVx5, Evolution) sends, in
// percent. Most requests are polls that find nothing new (PROPFIND Depth 0
// of the calendar for its ctag or sync-token, and sync-collection with the
// current token); then single-object GETs; then the views a client fills
// (a month's calendar-query, a multiget after a sync). Those clients
// expand recurrences themselves, so expand is measured alone
// (query_week_expand), not in the mix.
var mixWeights = []struct {
	name   string
	weight int
}{
	{"propfind_d0", 40},
	{"sync_poll", 20},
	{"get", 20},
	{"query_month", 10},
	{"multiget_100", 10},
}

// feedChangeRequests bounds each round of feed_after_change: each request
// follows a write and a full rebuild of the feed.
const feedChangeRequests = 10

// measurements lists the measured operations, each with its check of every
// answer against what the generator says the server must hold.
func (b *bench) measurements() []measurement {
	n := len(b.evs)
	// Expected answers, from the tool's own rule evaluator.
	month := make(map[string]int) // path -> 1 for each event with an instance in the month
	week := make(map[string]int)  // path -> instances in the week
	weekTotal, overrides := 0, 0
	for i := range b.evs {
		if b.evs[i].overlapping(monthStart, monthEnd) > 0 {
			month[b.objPath(i)] = 1
		}
		if k := b.evs[i].overlapping(weekStart, weekEnd); k > 0 {
			week[b.objPath(i)] = k
			weekTotal += k
		}
		if b.evs[i].Kind == override {
			overrides++
		}
	}
	monthWant := len(month) + b.opts.monthSkew
	mgSize := min(100, n)
	var syncToken string // of sync_after_change; one worker
	var pollToken string // of sync_poll; set before its workers start

	get := func(ctx context.Context, w, k int) (time.Duration, int, error) {
		i := (w*7919 + k) % n
		status, _, body, d, err := b.cl.do(ctx, http.MethodGet, b.objURL(i), nil, nil)
		if err != nil {
			return 0, 0, err
		}
		if status != http.StatusOK {
			return d, 0, fmt.Errorf("GET %s: status %d, want 200", b.evs[i].Name, status)
		}
		_, uids := icsStats(body)
		if len(uids) != 1 || !uids[b.evs[i].UID] {
			return d, 0, fmt.Errorf("GET %s: UIDs %v, want only %s", b.evs[i].Name, keys(uids), b.evs[i].UID)
		}
		return d, 1, nil
	}
	propfindD0 := func(ctx context.Context, w, k int) (time.Duration, int, error) {
		ms, d, err := b.report(ctx, "PROPFIND", "0", []byte(propfindBody))
		if err != nil {
			return d, 0, err
		}
		if len(ms.Responses) != 1 {
			return d, 0, fmt.Errorf("%d responses, want 1", len(ms.Responses))
		}
		r := &ms.Responses[0]
		if p, ok := r.ok200(); !ok || len(r.Hrefs) != 1 || hrefPath(r.Hrefs[0]) != b.calURL.Path || p.SyncToken == nil || *p.SyncToken == "" {
			return d, 0, fmt.Errorf("response %v lacks the calendar href %s or a 200 DAV:sync-token", r.Hrefs, b.calURL.Path)
		}
		return d, 1, nil
	}
	queryMonth := func(ctx context.Context, w, k int) (time.Duration, int, error) {
		ms, d, err := b.report(ctx, "REPORT", "1", queryBody(monthStart, monthEnd, false))
		if err != nil {
			return d, 0, err
		}
		if err := checkObjects(ms, month, monthWant, false); err != nil {
			return d, 0, err
		}
		return d, len(ms.Responses), nil
	}
	queryWeek := func(ctx context.Context, w, k int) (time.Duration, int, error) {
		ms, d, err := b.report(ctx, "REPORT", "1", queryBody(weekStart, weekEnd, true))
		if err != nil {
			return d, 0, err
		}
		if err := checkObjects(ms, week, len(week), true); err != nil {
			return d, 0, err
		}
		return d, weekTotal, nil
	}
	multiget := func(ctx context.Context, w, k int) (time.Duration, int, error) {
		first := (w*7919 + k*mgSize) % n
		want := make(map[string]int, mgSize)
		paths := make([]string, 0, mgSize)
		for j := range mgSize {
			p := b.objPath((first + j) % n)
			paths = append(paths, p)
			want[p] = 1
		}
		ms, d, err := b.report(ctx, "REPORT", "", multigetBody(paths))
		if err != nil {
			return d, 0, err
		}
		if err := checkObjects(ms, want, mgSize, false); err != nil {
			return d, 0, err
		}
		return d, len(ms.Responses), nil
	}
	syncPoll := func(ctx context.Context, w, k int) (time.Duration, int, error) {
		ms, d, err := b.report(ctx, "REPORT", "", syncBody(pollToken))
		if err != nil {
			return d, 0, err
		}
		if len(ms.Responses) != 0 {
			return d, 0, fmt.Errorf("sync-collection: %d changed members since the current token, want 0", len(ms.Responses))
		}
		if ms.SyncToken == "" {
			return d, 0, fmt.Errorf("sync-collection: no DAV:sync-token in the answer")
		}
		return d, 0, nil
	}
	readToken := func(ctx context.Context) (string, error) {
		ms, _, err := b.report(ctx, "PROPFIND", "0", []byte(propfindBody))
		if err != nil {
			return "", fmt.Errorf("read sync-token: %w", err)
		}
		if len(ms.Responses) != 1 {
			return "", fmt.Errorf("read sync-token: %d responses, want 1", len(ms.Responses))
		}
		if p, ok := ms.Responses[0].ok200(); ok && p.SyncToken != nil && *p.SyncToken != "" {
			return *p.SyncToken, nil
		}
		return "", fmt.Errorf("no DAV:sync-token on the calendar")
	}

	mixOps := map[string]opFunc{
		"propfind_d0": propfindD0, "sync_poll": syncPoll, "get": get,
		"query_month": queryMonth, "multiget_100": multiget,
	}
	mix := new(mixCounts)

	ms := []measurement{
		{name: "get", op: get},
		{name: "propfind_d0", op: propfindD0},
		{name: "propfind_d1", latency: true, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			ms, d, err := b.report(ctx, "PROPFIND", "1", []byte(propfindBody))
			if err != nil {
				return d, 0, err
			}
			if len(ms.Responses) != n+1 {
				return d, 0, fmt.Errorf("%d responses, want %d (N+1)", len(ms.Responses), n+1)
			}
			want := make(map[string]bool, n+1)
			want[b.calURL.Path] = true
			for i := range b.evs {
				want[b.objPath(i)] = true
			}
			for _, r := range ms.Responses {
				if len(r.Hrefs) != 1 || !want[hrefPath(r.Hrefs[0])] {
					return d, 0, fmt.Errorf("unexpected or repeated href %v", r.Hrefs)
				}
				delete(want, hrefPath(r.Hrefs[0]))
				if p, ok := r.ok200(); !ok || (hrefPath(r.Hrefs[0]) != b.calURL.Path && (p.ETag == nil || *p.ETag == "")) {
					return d, 0, fmt.Errorf("%s: no 200 propstat with DAV:getetag", r.Hrefs[0])
				}
			}
			return d, len(ms.Responses), nil
		}},
		{name: "query_month", latency: true, op: queryMonth},
		{name: "query_week_expand", latency: true, op: queryWeek},
		{name: "multiget_100", latency: true, op: multiget},
		{name: "sync_after_change", sequential: true, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			if syncToken == "" {
				t, err := readToken(ctx)
				if err != nil {
					return 0, 0, err
				}
				syncToken = t
			}
			i := (k * 7) % n
			if _, err := b.put(ctx, i, b.rev[i]+1, true); err != nil {
				return 0, 0, fmt.Errorf("change before sync: %w", err)
			}
			ms, d, err := b.report(ctx, "REPORT", "", syncBody(syncToken))
			if err != nil {
				return d, 0, err
			}
			if len(ms.Responses) != 1 {
				return d, 0, fmt.Errorf("%d changed members, want exactly 1", len(ms.Responses))
			}
			r := &ms.Responses[0]
			if _, ok := r.ok200(); !ok || len(r.Hrefs) != 1 || hrefPath(r.Hrefs[0]) != b.objPath(i) {
				return d, 0, fmt.Errorf("changed member %v, want %s with a 200 propstat", r.Hrefs, b.objPath(i))
			}
			if ms.SyncToken == "" || ms.SyncToken == syncToken {
				return d, 0, fmt.Errorf("new sync-token %q, want a new non-empty one", ms.SyncToken)
			}
			syncToken = ms.SyncToken
			return d, 1, nil
		}},
		{name: "get_collection", latency: true, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			status, _, body, d, err := b.cl.do(ctx, http.MethodGet, b.calURL.String(), nil, nil)
			if err != nil {
				return 0, 0, err
			}
			if status != http.StatusOK {
				return d, 0, fmt.Errorf("status %d, want 200", status)
			}
			vevents, uids := icsStats(body)
			if len(uids) != n || vevents != n+overrides {
				return d, 0, fmt.Errorf("%d UIDs in %d VEVENTs, want %d in %d", len(uids), vevents, n, n+overrides)
			}
			return d, n, nil
		}},
		{name: "put_update", sequential: true, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			i := (k*13 + 1) % n
			old, err := b.etag(ctx, i)
			if err != nil {
				return 0, 0, err
			}
			d, err := b.put(ctx, i, b.rev[i]+1, true)
			if err != nil {
				return d, 0, err
			}
			if b.etags[i] == old {
				return d, 0, fmt.Errorf("%s: ETag %s unchanged after a changed body", b.evs[i].Name, old)
			}
			return d, 1, nil
		}},
		{
			name: "mixed",
			mix:  mix,
			prepare: func(ctx context.Context) error {
				t, err := readToken(ctx)
				pollToken = t
				return err
			},
			op: mix.op(b.opts.Seed, b.opts.C, mixOps),
		},
	}
	if b.feedURL != "" {
		ms = append(ms, b.feedMeasurements(n+overrides+b.opts.feedSkew)...)
	}
	return ms
}

// mixCounts counts the requests of the mixed load per kind.
type mixCounts struct {
	counts [8]atomic.Int64 // by index in mixWeights
}

func (m *mixCounts) reset() {
	for i := range m.counts {
		m.counts[i].Store(0)
	}
}

func (m *mixCounts) snapshot() map[string]int {
	out := make(map[string]int, len(mixWeights))
	for i, mw := range mixWeights {
		out[mw.name] = int(m.counts[i].Load())
	}
	return out
}

// op returns the mixed load: each request is a kind drawn by weight from
// mixWeights, with a random source per worker seeded from seed, so a run
// sends the same sequence for the same seed.
func (m *mixCounts) op(seed uint64, workers int, ops map[string]opFunc) opFunc {
	rngs := make([]*rand.Rand, workers) // rngs[w] is used by worker w alone
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(seed, 0x6d6978+uint64(w)))
	}
	total := 0
	for _, mw := range mixWeights {
		total += mw.weight
	}
	return func(ctx context.Context, w, k int) (time.Duration, int, error) {
		r := rngs[w].IntN(total)
		for i, mw := range mixWeights {
			if r < mw.weight {
				m.counts[i].Add(1)
				d, _, err := ops[mw.name](ctx, w, k)
				if err != nil {
					err = fmt.Errorf("%s: %w", mw.name, err)
				}
				return d, 0, err
			}
			r -= mw.weight
		}
		panic("unreachable: weights sum to total")
	}
}

// feedMeasurements are the operations on the merged feed over the
// calendar, which must carry every VEVENT of it (wantVEvents: the events
// and the overrides among them).
func (b *bench) feedMeasurements(wantVEvents int) []measurement {
	n := len(b.evs)
	check := func(status int, hdr http.Header, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("feed GET: status %d, want 200: %.200s", status, body)
		}
		if ct := strings.ToLower(hdr.Get("Content-Type")); !strings.HasPrefix(ct, "text/calendar") {
			return fmt.Errorf("feed GET: Content-Type %q, want text/calendar", ct)
		}
		vevents, uids := icsStats(body)
		if vevents != wantVEvents || len(uids) != n {
			return fmt.Errorf("feed: %d VEVENTs of %d UIDs, want %d of %d", vevents, len(uids), wantVEvents, n)
		}
		return nil
	}
	var validator map[string]string // the conditional header of feed_304; set before its workers start
	return []measurement{
		{name: "feed_get", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			status, hdr, body, d, err := b.cl.do(ctx, http.MethodGet, b.feedURL, nil, nil)
			if err != nil {
				return 0, 0, err
			}
			if err := check(status, hdr, body); err != nil {
				return d, 0, err
			}
			return d, wantVEvents, nil
		}},
		{
			name: "feed_304",
			prepare: func(ctx context.Context) error {
				status, hdr, body, _, err := b.cl.do(ctx, http.MethodGet, b.feedURL, nil, nil)
				if err != nil {
					return err
				}
				if err := check(status, hdr, body); err != nil {
					return err
				}
				switch {
				case hdr.Get("ETag") != "":
					validator = map[string]string{"If-None-Match": hdr.Get("ETag")}
				case hdr.Get("Last-Modified") != "":
					validator = map[string]string{"If-Modified-Since": hdr.Get("Last-Modified")}
				default:
					return fmt.Errorf("feed GET: neither ETag nor Last-Modified: no conditional GET possible")
				}
				return nil
			},
			op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
				status, _, body, d, err := b.cl.do(ctx, http.MethodGet, b.feedURL, validator, nil)
				if err != nil {
					return 0, 0, err
				}
				if status != http.StatusNotModified || len(body) != 0 {
					return d, 0, fmt.Errorf("conditional feed GET (%v): status %d with %d body bytes, want 304 and none", slices.Sorted(maps.Keys(validator)), status, len(body))
				}
				return d, 0, nil
			},
		},
		{name: "feed_after_change", sequential: true, maxRequests: feedChangeRequests, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			i := (k*17 + 3) % n
			rev := b.rev[i] + 1
			if _, err := b.put(ctx, i, rev, true); err != nil {
				return 0, 0, fmt.Errorf("change before feed GET: %w", err)
			}
			status, hdr, body, d, err := b.cl.do(ctx, http.MethodGet, b.feedURL, nil, nil)
			if err != nil {
				return 0, 0, err
			}
			if err := check(status, hdr, body); err != nil {
				return d, 0, err
			}
			if !containsUnfolded(body, b.evs[i].changeMarker(rev)) {
				return d, 0, fmt.Errorf("first feed GET after the change of %s does not show its revision %d", b.evs[i].Name, rev)
			}
			return d, wantVEvents, nil
		}},
	}
}

// report sends a PROPFIND or REPORT to the calendar and decodes the
// multistatus answer. depth "" sends no Depth header.
func (b *bench) report(ctx context.Context, method, depth string, body []byte) (*multistatus, time.Duration, error) {
	hdr := map[string]string{"Content-Type": "application/xml; charset=utf-8"}
	if depth != "" {
		hdr["Depth"] = depth
	}
	status, _, data, d, err := b.cl.do(ctx, method, b.calURL.String(), hdr, body)
	if err != nil {
		return nil, 0, err
	}
	ms, err := parseMultistatus(status, data)
	return ms, d, err
}

// checkObjects checks a calendar-query or multiget answer: exactly count
// responses, each for a path in want, each once, with a 200 propstat that
// carries calendar-data. With instances set, the calendar-data of each
// must hold want[path] VEVENTs (an expanded answer: one per instance).
func checkObjects(ms *multistatus, want map[string]int, count int, instances bool) error {
	if len(ms.Responses) != count {
		return fmt.Errorf("%d responses, want %d", len(ms.Responses), count)
	}
	seen := make(map[string]bool, count)
	for _, r := range ms.Responses {
		if len(r.Hrefs) != 1 {
			return fmt.Errorf("response with %d hrefs, want 1", len(r.Hrefs))
		}
		p := hrefPath(r.Hrefs[0])
		if _, ok := want[p]; !ok || seen[p] {
			return fmt.Errorf("unexpected or repeated member %s", p)
		}
		seen[p] = true
		pr, ok := r.ok200()
		if !ok || pr.CalendarData == nil || *pr.CalendarData == "" {
			return fmt.Errorf("%s: no 200 propstat with calendar-data", p)
		}
		if instances {
			if k, _ := icsStats([]byte(*pr.CalendarData)); k != want[p] {
				return fmt.Errorf("%s: %d expanded instances, want %d", p, k, want[p])
			}
		}
	}
	return nil
}

func keys(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}
