package main

// The crash-durability rows of the issue-8 matrix. TestMatrixCrash kills
// the calgate binary with SIGKILL while 16 writers create, overwrite and
// delete objects, round after round, and checks after each restart that
// every acknowledged write is there and nothing else; the store then
// passes cache.Verify. TestMatrixCrashReplay kills calgate again and
// again while its outbox replays writes into a real Radicale, and checks
// that the upstream ends with every acknowledged write exactly once.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// queryAllObjects is a calendar-query REPORT (RFC 4791 §7.8) for every
// object of a calendar with its ETag and data.
const queryAllObjects = `<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"/></C:filter>
</C:calendar-query>`

// servedObjects lists every object of the calendar at calPath with one
// calendar-query REPORT, keyed by URL path. calgate serves the stored
// bytes (CR escaped in the XML), so they compare byte for byte.
func (p *calgateProcess) servedObjects(t *testing.T, calPath string) map[string]ackedPut {
	t.Helper()
	ms := p.davMultistatus(t, "REPORT", calPath, "1", queryAllObjects)
	objs := make(map[string]ackedPut, len(ms.Responses))
	for _, r := range ms.Responses {
		prop, ok := r.found()
		if !ok || prop.ETag == "" || prop.CalendarData == "" {
			t.Fatalf("REPORT %s: response without getetag and calendar-data: %+v", calPath, r)
		}
		path := mustURL(t, r.Href).Path
		if _, dup := objs[path]; dup {
			t.Fatalf("REPORT %s: %s served twice", calPath, path)
		}
		objs[path] = ackedPut{etag: prop.ETag, body: []byte(prop.CalendarData)}
	}
	return objs
}

// Bounds of TestMatrixCrash.
const (
	crashRounds   = 20
	crashWriters  = 16
	crashAcksKill = 1000 // acknowledged writes in a round before SIGKILL
	crashMaxOps   = 4000 // writes sent in a round, at most
	crashMaxTime  = time.Minute
)

// crashModel is what calgate acknowledged in TestMatrixCrash. Each
// writer owns its own paths, so the writes to one path are sequential.
type crashModel struct {
	mu sync.Mutex // protects the fields below during a round
	// acked holds the acknowledged object of every path whose last
	// acknowledged write is a PUT; a deleted path is not in it.
	acked map[string]ackedPut
	// cutoff holds the writes in flight when calgate was killed: path →
	// the body PUT, or nil for a DELETE. After a restart each one is
	// either absent or whole, and the model takes what calgate serves.
	cutoff map[string][]byte
	owner  map[string]int // path → writer
	next   []int          // per writer, the number of its next new path
}

// crashOp is one kind of write of TestMatrixCrash.
type crashOp int

const (
	crashCreate crashOp = iota // PUT with If-None-Match: *
	crashUpdate                // PUT with If-Match: the acknowledged ETag
	crashDelete                // DELETE with If-Match: the acknowledged ETag
	numCrashOps
)

// crashRound is what one round of TestMatrixCrash did.
type crashRound struct {
	sent, acks   int
	byOp         [numCrashOps]int
	write, check time.Duration
	cutoff       int // writes in flight at the kill
	landed       int // of those, the ones calgate had stored
	objects      int // objects in the calendar at the check after the restart
}

