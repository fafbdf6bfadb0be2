package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// options are the settings of one run; main fills them from flags.
type options struct {
	Home     string // calendar home collection URL, ending in '/'
	User     string
	Password string
	N        int           // events to load
	C        int           // concurrency of the load and the read measurements
	Duration time.Duration // time bound of each read measurement
	Requests int           // count bound of each measurement; 0 means maxRequests
	Seed     uint64
	Keep     bool          // keep the calendar after the run
	PID      int           // server process for peak RSS; 0 means none
	Timeout  time.Duration // per-request timeout

	// monthSkew is added to the expected one-month count; the test uses
	// it to see that a wrong count fails the run.
	monthSkew int
}

// maxRequests bounds a measurement when no -requests is given.
const maxRequests = 1_000_000

// opResult is one row of the table.
type opResult struct {
	Name      string  `json:"name"`
	Requests  int     `json:"requests"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Items     int     `json:"items"` // items in each answer (objects, responses or instances)
	OK        bool    `json:"ok"`
	Error     string  `json:"error,omitempty"`
}

// report is the outcome of a run.
type report struct {
	Home      string     `json:"home"`
	Calendar  string     `json:"calendar"`
	N         int        `json:"n"`
	C         int        `json:"c"`
	Seed      uint64     `json:"seed"`
	Ops       []opResult `json:"ops"`
	PeakRSSKB int64      `json:"peak_rss_kb,omitempty"`
	Failures  []string   `json:"failures,omitempty"`
}

// bench is the state of one run.
type bench struct {
	opts   options
	cl     *client
	calURL *url.URL // the calendar created for the run
	evs    []event
	etags  []string // current ETag per event; written by the one goroutine that PUTs it
	rev    []int    // current revision per event; same rule
}

// run creates a calendar under opts.Home, loads the events, measures every
// operation and checks every answer. The error lists the failed checks;
// the report is filled in as far as the run got.
func run(ctx context.Context, opts options) (*report, error) {
	if opts.N < 1 || opts.C < 1 {
		return nil, errors.New("bench: -n and -c must be at least 1")
	}
	if opts.Requests <= 0 {
		opts.Requests = maxRequests
	}
	if opts.Duration <= 0 {
		opts.Duration = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	home, err := url.Parse(opts.Home)
	if err != nil || (home.Scheme != "http" && home.Scheme != "https") || home.Host == "" {
		return nil, fmt.Errorf("bench: -home %q is not an http(s) URL", opts.Home)
	}
	if !strings.HasSuffix(home.Path, "/") {
		home.Path += "/"
	}
	evs, err := generate(opts.Seed, opts.N)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("calgate-bench-%d-%d", opts.Seed, time.Now().UnixNano())
	b := &bench{
		opts:   opts,
		calURL: home.JoinPath(name + "/"),
		evs:    evs,
		etags:  make([]string, len(evs)),
		rev:    make([]int, len(evs)),
		cl: &client{
			user: opts.User, password: opts.Password,
			http: &http.Client{
				Timeout:   opts.Timeout,
				Transport: &http.Transport{MaxIdleConnsPerHost: opts.C + 2, MaxIdleConns: opts.C + 2},
				// Only the given server is contacted: never follow a redirect.
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			},
		},
	}
	defer b.cl.http.CloseIdleConnections()
	rep := &report{Home: home.String(), Calendar: b.calURL.String(), N: opts.N, C: opts.C, Seed: opts.Seed}

	status, _, body, _, err := b.cl.do(ctx, "MKCALENDAR", b.calURL.String(), map[string]string{"Content-Type": "application/xml"}, []byte(mkcalendarBody))
	if err != nil {
		return rep, fmt.Errorf("bench: create calendar: %w", err)
	}
	if status != http.StatusCreated {
		return rep, fmt.Errorf("bench: MKCALENDAR %s: status %d, want 201: %.300s", b.calURL, status, body)
	}
	if !opts.Keep {
		defer func() {
			// A fresh context: the calendar goes even when ctx was cancelled.
			dctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
			defer cancel()
			status, _, _, _, err := b.cl.do(dctx, http.MethodDelete, b.calURL.String(), nil, nil)
			if err == nil && status/100 != 2 {
				err = fmt.Errorf("status %d", status)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "calgate-bench: delete %s: %v\n", b.calURL, err)
			}
		}()
	}

	load := b.load(ctx)
	rep.Ops = append(rep.Ops, load)
	if !load.OK {
		rep.Failures = append(rep.Failures, load.Name+": "+load.Error)
		return rep, fmt.Errorf("bench: %s", strings.Join(rep.Failures, "; "))
	}
	for _, m := range b.measurements() {
		if ctx.Err() != nil {
			break
		}
		r := b.measure(ctx, m)
		rep.Ops = append(rep.Ops, r)
		if !r.OK {
			rep.Failures = append(rep.Failures, r.Name+": "+r.Error)
		}
	}
	if opts.PID > 0 {
		kb, err := peakRSS(opts.PID)
		if err != nil {
			rep.Failures = append(rep.Failures, "peak_rss: "+err.Error())
		}
		rep.PeakRSSKB = kb
	}
	if ctx.Err() != nil {
		rep.Failures = append(rep.Failures, "run: "+ctx.Err().Error())
	}
	if len(rep.Failures) > 0 {
		return rep, fmt.Errorf("bench: %d check(s) failed: %s", len(rep.Failures), strings.Join(rep.Failures, "; "))
	}
	return rep, nil
}

// objURL is the URL of event i.
func (b *bench) objURL(i int) string { return b.calURL.JoinPath(b.evs[i].Name).String() }

// objPath is the path of event i, as hrefs in answers name it.
func (b *bench) objPath(i int) string { return b.calURL.Path + b.evs[i].Name }

// put stores revision rev of event i and records its ETag. With ifMatch the
// PUT is conditional on the recorded ETag; otherwise on the object being new.
func (b *bench) put(ctx context.Context, i, rev int, ifMatch bool) (time.Duration, error) {
	hdr := map[string]string{"Content-Type": "text/calendar; charset=utf-8"}
	want := []int{http.StatusCreated}
	if ifMatch {
		hdr["If-Match"] = b.etags[i]
		want = []int{http.StatusNoContent, http.StatusOK, http.StatusCreated}
	} else {
		hdr["If-None-Match"] = "*"
	}
	status, h, body, d, err := b.cl.do(ctx, http.MethodPut, b.objURL(i), hdr, b.evs[i].body(rev))
	if err != nil {
		return 0, err
	}
	if !slices.Contains(want, status) {
		return d, fmt.Errorf("PUT %s: status %d, want %v: %.300s", b.evs[i].Name, status, want, body)
	}
	etag := h.Get("ETag")
	if etag == "" || strings.HasPrefix(etag, "W/") {
		// No strong ETag on the PUT answer (RFC 4791 section 5.3.4 allows
		// that): read it with a GET.
		status, h, _, _, err := b.cl.do(ctx, http.MethodGet, b.objURL(i), nil, nil)
		if err != nil {
			return d, err
		}
		if status != http.StatusOK || h.Get("ETag") == "" {
			return d, fmt.Errorf("GET %s after PUT: status %d, ETag %q", b.evs[i].Name, status, h.Get("ETag"))
		}
		etag = h.Get("ETag")
	}
	b.etags[i], b.rev[i] = etag, rev
	return d, nil
}

// load PUTs every event with b.opts.C workers.
func (b *bench) load(ctx context.Context) opResult {
	var next atomic.Int64
	lats := make([][]time.Duration, b.opts.C)
	errs := make([]error, b.opts.C)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range b.opts.C {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(b.evs) {
					return
				}
				d, err := b.put(ctx, i, 0, false)
				if err != nil {
					errs[w] = err
					cancel()
					return
				}
				lats[w] = append(lats[w], d)
			}
		})
	}
	wg.Wait()
	return summarize("put_load", time.Since(start), slices.Concat(lats...), len(b.evs), errors.Join(errs...))
}

// measurement is one measured operation. op does one request for worker w
// and iteration k, returns the time of the measured request alone and the
// item count of its answer, and fails on a wrong answer.
type measurement struct {
	name       string
	sequential bool // run on one worker: each request depends on the last
	op         func(ctx context.Context, w, k int) (time.Duration, int, error)
}

// measure runs m until b.opts.Duration has passed or b.opts.Requests were
// made, whichever comes first, and at least once. The first failure stops it.
func (b *bench) measure(ctx context.Context, m measurement) opResult {
	workers := b.opts.C
	if m.sequential {
		workers = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var count atomic.Int64
	lats := make([][]time.Duration, workers)
	items := make([]int, workers)
	errs := make([]error, workers)
	start := time.Now()
	deadline := start.Add(b.opts.Duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				if n := count.Add(1); n > int64(b.opts.Requests) || (n > 1 && time.Now().After(deadline)) {
					return
				}
				d, n, err := m.op(ctx, w, k)
				if err != nil {
					errs[w] = err
					cancel()
					return
				}
				lats[w] = append(lats[w], d)
				items[w] = n
			}
		})
	}
	wg.Wait()
	all := slices.Concat(lats...)
	r := summarize(m.name, time.Since(start), all, len(all), errors.Join(errs...))
	r.Items = slices.Max(items)
	return r
}

// summarize makes a table row from latencies; ops/s counts done operations
// over the wall time of the measurement.
func summarize(name string, wall time.Duration, lats []time.Duration, done int, err error) opResult {
	r := opResult{Name: name, Requests: len(lats), Items: done, OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	if len(lats) == 0 {
		r.OK, r.Error = false, cmpOr(r.Error, "no request completed")
		return r
	}
	slices.Sort(lats)
	pct := func(p int) float64 {
		return float64(lats[(len(lats)-1)*p/100]) / float64(time.Millisecond)
	}
	r.P50ms, r.P99ms = pct(50), pct(99)
	r.OpsPerSec = float64(done) / wall.Seconds()
	return r
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// peakRSS reads VmHWM of a process from /proc, in KiB.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
