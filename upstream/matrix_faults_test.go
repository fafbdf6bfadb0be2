package upstream

// The "Upstream faults" row of the adversarial matrix (issue 8), against
// real CalDAV servers (Radicale, and Xandikos where it is cheap): the
// upstream down while clients write, killed in the middle of a sync,
// suddenly empty, an object changing between the listing and the fetch,
// and 400 objects edited on both sides. The only stand-in is a
// RoundTripper in calgate's client that counts the writes the upstream
// accepted and, at a chosen request, kills the server or acts as another
// client of it: the faults themselves happen on the real server.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// upstreamRecorder wraps calgate's upstream client: it counts the writes
// (PUT, DELETE) the upstream accepted, by path, and runs a hook before
// each request.
type upstreamRecorder struct {
	mu       sync.Mutex
	accepted map[string]int // "PUT /path" -> 2xx answers
	requests int
	hook     func(*http.Request) // may be nil
}

func newUpstreamRecorder() *upstreamRecorder {
	return &upstreamRecorder{accepted: map[string]int{}}
}

// client returns the client calgate would use (NewHTTPClient), with the
// recorder between it and the network.
func (r *upstreamRecorder) client() *http.Client {
	c := NewHTTPClient(HTTPOptions{Timeout: 30 * time.Second})
	base := c.Transport
	c.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		r.requests++
		hook := r.hook
		r.mu.Unlock()
		if hook != nil {
			hook(req)
		}
		resp, err := base.RoundTrip(req)
		if err == nil && resp.StatusCode/100 == 2 && (req.Method == http.MethodPut || req.Method == http.MethodDelete) {
			r.mu.Lock()
			r.accepted[req.Method+" "+req.URL.Path]++
			r.mu.Unlock()
		}
		return resp, err
	})
	return c
}

func (r *upstreamRecorder) setHook(h func(*http.Request)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = h
}

// reset clears the counts and returns the old ones.
func (r *upstreamRecorder) reset() (accepted map[string]int, requests int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	accepted, requests = r.accepted, r.requests
	r.accepted, r.requests = map[string]int{}, 0
	return accepted, requests
}

// faultEnv is a caldavEnv whose source runs in an engine (not started:
// SyncNow pushes the outbox and pulls, as a kicked loop does) and whose
// requests go through a recorder.
type faultEnv struct {
	*caldavEnv
	rec    *upstreamRecorder
	engine *Engine
}

func newFaultEnv(t *testing.T, srv *davServer, mod func(*CalDAVOptions)) *faultEnv {
	rec := newUpstreamRecorder()
	e := newCalDAVEnv(t, srv, func(o *CalDAVOptions) {
		o.Client = rec.client()
		// The conflicts of (e) are hundreds of warnings: errors only.
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
		if mod != nil {
			mod(o)
		}
	})
	engine := NewEngine(EngineOptions{Store: e.store})
	engine.Add(e.src, davUser, davCal, time.Hour)
	return &faultEnv{caldavEnv: e, rec: rec, engine: engine}
}

func (e *faultEnv) syncNow() (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.engine.SyncNow(ctx, e.src.ID())
}

func (e *faultEnv) mustSync() Result {
	e.t.Helper()
	res, err := e.syncNow()
	if err != nil {
		e.t.Fatalf("sync: %v\n%s", err, e.srv.Log())
	}
	return res
}