// TestMatrixCrash (issue 8, crash durability): 20 rounds of 16 writers
// creating, overwriting (If-Match) and deleting (If-Match) objects through
// the calgate binary, SIGKILLed once 1,000 writes of the round were
// acknowledged. After each restart every acknowledged object is served
// with its ETag and bytes, every acknowledged delete is gone, a write cut
// off by the kill is absent or whole, and nothing else is there. After
// the last round calgate stops cleanly and cache.Verify passes.
func TestMatrixCrash(t *testing.T) {
	dir := t.TempDir()
	config := writeCalgateConfig(t, dir)
	m := &crashModel{
		acked:  make(map[string]ackedPut),
		cutoff: make(map[string][]byte),
		owner:  make(map[string]int),
		next:   make([]int, crashWriters),
	}
	t0 := time.Now()
	var rounds []crashRound
	// Each round starts calgate on the data file the last one was killed
	// on and checks it; one more start checks the last kill.
	for round := 1; round <= crashRounds+1; round++ {
		srv := startCalgate(t, config)
		c0 := time.Now()
		landed, objects := m.check(t, srv)
		if round > 1 {
			prev := &rounds[round-2]
			prev.landed, prev.objects, prev.check = landed, objects, time.Since(c0)
		}
		if t.Failed() {
			return
		}
		if round > crashRounds {
			srv.stop(t) // and calgate still stops cleanly
			break
		}
		var r crashRound
		m.writeUntilKilled(t, srv, round, &r)
		if t.Failed() {
			return
		}
		rounds = append(rounds, r)
	}
	sum, err := cache.Verify(filepath.Join(dir, "calgate.db"))
	if err != nil {
		t.Fatalf("cache.Verify after %d kills: %v", crashRounds, err)
	}
	if sum.Objects != len(m.acked) {
		t.Errorf("cache.Verify counts %d objects, %d are acknowledged", sum.Objects, len(m.acked))
	}

	var total crashRound
	for i, r := range rounds {
		t.Logf("MATRIX crash: round %2d: %d writes sent, %d acknowledged (create %d, overwrite %d, delete %d) in %v; killed with %d in flight, %d of them stored; restart check of %d objects in %v",
			i+1, r.sent, r.acks, r.byOp[crashCreate], r.byOp[crashUpdate], r.byOp[crashDelete], r.write.Round(time.Millisecond),
			r.cutoff, r.landed, r.objects, r.check.Round(time.Millisecond))
		total.sent += r.sent
		total.acks += r.acks
		total.cutoff += r.cutoff
		total.landed += r.landed
		for op := range numCrashOps {
			total.byOp[op] += r.byOp[op]
		}
		total.write = max(total.write, r.write)
		total.check = max(total.check, r.check)
	}
	t.Logf("MATRIX crash: %d rounds, %d SIGKILLs (one per round) at %d acknowledged writes each; %d writes sent, %d acknowledged (create %d, overwrite %d, delete %d), all checked after the next restart; %d cut off by a kill (%d stored whole, %d absent, 0 torn); max write phase %v, max restart check %v; cache.Verify clean (%d objects, %.1f MB); total %v",
		len(rounds), len(rounds), crashAcksKill, total.sent, total.acks, total.byOp[crashCreate], total.byOp[crashUpdate], total.byOp[crashDelete],
		total.cutoff, total.landed, total.cutoff-total.landed, total.write.Round(time.Millisecond), total.check.Round(time.Millisecond),
		sum.Objects, float64(sum.Size)/1e6, time.Since(t0).Round(time.Millisecond))
}

// writeUntilKilled runs crashWriters concurrent writers and SIGKILLs
// calgate once crashAcksKill writes of this round were acknowledged,
// while the writers are still writing. Each writer creates new objects,
// and overwrites and deletes its acknowledged ones with If-Match.
func (m *crashModel) writeUntilKilled(t *testing.T, srv *calgateProcess, round int, r *crashRound) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), crashMaxTime)
	defer cancel()
	var (
		failures []string // guarded by m.mu
		reached  = make(chan struct{})
		wg       sync.WaitGroup
	)
	// Padding makes each write a realistic size, not a few bytes.
	pad := "DESCRIPTION:" + strings.Repeat("durability ", 12)
	start := time.Now()
	m.mu.Lock()
	live := make([][]string, crashWriters) // per writer, its acknowledged paths
	for _, p := range slices.Sorted(maps.Keys(m.acked)) {
		live[m.owner[p]] = append(live[m.owner[p]], p)
	}
	m.mu.Unlock()
	for w := range crashWriters {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
			mine := live[w]
			for seq := 0; ; seq++ {
				m.mu.Lock()
				if r.sent >= crashMaxOps || ctx.Err() != nil {
					m.mu.Unlock()
					return
				}
				r.sent++
				op := crashCreate
				var path string
				// About 36% creates, 34% overwrites and 30% deletes: the
				// calendar grows slowly, so that the check after each
				// restart stays quick, and objects live through kills.
				if n := rng.IntN(100); len(mine) >= 4 && n >= 36 {
					op = crashUpdate
					if n >= 70 {
						op = crashDelete
					}
					path = mine[rng.IntN(len(mine))]
				} else {
					path = fmt.Sprintf("%sm-w%02d-%05d.ics", personalPath, w, m.next[w])
					m.next[w]++
					m.owner[path] = w
				}
				uid := strings.TrimSuffix(filepath.Base(path), ".ics") + "@crash.test"
				body := eventICS(uid, fmt.Sprintf("round %d writer %d write %d", round, w, seq),
					time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seq)*time.Hour), pad)
				method, hdr := http.MethodPut, http.Header{"Content-Type": {"text/calendar; charset=utf-8"}}
				switch op {
				case crashCreate:
					hdr.Set("If-None-Match", "*")
				case crashUpdate:
					hdr.Set("If-Match", m.acked[path].etag)
				case crashDelete:
					method, body, hdr = http.MethodDelete, nil, http.Header{"If-Match": {m.acked[path].etag}}
				}
				m.cutoff[path] = body
				m.mu.Unlock()

				resp, _, err := srv.do(ctx, method, path, body, hdr)
				if err != nil {
					return // the server is gone, or time is up
				}
				etag := resp.Header.Get("ETag")
				want := http.StatusNoContent
				if op == crashCreate {
					want = http.StatusCreated
				}
				m.mu.Lock()
				if resp.StatusCode != want || (op != crashDelete && etag == "") {
					failures = append(failures, fmt.Sprintf("%s %s (%v): %s, ETag %q, want %d", method, path, op, resp.Status, etag, want))
					m.mu.Unlock()
					return
				}
				delete(m.cutoff, path)
				switch op {
				case crashCreate:
					m.acked[path] = ackedPut{etag: etag, body: body}
					mine = append(mine, path)
				case crashUpdate:
					m.acked[path] = ackedPut{etag: etag, body: body}
				case crashDelete:
					delete(m.acked, path)
					i := slices.Index(mine, path)
					mine[i] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
				}
				r.acks++
				r.byOp[op]++
				if r.acks == crashAcksKill {
					close(reached)
				}
				m.mu.Unlock()
			}
		})
	}

	select {
	case <-reached:
	case <-ctx.Done():
	}
	srv.kill(t)
	wg.Wait()
	r.write = time.Since(start)

	m.mu.Lock()
	defer m.mu.Unlock()
	r.cutoff = len(m.cutoff)
	for _, f := range failures {
		t.Error(f)
	}
	if r.acks < crashAcksKill {
		t.Errorf("round %d: only %d of %d writes acknowledged within %v before the kill:\n%s",
			round, r.acks, r.sent, crashMaxTime, srv.logs.String())
	}
}

