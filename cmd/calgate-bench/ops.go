package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

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
	var syncToken string

	return []measurement{
		{name: "get", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
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
		}},
		{name: "propfind_d0", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
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
		}},
		{name: "propfind_d1", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
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
		{name: "query_month", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			ms, d, err := b.report(ctx, "REPORT", "1", queryBody(monthStart, monthEnd, false))
			if err != nil {
				return d, 0, err
			}
			if err := checkObjects(ms, month, monthWant, false); err != nil {
				return d, 0, err
			}
			return d, len(ms.Responses), nil
		}},
		{name: "query_week_expand", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			ms, d, err := b.report(ctx, "REPORT", "1", queryBody(weekStart, weekEnd, true))
			if err != nil {
				return d, 0, err
			}
			if err := checkObjects(ms, week, len(week), true); err != nil {
				return d, 0, err
			}
			return d, weekTotal, nil
		}},
		{name: "multiget_100", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
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
		}},
		{name: "sync_after_change", sequential: true, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			if syncToken == "" {
				ms, _, err := b.report(ctx, "PROPFIND", "0", []byte(propfindBody))
				if err != nil {
					return 0, 0, fmt.Errorf("read sync-token: %w", err)
				}
				if len(ms.Responses) != 1 {
					return 0, 0, fmt.Errorf("read sync-token: %d responses, want 1", len(ms.Responses))
				}
				if p, ok := ms.Responses[0].ok200(); ok && p.SyncToken != nil {
					syncToken = *p.SyncToken
				}
				if syncToken == "" {
					return 0, 0, fmt.Errorf("no DAV:sync-token on the calendar")
				}
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
		{name: "get_collection", op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
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
			old := b.etags[i]
			d, err := b.put(ctx, i, b.rev[i]+1, true)
			if err != nil {
				return d, 0, err
			}
			if b.etags[i] == old {
				return d, 0, fmt.Errorf("%s: ETag %s unchanged after a changed body", b.evs[i].Name, old)
			}
			return d, 1, nil
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
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