// putMany stores objects upstream (name -> data), as another client of
// the upstream, four requests at a time.
func putMany(t *testing.T, srv *davServer, coll string, objs map[string][]byte) {
	t.Helper()
	type item struct {
		name string
		data []byte
	}
	work := make(chan item)
	errs := make(chan error, len(objs))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for it := range work {
				req, err := http.NewRequest(http.MethodPut, coll+it.name, bytes.NewReader(it.data))
				if err != nil {
					errs <- err
					continue
				}
				req.Header.Set("Content-Type", "text/calendar; charset=utf-8")
				req.SetBasicAuth(srv.Username, srv.Password)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					errs <- fmt.Errorf("PUT %s: %s", it.name, resp.Status)
				}
			}
		})
	}
	for name, data := range objs {
		work <- item{name, data}
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// deleteMany deletes objects upstream, as another client.
func deleteMany(t *testing.T, srv *davServer, coll string, names []string) {
	t.Helper()
	for _, n := range names {
		srv.Delete(coll + n)
	}
}

// upstreamObjects reads the whole upstream collection through a fresh
// source into a fresh store: what a new calgate would see. It returns the
// objects by name.
func upstreamObjects(t *testing.T, srv *davServer, coll string) map[string]cache.Object {
	t.Helper()
	store, err := cache.Open(filepath.Join(t.TempDir(), "verify.db"), cache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateCalendar(cache.Calendar{User: davUser, ID: davCal, Kind: "caldav", Source: "verify"}); err != nil {
		t.Fatal(err)
	}
	src := NewCalDAV(CalDAVOptions{ID: "verify", User: davUser, Calendar: davCal, URL: coll, Username: srv.Username,
		Password: srv.Password, Client: &http.Client{Timeout: 30 * time.Second}, Store: store, DisableSyncCollection: true})
	res, err := src.Sync(context.Background())
	if err != nil || res.Quarantined != 0 {
		t.Fatalf("reading the upstream: %+v, %v", res, err)
	}
	objs, err := store.ListObjects(davUser, davCal)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]cache.Object, len(objs))
	for _, o := range objs {
		m[o.Name] = o
	}
	return m
}

// checkConverged fails unless the local calendar and the upstream have
// the same objects with the same content and the local copies know the
// upstream ETags, with no UID twice and an empty outbox. It returns the
// number of objects.
func (e *faultEnv) checkConverged() int {
	e.t.Helper()
	up := upstreamObjects(e.t, e.srv, e.coll)
	local := davMust(e.store.ListObjects(davUser, davCal))
	uids := map[string]string{}
	for _, o := range local {
		if other, dup := uids[o.UID]; dup {
			e.t.Errorf("UID %s twice locally: %s and %s", o.UID, other, o.Name)
		}
		uids[o.UID] = o.Name
		u, ok := up[o.Name]
		switch {
		case !ok:
			e.t.Errorf("%s is local only", o.Name)
		case !sameContent(o.Data, u.Data):
			e.t.Errorf("%s differs:\nlocal:\n%s\nupstream:\n%s", o.Name, o.Data, u.Data)
		case o.UpstreamETag != u.UpstreamETag:
			e.t.Errorf("%s: local copy has upstream ETag %q, the upstream %q", o.Name, o.UpstreamETag, u.UpstreamETag)
		}
	}
	upUIDs := map[string]bool{}
	for name, u := range up {
		if upUIDs[u.UID] {
			e.t.Errorf("UID %s twice upstream", u.UID)
		}
		upUIDs[u.UID] = true
		if _, ok := uids[u.UID]; !ok {
			e.t.Errorf("%s is upstream only", name)
		}
	}
	if n := len(davMust(e.store.PendingOutbox(davUser, davCal))); n != 0 {
		e.t.Errorf("%d outbox entries left", n)
	}
	return len(local)
}

func (e *faultEnv) conflicts() []cache.Conflict {
	return davMust(e.store.ListConflicts(davUser))
}

// eventSet returns the objects "<prefix>NNN.ics" with UIDs <prefix>NNN
// (the name Radicale gives an object uploaded with its collection).
func eventSet(prefix, summary string, from, to int) map[string][]byte {
	m := make(map[string][]byte, to-from)
	for i := from; i < to; i++ {
		m[fmt.Sprintf("%s%03d.ics", prefix, i)] = davEvent(fmt.Sprintf("%s%03d", prefix, i), summary)
	}
	return m
}