// String names the operation in failure messages.
func (op crashOp) String() string {
	return [...]string{"create", "overwrite", "delete"}[op]
}

// check compares what the restarted calgate serves with the model: every
// acknowledged object with its ETag and bytes, no acknowledged delete,
// nothing never written, and each cut-off write absent (the path as
// before it) or whole. The model then takes the cut-off writes that were
// stored. It returns how many were, and the number of objects served.
func (m *crashModel) check(t *testing.T, srv *calgateProcess) (landed, objects int) {
	t.Helper()
	if logs := srv.logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("calgate logged an error starting after a kill:\n%s", logs)
	}
	served := srv.servedObjects(t, personalPath)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, path := range slices.Sorted(maps.Keys(m.cutoff)) {
		sent := m.cutoff[path]
		got, ok := served[path]
		old, had := m.acked[path]
		switch {
		case sent != nil && ok && bytes.Equal(got.body, sent): // a PUT, stored
			m.acked[path] = got
			landed++
		case sent == nil && !ok && had: // a DELETE, done
			delete(m.acked, path)
			landed++
		case ok && had && got.etag == old.etag && bytes.Equal(got.body, old.body): // not done
		case !ok && !had: // a create, not done
		default:
			t.Errorf("%s, cut off by the kill: served %v (ETag %q), neither as acknowledged before (%v, ETag %q) nor as written:\n%s",
				path, ok, got.etag, had, old.etag, got.body)
		}
	}
	clear(m.cutoff)
	missing := 0
	for _, path := range slices.Sorted(maps.Keys(m.acked)) {
		want := m.acked[path]
		got, ok := served[path]
		switch {
		case !ok:
			missing++
			if missing <= 10 {
				t.Errorf("%s (acknowledged with ETag %s) is not served after the kill", path, want.etag)
			}
		case got.etag != want.etag:
			t.Errorf("%s: ETag %s after the kill, acknowledged %s", path, got.etag, want.etag)
		case !bytes.Equal(got.body, want.body):
			t.Errorf("%s: body differs from the acknowledged one:\n%s", path, got.body)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged objects are missing after the kill", missing, len(m.acked))
	}
	for path := range served {
		if _, ok := m.acked[path]; !ok {
			if _, ever := m.owner[path]; ever {
				t.Errorf("%s is served after the kill, but its acknowledged delete removed it", path)
			} else {
				t.Errorf("%s is served after the kill, but was never written", path)
			}
		}
	}
	if t.Failed() {
		t.Logf("calgate log:\n%s", srv.logs.String())
	}
	return landed, len(served)
}

// Bounds of TestMatrixCrashReplay.
const (
	replayRounds = 5   // kills during the replay
	replayExtra  = 200 // offline writes beyond writeOffline's
)

// TestMatrixCrashReplay (issue 8, crash durability during the outbox
// replay): 300 writes are acknowledged with Radicale down; then calgate
// is SIGKILLed five times while it replays them, each time once a further
// share of the rest has arrived, and restarted on the same data file.
// Radicale ends with every acknowledged write exactly once, calgate
// serves each once, the outbox is empty with no conflict, and the store
// passes cache.Verify.
func TestMatrixCrashReplay(t *testing.T) {
	t0 := time.Now()
	rad, coll, config, srv := setUpOffline(t)
	const prefix = "mreplay"
	writeOffline(t, srv, prefix)
	want := make(map[string]string) // calgate path → UID of every acknowledged write
	for i := range offlineWrites {
		want[workPath+offlineName(prefix, i)] = offlineUID(prefix, i)
	}
	pad := "DESCRIPTION:" + strings.Repeat("offline write ", 40)
	for i := offlineWrites; i < offlineWrites+replayExtra; i++ {
		p := workPath + offlineName(prefix, i)
		srv.putNew(t, p, eventICS(offlineUID(prefix, i), fmt.Sprintf("Offline %d", i),
			time.Date(2031, 6, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Hour), pad))
		want[p] = offlineUID(prefix, i)
	}
	queued := len(want)
	checkLogs(t, srv)

	rad.Start()
	arrived := 1 // the seed
	midReplay := 0
	var waits []time.Duration
	for round := 1; round <= replayRounds; round++ {
		if round > 1 {
			srv = startCalgate(t, config)
			checkLogs(t, srv)
		}
		// A write kicks the outbox worker (after the offline failures the
		// source is in a long backoff).
		kick := fmt.Sprintf("kick-%d", round)
		srv.putNew(t, workPath+kick+".ics", eventICS(kick+"@e2e.test", "Kick "+kick, time.Date(2031, 7, round, 8, 0, 0, 0, time.UTC)))
		want[workPath+kick+".ics"] = kick + "@e2e.test"
		total := len(want) + 1
		// Spread the kills over what is left to replay.
		target := arrived + max(1, (total-arrived)/(replayRounds-round+2))
		// Listing Radicale much faster slows its PUTs down.
		var at int
		waits = append(waits, waitUntil(t, fmt.Sprintf("round %d: %d objects upstream", round, target), 60*time.Second, 100*time.Millisecond, func() (bool, string) {
			at = len(rad.hrefs(coll))
			return at >= target, fmt.Sprintf("%d of %d objects in radicale", at, total)
		}).Round(time.Millisecond))
		srv.kill(t)
		after := len(rad.hrefs(coll))
		if after < total {
			midReplay++
		}
		t.Logf("round %d: killed calgate with %d of %d objects upstream (%d when the kill was decided)", round, after, total, at)
		arrived = after
	}

	srv = startCalgate(t, config)
	defer checkLogs(t, srv)
	srv.putNew(t, workPath+"kick-last.ics", eventICS("kick-last@e2e.test", "Kick last", time.Date(2031, 8, 1, 8, 0, 0, 0, time.UTC)))
	want[workPath+"kick-last.ics"] = "kick-last@e2e.test"
	drain := waitUntil(t, "replay after the last restart", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		n := len(rad.hrefs(coll))
		return n == len(want)+1, fmt.Sprintf("%d of %d objects in radicale", n, len(want)+1)
	})
	checkUpstreamExactlyOnce(t, rad, coll, want)
	objs := srv.calendarObjects(t, workPath) // fails on a duplicate UID
	if len(objs) != len(want)+1 {
		t.Errorf("calgate serves %d objects in work, want %d", len(objs), len(want)+1)
	}
	for p, uid := range want {
		if o, ok := objs[uid]; !ok || mustURL(t, o.Href).Path != p {
			t.Errorf("calgate: UID %s at %q, want %s", uid, o.Href, p)
		}
	}
	checkDrained(t, srv, config) // stops calgate
	sum, err := cache.Verify(filepath.Join(filepath.Dir(config), "calgate.db"))
	if err != nil {
		t.Fatalf("cache.Verify after the kills: %v", err)
	}
	if sum.Objects != len(want)+1 {
		t.Errorf("cache.Verify counts %d objects, want %d", sum.Objects, len(want)+1)
	}
	t.Logf("MATRIX crash: outbox replay: %d offline writes queued, %d kicks; %d SIGKILLs during the replay (%d with the replay unfinished upstream); waits for the kill points %v; drained %v after the last restart; Radicale holds all %d acknowledged writes exactly once; outbox 0, conflicts 0; cache.Verify clean (%d objects); total %v",
		queued, replayRounds+1, replayRounds, midReplay, waits, drain.Round(time.Millisecond), len(want), sum.Objects, time.Since(t0).Round(time.Millisecond))
	if midReplay == 0 {
		t.Errorf("no kill landed during the replay: Radicale had everything each time")
	}
}