// replaceUpstream makes objs (from eventSet) the whole content of the
// collection, as another client would: on Radicale with one PUT of the
// collection (it replaces the collection, and is much quicker than one
// PUT per object on a loaded machine); elsewhere object by object, into
// a collection that must be empty.
func replaceUpstream(t *testing.T, srv *davServer, coll string, objs map[string][]byte) {
	t.Helper()
	if srv.Kind != "radicale" {
		putMany(t, srv, coll, objs)
		return
	}
	var b bytes.Buffer
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//test//EN\r\n")
	for _, name := range slices.Sorted(maps.Keys(objs)) {
		data := objs[name]
		start := bytes.Index(data, []byte("BEGIN:VEVENT"))
		end := bytes.Index(data, []byte("END:VCALENDAR"))
		b.Write(data[start:end])
	}
	b.WriteString("END:VCALENDAR\r\n")
	if r := srv.Do(http.MethodPut, coll, nil, b.Bytes()); r.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s\n%s", coll, r.Status, r.Body)
	}
}

func eventNames(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d.ics", prefix, i))
	}
	return out
}

// TestMatrixUpstreamFaults: nothing acknowledged is lost, nothing is
// duplicated, losers are preserved, and no mass deletion goes through
// unconfirmed, whatever the upstream does.
func TestMatrixUpstreamFaults(t *testing.T) {
	for _, kind := range davKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := startDAVServer(t, kind)
			t.Run("down for 100 writes", func(t *testing.T) { matrixDownWrites(t, srv) })
			t.Run("suddenly empty", func(t *testing.T) { matrixSuddenlyEmpty(t, srv) })
			t.Run("etag changes mid-sync", func(t *testing.T) { matrixETagMidSync(t, srv) })
			if kind != "radicale" {
				return // the big cases on Radicale only: they take the longest
			}
			t.Run("killed mid-sync", func(t *testing.T) { matrixKilledMidSync(t, srv) })
		})
	}
}

// TestMatrixUpstreamFaultsBothSides is case (e), the longest, on a
// Radicale of its own: 400 objects edited on both sides.
func TestMatrixUpstreamFaultsBothSides(t *testing.T) {
	matrixBothSides(t, startDAVServer(t, "radicale"))
}

// (a) The upstream is down while clients make 100 writes (60 creations,
// 30 changes, 10 deletions); calgate acknowledges them (cache + outbox)
// and keeps trying; once the upstream is back, each write is accepted
// upstream exactly once.
func matrixDownWrites(t *testing.T, srv *davServer) {
	start := time.Now()
	e := newFaultEnv(t, srv, nil)
	replaceUpstream(t, srv, e.coll, eventSet("e", "v1", 0, 40))
	if res := e.mustSync(); res.Put != 40 {
		t.Fatalf("import: %+v", res)
	}
	e.rec.reset()

	srv.Stop()
	want := map[string]string{} // accepted write -> the object's data ("" for a deletion)
	for name, data := range eventSet("new", "created offline", 0, 60) {
		e.localPut(name, data)
		want["PUT "+name] = string(data)
	}
	for name, data := range eventSet("e", "changed offline", 0, 30) {
		e.localPut(name, data)
		want["PUT "+name] = string(data)
	}
	for _, name := range eventNames("e", 30, 40) {
		e.localDelete(name)
		want["DELETE "+name] = ""
	}
	if n := len(davMust(e.store.PendingOutbox(davUser, davCal))); n != 100 {
		t.Fatalf("%d outbox entries after 100 writes, want 100", n)
	}
	// calgate keeps trying while the upstream is down.
	for range 3 {
		if _, err := e.syncNow(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("sync with the upstream down: %v, want ErrUnavailable", err)
		}
	}
	if st := davMust(e.store.GetSource("up")); st.Failures != 3 || st.LastError == "" {
		t.Errorf("state while down: %d failures, last error %q", st.Failures, st.LastError)
	}
	if n := e.count(); n != 90 {
		t.Errorf("%d objects served from the cache while down, want 90", n)
	}
	_, tries := e.rec.reset()

	srv.Start()
	back := time.Now()
	res := e.mustSync()
	replay := time.Since(back)
	accepted, requests := e.rec.reset()
	for w := range want {
		path := strings.TrimPrefix(strings.TrimPrefix(w, "PUT "), "DELETE ")
		method, _, _ := strings.Cut(w, " ")
		if n := accepted[method+" "+pathOf(e, path)]; n != 1 {
			t.Errorf("%s accepted upstream %d times, want once", w, n)
		}
	}
	total := 0
	for _, n := range accepted {
		total += n
	}
	if total != 100 {
		t.Errorf("%d writes accepted upstream, want 100: %v", total, accepted)
	}
	if res.Put != 0 || res.Deleted != 0 {
		t.Errorf("the sync after the replay changed the cache: %+v", res)
	}
	n := e.checkConverged()
	if n != 90 {
		t.Errorf("%d objects, want 90", n)
	}
	for w, data := range want {
		name := strings.TrimPrefix(strings.TrimPrefix(w, "PUT "), "DELETE ")
		o, ok := e.local(name)
		if data == "" && ok || data != "" && (!ok || string(o.Data) != data) {
			t.Errorf("%s: local copy is not the client's write", w)
		}
	}
	if c := e.conflicts(); len(c) != 0 {
		t.Errorf("%d conflicts, want none", len(c))
	}
	t.Logf("MATRIX upstream-faults: %s/down: 100 writes acknowledged while down, 3 failed syncs (%d requests), "+
		"%d replayed exactly once in %v (%d requests), %d objects after, 0 lost, 0 duplicated; case %v",
		srv.Kind, tries, total, replay.Round(time.Millisecond), requests, n, time.Since(start).Round(time.Millisecond))
}

// pathOf returns the upstream path of object name.
func pathOf(e *faultEnv, name string) string {
	u := e.url(name)
	return strings.TrimPrefix(u, e.srv.Base)
}

// (b) The upstream process is killed while a sync of 300 objects is
// fetching them (at the second calendar-multiget), and again during an
// incremental sync; each time the sync fails as a whole, the cache keeps
// what it had, and the sync after the restart completes.
func matrixKilledMidSync(t *testing.T, srv *davServer) {
	start := time.Now()
	e := newFaultEnv(t, srv, nil)
	replaceUpstream(t, srv, e.coll, eventSet("k", "v1", 0, 300))

	killAt := func(n int) {
		multigets := 0
		e.rec.setHook(func(r *http.Request) {
			if !isMultiget(r) {
				return
			}
			if multigets++; multigets == n {
				srv.Stop()
			}
		})
	}
	for round, tc := range []struct {
		name      string
		killAt    int
		wantCount int
		change    func()
	}{
		{name: "initial import", killAt: 2, wantCount: 300},
		{name: "incremental", killAt: 1, wantCount: 300, change: func() {
			putMany(t, srv, e.coll, eventSet("k", "v2", 0, 20))
			deleteMany(t, srv, e.coll, eventNames("k", 290, 300))
			putMany(t, srv, e.coll, eventSet("k", "v1", 300, 310))
		}},
	} {
		if tc.change != nil {
			tc.change()
		}
		before := e.count()
		rev := e.revision()
		st0, err := e.store.GetSource("up")
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			t.Fatal(err)
		}
		killAt(tc.killAt)
		t0 := time.Now()
		_, err = e.syncNow()
		failed := time.Since(t0)
		e.rec.setHook(nil)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: sync with the upstream killed: %v, want ErrUnavailable", tc.name, err)
		}
		if n := e.count(); n != before || e.revision() != rev {
			t.Fatalf("%s: the failed sync changed the cache: %d objects (had %d)", tc.name, n, before)
		}
		if st := davMust(e.store.GetSource("up")); st.SyncToken != st0.SyncToken || st.LastError == "" {
			t.Fatalf("%s: state after the kill: token %q (was %q), last error %q", tc.name, st.SyncToken, st0.SyncToken, st.LastError)
		}
		srv.Start()
		t1 := time.Now()
		res := e.mustSync()
		took := time.Since(t1)
		if n := e.checkConverged(); n != tc.wantCount {
			t.Errorf("%s: %d objects after the restart, want %d", tc.name, n, tc.wantCount)
		}
		if res := e.mustSync(); !res.NotModified {
			t.Errorf("%s: sync after convergence: %+v, want not modified", tc.name, res)
		}
		t.Logf("MATRIX upstream-faults: %s/killed mid-sync round %d (%s): killed at multiget %d, failed after %v, cache untouched; "+
			"after restart %+v in %v, %d objects, 0 lost, 0 duplicated",
			srv.Kind, round+1, tc.name, tc.killAt, failed.Round(time.Millisecond), res, took.Round(time.Millisecond), tc.wantCount)
	}
	t.Logf("MATRIX upstream-faults: %s/killed mid-sync: case %v", srv.Kind, time.Since(start).Round(time.Millisecond))
}

// (c) The upstream collection is suddenly empty: emptied object by object,
// or replaced by a new empty collection. The mass-delete guard holds the
// deletions, the cache keeps every object, and the source's status says
// what happened and what to do. If the objects come back before the next
// sync, nothing is deleted; if the next sync finds the same, the
// deletion was meant and is applied (DESIGN: held until confirmed).
func matrixSuddenlyEmpty(t *testing.T, srv *davServer) {
	start := time.Now()
	const n = 24
	for _, how := range []string{"emptied", "replaced"} {
		t.Run(how, func(t *testing.T) {
			e := newFaultEnv(t, srv, nil)
			objs := eventSet("s", "v1", 0, n)
			replaceUpstream(t, srv, e.coll, objs)
			e.mustSync()
			empty := func() {
				if how == "emptied" {
					deleteMany(t, srv, e.coll, eventNames("s", 0, n))
					return
				}
				srv.Delete(e.coll)
				if r := srv.Do("MKCALENDAR", e.coll, nil, nil); r.StatusCode != http.StatusCreated {
					t.Fatalf("MKCALENDAR: %s", r.Status)
				}
			}
			held := func(step string) {
				t.Helper()
				res := e.mustSync()
				if res.HeldDeletes != n || res.Deleted != 0 {
					t.Fatalf("%s: sync of the empty upstream: %+v, want %d deletions held", step, res, n)
				}
				if c := e.count(); c != n {
					t.Fatalf("%s: %d objects left in the cache, want %d", step, c, n)
				}
				st := davMust(e.store.GetSource("up"))
				if st.HeldDeletes != n || !strings.Contains(st.LastError, "held") ||
					!strings.Contains(st.LastError, fmt.Sprint(n)) || !strings.Contains(st.LastError, "restore") {
					t.Fatalf("%s: status after the held deletion: held %d, message %q; want it to say what was held and what to do",
						step, st.HeldDeletes, st.LastError)
				}
				t.Logf("%s: status: %s", step, st.LastError)
			}

			empty()
			held("first")
			// The upstream is restored before the next sync: nothing is
			// deleted, and the status clears.
			replaceUpstream(t, srv, e.coll, objs)
			res := e.mustSync()
			if res.Deleted != 0 || res.HeldDeletes != 0 {
				t.Fatalf("sync after the restore: %+v", res)
			}
			if st := davMust(e.store.GetSource("up")); st.HeldDeletes != 0 || st.LastError != "" {
				t.Fatalf("status after the restore: held %d, %q", st.HeldDeletes, st.LastError)
			}
			if c := e.checkConverged(); c != n {
				t.Fatalf("%d objects after the restore, want %d", c, n)
			}

			// Emptied again and left so: the next sync confirms.
			empty()
			held("second")
			res = e.mustSync()
			if res.Deleted != n || e.count() != 0 {
				t.Fatalf("confirming sync: %+v with %d objects left", res, e.count())
			}
			t.Logf("MATRIX upstream-faults: %s/suddenly empty (%s): %d deletions held (cache kept %d), none applied after a restore, applied only on confirmation",
				srv.Kind, how, n, n)
		})
	}
	t.Logf("MATRIX upstream-faults: %s/suddenly empty: 2 cases, %v", srv.Kind, time.Since(start).Round(time.Millisecond))
}

// (d) Objects change upstream between the sync's listing and its
// calendar-multiget (another client writes at that moment; the recorder
// does it as the multiget goes out), one is deleted there, and a calgate
// client writes meanwhile. The sync stores what it fetched, the next one
// converges, and neither side's update is lost.
func matrixETagMidSync(t *testing.T, srv *davServer) {
	start := time.Now()
	for _, mode := range davSyncModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newFaultEnv(t, srv, mode.mod)
			replaceUpstream(t, srv, e.coll, eventSet("m", "v1", 0, 20))
			e.mustSync()
			putMany(t, srv, e.coll, eventSet("m", "v2", 0, 5)) // listed as changed by the next sync
			var once sync.Once
			localEdit := davEvent("m010", "local edit during the sync")
			e.rec.setHook(func(r *http.Request) {
				if !isMultiget(r) {
					return
				}
				once.Do(func() {
					for name, data := range eventSet("m", "v3", 0, 3) {
						if r := srv.Do(http.MethodPut, e.url(name), nil, data); r.StatusCode/100 != 2 {
							t.Errorf("PUT %s: %s", name, r.Status)
						}
					}
					if r := srv.Do(http.MethodDelete, e.url("m003.ics"), nil, nil); r.StatusCode/100 != 2 {
						t.Errorf("DELETE: %s", r.Status)
					}
					obj := davInspect(t, "m010.ics", localEdit)
					if _, _, err := e.store.PutObject(davUser, davCal, obj, cache.PutConditions{}); err != nil {
						t.Errorf("local write: %v", err)
					}
				})
			})
			first := e.mustSync()
			e.rec.setHook(nil)
			second := e.mustSync()
			third := e.mustSync()
			if n := e.checkConverged(); n != 19 {
				t.Errorf("%d objects, want 19", n)
			}
			for name := range eventSet("m", "", 0, 3) {
				if o, _ := e.local(name); !strings.Contains(string(o.Data), "SUMMARY:v3") {
					t.Errorf("%s: the mid-sync upstream update is lost:\n%s", name, o.Data)
				}
			}
			if o, _ := e.local("m004.ics"); !strings.Contains(string(o.Data), "SUMMARY:v2") {
				t.Errorf("m004: %s", o.Data)
			}
			if got := srv.Get(e.url("m010.ics")); !sameContent(got, localEdit) {
				t.Errorf("the local write made during the sync is not upstream:\n%s", got)
			}
			if c := e.conflicts(); len(c) != 0 {
				t.Errorf("conflicts: %+v", c)
			}
			t.Logf("MATRIX upstream-faults: %s/etag mid-sync (%s): 3 changed + 1 deleted between listing and multiget, 1 local write; "+
				"syncs %+v, %+v, %+v; converged, 0 lost", srv.Kind, mode.name, first, second, third)
		})
	}
	t.Logf("MATRIX upstream-faults: %s/etag mid-sync: 2 modes, %v", srv.Kind, time.Since(start).Round(time.Millisecond))
}

// (e) 400 objects edited on both sides while calgate does not sync: 100
// each of modify/modify, modify locally/delete upstream, delete
// locally/modify upstream, delete/delete. Under the default policy
// (upstream-wins; DESIGN.md §6, caldav_push.go): modify/modify keeps the
// upstream version and records the local one; a modification always
// survives a deletion on the other side, which is recorded; delete/delete
// leaves nothing and records nothing.
func matrixBothSides(t *testing.T, srv *davServer) {
	start := time.Now()
	e := newFaultEnv(t, srv, nil)
	replaceUpstream(t, srv, e.coll, eventSet("b", "base", 0, 400))
	if res := e.mustSync(); res.Put != 400 {
		t.Fatalf("import: %+v", res)
	}
	setup := time.Since(start)

	// Upstream side, as another client: the collection is replaced by
	// one without b100-b199 and b300-b399, and with b000-b099 and
	// b200-b299 changed.
	upstream := eventSet("b", "upstream edit", 0, 100)
	maps.Copy(upstream, eventSet("b", "upstream edit", 200, 300))
	replaceUpstream(t, srv, e.coll, upstream)
	// Local side, as calgate's clients.
	local := eventSet("b", "local edit", 0, 200)
	for name, data := range local {
		e.localPut(name, data)
	}
	for _, name := range eventNames("b", 200, 400) {
		e.localDelete(name)
	}
	if n := len(davMust(e.store.PendingOutbox(davUser, davCal))); n != 400 {
		t.Fatalf("%d outbox entries, want 400", n)
	}
	e.rec.reset()

	t0 := time.Now()
	res := e.mustSync()
	took := time.Since(t0)
	accepted, requests := e.rec.reset()

	byReason := map[string]int{}
	for _, c := range e.conflicts() {
		byReason[c.Kept+": "+c.Reason]++
		var i int
		fmt.Sscanf(c.Name, "b%03d.ics", &i)
		switch {
		case i < 100: // modify/modify: the local edit is the loser, kept
			if c.Kept != "upstream" || c.Reason != reasonBothChanged || string(c.LoserData) != string(local[c.Name]) {
				t.Errorf("modify/modify %s: conflict %s kept, %q, loser %q", c.Name, c.Kept, c.Reason, c.LoserData)
			}
		case i < 200: // local modification survives the upstream deletion
			if c.Kept != "local" || c.Reason != reasonDeletedUpstream || c.LoserData != nil {
				t.Errorf("modify/delete %s: conflict %s kept, %q", c.Name, c.Kept, c.Reason)
			}
		case i < 300: // upstream modification survives the local deletion
			if c.Kept != "upstream" || c.Reason != reasonDeletedLocally || c.LoserData != nil {
				t.Errorf("delete/modify %s: conflict %s kept, %q", c.Name, c.Kept, c.Reason)
			}
		default:
			t.Errorf("delete/delete %s: conflict recorded: %+v", c.Name, c)
		}
	}
	for reason, want := range map[string]int{
		"upstream: " + reasonBothChanged:    100,
		"local: " + reasonDeletedUpstream:   100,
		"upstream: " + reasonDeletedLocally: 100,
	} {
		if byReason[reason] != want {
			t.Errorf("%d conflicts %q, want %d (all: %v)", byReason[reason], reason, want, byReason)
		}
	}
	if n := len(e.conflicts()); n != 300 {
		t.Errorf("%d conflicts, want 300", n)
	}
	// Only the 100 local modifications of objects deleted upstream are
	// written upstream (re-created); the other 300 pushes end in the
	// upstream's version or in nothing.
	total := 0
	for w, n := range accepted {
		total += n
		var i int
		fmt.Sscanf(w[strings.LastIndex(w, "/")+1:], "b%03d.ics", &i)
		if n != 1 || !strings.HasPrefix(w, "PUT ") || i < 100 || i >= 200 {
			t.Errorf("accepted upstream: %s %d times", w, n)
		}
	}
	if total != 100 {
		t.Errorf("%d writes accepted upstream, want 100", total)
	}
	if n := e.checkConverged(); n != 300 {
		t.Errorf("%d objects, want 300", n)
	}
	for _, name := range eventNames("b", 0, 400) {
		var i int
		fmt.Sscanf(name, "b%03d.ics", &i)
		o, ok := e.local(name)
		want := map[int]string{0: "upstream edit", 1: "local edit", 2: "upstream edit"}[i/100]
		switch {
		case i >= 300 && ok:
			t.Errorf("%s deleted on both sides is back", name)
		case i < 300 && (!ok || !strings.Contains(string(o.Data), "SUMMARY:"+want)):
			t.Errorf("%s: want the %q version, have %v %s", name, want, ok, o.Data)
		}
	}
	after := e.mustSync()
	if after.Put != 0 || after.Deleted != 0 || after.HeldDeletes != 0 {
		t.Errorf("sync after the resolution: %+v", after)
	}
	t.Logf("MATRIX upstream-faults: %s/both sides edited: 400 items (100 each modify/modify, modify/delete, delete/modify, delete/delete); "+
		"conflicts recorded %v (total %d), %d writes accepted upstream, 300 objects after, 0 duplicated; "+
		"resolution sync %+v in %v (%d requests), setup %v, case %v",
		srv.Kind, byReason, len(e.conflicts()), total, res, took.Round(time.Millisecond), requests,
		setup.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// isMultiget reports whether r is a calendar-multiget REPORT (read from a
// copy of its body).
func isMultiget(r *http.Request) bool {
	if r.Method != "REPORT" || r.GetBody == nil {
		return false
	}
	body, err := r.GetBody()
	if err != nil {
		return false
	}
	defer body.Close()
	var b bytes.Buffer
	b.ReadFrom(body)
	return strings.Contains(b.String(), "calendar-multiget")
}
