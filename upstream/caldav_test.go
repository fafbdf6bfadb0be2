package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

const (
	davUser = "u"
	davCal  = "mirror"
)

// caldavEnv is one real upstream collection, a store with a mirrored
// calendar, and the source between them.
type caldavEnv struct {
	t     *testing.T
	srv   *davServer
	coll  string // collection URL
	store *cache.Store
	src   *CalDAVSource
	opts  CalDAVOptions
}

func newCalDAVEnv(t *testing.T, srv *davServer, mod func(*CalDAVOptions)) *caldavEnv {
	t.Helper()
	coll := srv.NewCalendar(fmt.Sprintf("c%d", time.Now().UnixNano()))
	store, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateCalendar(cache.Calendar{User: davUser, ID: davCal, Kind: "caldav", Source: "up"}); err != nil {
		t.Fatal(err)
	}
	opts := CalDAVOptions{
		ID: "up", User: davUser, Calendar: davCal,
		URL: coll, Username: srv.Username, Password: srv.Password,
		Client: &http.Client{Timeout: 30 * time.Second},
		Store:  store,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mod != nil {
		mod(&opts)
	}
	return &caldavEnv{t: t, srv: srv, coll: coll, store: store, src: NewCalDAV(opts), opts: opts}
}

func (e *caldavEnv) sync() Result {
	e.t.Helper()
	res, err := e.src.Sync(context.Background())
	if err != nil {
		e.t.Fatalf("Sync: %v\n%s", err, e.srv.Log())
	}
	return res
}

// pushAll pushes every due outbox entry, as the engine would, until the
// outbox is empty (a push may meet an entry written meanwhile).
func (e *caldavEnv) pushAll() {
	e.t.Helper()
	for range 5 {
		entries, err := e.store.DueOutbox(time.Now(), 0)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(entries) == 0 {
			return
		}
		for _, en := range entries {
			if err := e.src.Push(context.Background(), en); err != nil {
				e.t.Fatalf("Push %s %s: %v\n%s", en.Op, en.Name, err, e.srv.Log())
			}
		}
	}
	left, _ := e.store.PendingOutbox("", "")
	e.t.Fatalf("outbox not empty after pushes: %+v", left)
}

// localPut writes an object as a client of calgate would.
func (e *caldavEnv) localPut(name string, data []byte) {
	e.t.Helper()
	obj := davInspect(e.t, name, data)
	if _, _, err := e.store.PutObject(davUser, davCal, obj, cache.PutConditions{}); err != nil {
		e.t.Fatalf("PutObject %s: %v", name, err)
	}
}

func (e *caldavEnv) localDelete(name string) {
	e.t.Helper()
	if err := e.store.DeleteObject(davUser, davCal, name, ""); err != nil {
		e.t.Fatalf("DeleteObject %s: %v", name, err)
	}
}

func (e *caldavEnv) local(name string) (cache.Object, bool) {
	e.t.Helper()
	o, err := e.store.GetObject(davUser, davCal, name)
	if errors.Is(err, cache.ErrNotFound) {
		return cache.Object{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return o, true
}

func (e *caldavEnv) revision() uint64 {
	e.t.Helper()
	c, err := e.store.GetCalendar(davUser, davCal)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Revision
}

func (e *caldavEnv) count() int {
	e.t.Helper()
	objs, err := e.store.ListObjects(davUser, davCal)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(objs)
}

// url returns the upstream URL of resource name.
func (e *caldavEnv) url(name string) string { return e.coll + url.PathEscape(name) }

func davInspect(t *testing.T, name string, data []byte) cache.Object {
	t.Helper()
	cal, err := ical.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	info, err := (&ical.Zones{}).Inspect(cal)
	if err != nil {
		t.Fatal(err)
	}
	return cache.Object{Name: name, UID: info.UID, Component: info.Component, Start: info.Start, End: info.End, Data: data}
}

// davEvent returns a VEVENT object; summary tells versions apart.
func davEvent(uid, summary string) []byte {
	return []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calgate//test//EN\r\n" +
		"BEGIN:VEVENT\r\nUID:" + uid + "\r\nDTSTAMP:20260101T000000Z\r\n" +
		"DTSTART:20260310T090000Z\r\nDTEND:20260310T100000Z\r\n" +
		"SUMMARY:" + summary + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
}

// eachDAVServer runs f against a fresh Radicale and a fresh Xandikos.
func eachDAVServer(t *testing.T, f func(t *testing.T, srv *davServer)) {
	for _, kind := range davKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, startDAVServer(t, kind))
		})
	}
}

// davSyncModes are the two pull paths.
var davSyncModes = []struct {
	name string
	mod  func(*CalDAVOptions)
}{
	{"sync-collection", nil},
	{"ctag-etag", func(o *CalDAVOptions) { o.DisableSyncCollection = true }},
}

// (a) An initial import of 200+ events: every object arrives with the
// bytes the upstream serves, under the name of its href.
func TestCalDAVInitialImport(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, mode := range davSyncModes {
			t.Run(mode.name, func(t *testing.T) {
				e := newCalDAVEnv(t, srv, mode.mod)
				names := []string{"name with space.ics", "ümlaut+plus.ics"}
				for i := range 205 {
					names = append(names, fmt.Sprintf("ev-%03d.ics", i))
				}
				for i, n := range names {
					srv.Put(e.url(n), davEvent(fmt.Sprintf("uid-%d@test", i), "event "+n))
				}
				res := e.sync()
				if res.Put != len(names) || res.Quarantined != 0 || res.Deleted != 0 {
					t.Fatalf("first sync: %+v, want %d puts", res, len(names))
				}
				if n := e.count(); n != len(names) {
					t.Fatalf("%d local objects, want %d", n, len(names))
				}
				for _, n := range names {
					o, ok := e.local(n)
					if !ok {
						t.Fatalf("%s missing locally", n)
					}
					if want := srv.Get(e.url(n)); string(o.Data) != string(want) {
						t.Fatalf("%s: local bytes differ from upstream:\n%q\n%q", n, o.Data, want)
					}
					if o.UpstreamHref == "" || o.UpstreamETag == "" || strings.HasPrefix(o.UpstreamETag, `"`) {
						t.Fatalf("%s: upstream fields %q %q", n, o.UpstreamHref, o.UpstreamETag)
					}
				}
				rev := e.revision()
				if res := e.sync(); !res.NotModified || res.Put != 0 {
					t.Fatalf("second sync: %+v, want not modified", res)
				}
				if e.revision() != rev {
					t.Fatal("second sync changed the calendar")
				}
			})
		}
	})
}

// (b) An upstream change, deletion and addition is visible after one
// sync, on both pull paths.
func TestCalDAVUpstreamChanges(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, mode := range davSyncModes {
			t.Run(mode.name, func(t *testing.T) {
				e := newCalDAVEnv(t, srv, mode.mod)
				for i := range 5 {
					srv.Put(e.url(fmt.Sprintf("e%d.ics", i)), davEvent(fmt.Sprintf("u%d", i), "v1"))
				}
				if res := e.sync(); res.Put != 5 {
					t.Fatalf("import: %+v", res)
				}
				srv.Put(e.url("e1.ics"), davEvent("u1", "v2"))
				srv.Delete(e.url("e2.ics"))
				srv.Put(e.url("new.ics"), davEvent("u-new", "v1"))
				res := e.sync()
				if res.Put != 2 || res.Deleted != 1 || res.NotModified {
					t.Fatalf("sync after upstream changes: %+v, want 2 puts, 1 delete", res)
				}
				if o, _ := e.local("e1.ics"); !strings.Contains(string(o.Data), "SUMMARY:v2") {
					t.Fatalf("e1 not updated: %s", o.Data)
				}
				if _, ok := e.local("e2.ics"); ok {
					t.Fatal("e2 not deleted")
				}
				if _, ok := e.local("new.ics"); !ok {
					t.Fatal("new.ics not imported")
				}
				if res := e.sync(); !res.NotModified {
					t.Fatalf("third sync: %+v, want not modified", res)
				}
			})
		}
	})
}

// (c) A local write reaches the upstream through Push, and the next sync
// changes nothing.
func TestCalDAVPushLocalWrites(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, mode := range davSyncModes {
			t.Run(mode.name, func(t *testing.T) {
				e := newCalDAVEnv(t, srv, mode.mod)
				for i := range 3 {
					srv.Put(e.url(fmt.Sprintf("e%d.ics", i)), davEvent(fmt.Sprintf("u%d", i), "v1"))
				}
				e.sync()

				created := davEvent("u-local", "created locally")
				changed := davEvent("u1", "changed locally")
				e.localPut("local new.ics", created)
				e.localPut("e1.ics", changed)
				e.localDelete("e2.ics")
				if n := len(davMust(e.store.PendingOutbox(davUser, davCal))); n != 3 {
					t.Fatalf("%d outbox entries, want 3", n)
				}
				e.pushAll()

				if got := srv.Get(e.url("local new.ics")); !sameContent(got, created) {
					t.Fatalf("new object upstream:\n%s", got)
				}
				if got := srv.Get(e.url("e1.ics")); !sameContent(got, changed) {
					t.Fatalf("changed object upstream:\n%s", got)
				}
				if got := srv.Get(e.url("e2.ics")); got != nil {
					t.Fatalf("deleted object still upstream:\n%s", got)
				}
				o, _ := e.local("local new.ics")
				if o.UpstreamHref == "" || o.UpstreamETag == "" {
					t.Fatalf("pushed object without upstream fields: %+v", o)
				}

				rev := e.revision()
				res := e.sync()
				if res.Put != 0 || res.Deleted != 0 || res.Quarantined != 0 {
					t.Fatalf("sync after push: %+v, want no change", res)
				}
				if e.revision() != rev {
					t.Fatal("sync after push changed the calendar")
				}
				if o, _ := e.local("e1.ics"); string(o.Data) != string(changed) {
					t.Fatalf("local bytes replaced after push:\n%s", o.Data)
				}
			})
		}
	})
}

// A push whose completion was lost (crash after the PUT) and an entry
// replaced while its push was on the way are replayed without a
// duplicate or a false conflict.
func TestCalDAVPushReplay(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		e := newCalDAVEnv(t, srv, nil)
		srv.Put(e.url("e0.ics"), davEvent("u0", "v1"))
		e.sync()

		// The PUT reached the upstream, the completion did not.
		data := davEvent("u-new", "new")
		e.localPut("new.ics", data)
		srv.Put(e.url("new.ics"), data)
		e.localPut("e0.ics", davEvent("u0", "v2"))
		srv.Put(e.url("e0.ics"), davEvent("u0", "v2"))
		e.pushAll()

		// A second local write while the first one is being pushed.
		e.localPut("e0.ics", davEvent("u0", "v3"))
		first := davMust(e.store.DueOutbox(time.Now(), 0))
		e.localPut("e0.ics", davEvent("u0", "v4"))
		if err := e.src.Push(context.Background(), first[0]); err != nil {
			t.Fatal(err)
		}
		e.pushAll()

		if got := srv.Get(e.url("e0.ics")); !sameContent(got, davEvent("u0", "v4")) {
			t.Fatalf("upstream has\n%s", got)
		}
		if c := davMust(e.store.ListConflicts(davUser)); len(c) != 0 {
			t.Fatalf("conflicts recorded: %+v", c)
		}
		if res := e.sync(); res.Put != 0 || res.Deleted != 0 {
			t.Fatalf("sync after replay: %+v", res)
		}
		if n := e.count(); n != 2 {
			t.Fatalf("%d objects, want 2", n)
		}
	})
}

// (d) Conflicts: the same object changed on both sides, under each
// policy, and delete against modify both ways. The loser is recorded.
func TestCalDAVConflicts(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		setup := func(t *testing.T, mod func(*CalDAVOptions)) *caldavEnv {
			e := newCalDAVEnv(t, srv, mod)
			srv.Put(e.url("e.ics"), davEvent("u", "base"))
			e.sync()
			return e
		}
		conflicts := func(t *testing.T, e *caldavEnv) []cache.Conflict {
			cs := davMust(e.store.ListConflicts(davUser))
			if len(cs) != 1 {
				t.Fatalf("%d conflicts, want 1: %+v", len(cs), cs)
			}
			return cs
		}

		t.Run("upstream-wins", func(t *testing.T) {
			e := setup(t, nil)
			srv.Put(e.url("e.ics"), davEvent("u", "upstream edit"))
			localData := davEvent("u", "local edit")
			e.localPut("e.ics", localData)
			e.pushAll()
			upstream := srv.Get(e.url("e.ics"))
			if !strings.Contains(string(upstream), "upstream edit") {
				t.Fatalf("upstream overwritten:\n%s", upstream)
			}
			if o, _ := e.local("e.ics"); string(o.Data) != string(upstream) {
				t.Fatalf("local is not the upstream version:\n%s", o.Data)
			}
			c := conflicts(t, e)[0]
			if c.Kept != "upstream" || string(c.LoserData) != string(localData) || c.Name != "e.ics" {
				t.Fatalf("conflict %+v", c)
			}
			if res := e.sync(); res.Put != 0 {
				t.Fatalf("sync after conflict: %+v", res)
			}
		})

		t.Run("local-wins", func(t *testing.T) {
			e := setup(t, func(o *CalDAVOptions) { o.Conflict = ConflictLocalWins })
			srv.Put(e.url("e.ics"), davEvent("u", "upstream edit"))
			upstreamData := srv.Get(e.url("e.ics"))
			localData := davEvent("u", "local edit")
			e.localPut("e.ics", localData)
			e.pushAll()
			if got := srv.Get(e.url("e.ics")); !sameContent(got, localData) {
				t.Fatalf("upstream has\n%s", got)
			}
			if o, _ := e.local("e.ics"); string(o.Data) != string(localData) {
				t.Fatalf("local replaced:\n%s", o.Data)
			}
			c := conflicts(t, e)[0]
			if c.Kept != "local" || string(c.LoserData) != string(upstreamData) {
				t.Fatalf("conflict %+v", c)
			}
			if res := e.sync(); res.Put != 0 || res.Deleted != 0 {
				t.Fatalf("sync after conflict: %+v", res)
			}
		})

		for _, policy := range []string{ConflictUpstreamWins, ConflictLocalWins} {
			mod := func(o *CalDAVOptions) { o.Conflict = policy }
			t.Run("deleted-locally-modified-upstream/"+policy, func(t *testing.T) {
				e := setup(t, mod)
				srv.Put(e.url("e.ics"), davEvent("u", "upstream edit"))
				e.localDelete("e.ics")
				e.pushAll()
				upstream := srv.Get(e.url("e.ics"))
				if !strings.Contains(string(upstream), "upstream edit") {
					t.Fatalf("upstream lost its modification:\n%s", upstream)
				}
				if o, ok := e.local("e.ics"); !ok || string(o.Data) != string(upstream) {
					t.Fatalf("modification not restored locally: %v %s", ok, o.Data)
				}
				c := conflicts(t, e)[0]
				if c.Kept != "upstream" || c.LoserData != nil || c.Reason != reasonDeletedLocally {
					t.Fatalf("conflict %+v", c)
				}
				if res := e.sync(); res.Put != 0 || res.Deleted != 0 {
					t.Fatalf("sync after conflict: %+v", res)
				}
			})
			t.Run("deleted-upstream-modified-locally/"+policy, func(t *testing.T) {
				e := setup(t, mod)
				srv.Delete(e.url("e.ics"))
				localData := davEvent("u", "local edit")
				e.localPut("e.ics", localData)
				e.pushAll()
				if got := srv.Get(e.url("e.ics")); !sameContent(got, localData) {
					t.Fatalf("modification not re-created upstream:\n%s", got)
				}
				if o, _ := e.local("e.ics"); string(o.Data) != string(localData) {
					t.Fatalf("local replaced:\n%s", o.Data)
				}
				c := conflicts(t, e)[0]
				if c.Kept != "local" || c.LoserData != nil || c.Reason != reasonDeletedUpstream {
					t.Fatalf("conflict %+v", c)
				}
				if res := e.sync(); res.Put != 0 || res.Deleted != 0 {
					t.Fatalf("sync after conflict: %+v", res)
				}
			})
		}
	})
}

// (e) An expired or garbage sync token makes a full resync, without
// duplicates, that still sees the changes made meanwhile.
func TestCalDAVBadSyncToken(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, token := range []string{"garbage", "http://radicale.org/ns/sync/0123456789abcdef", "1111111111111111111111111111111111111111"} {
			t.Run(token, func(t *testing.T) {
				e := newCalDAVEnv(t, srv, nil)
				for i := range 10 {
					srv.Put(e.url(fmt.Sprintf("e%d.ics", i)), davEvent(fmt.Sprintf("u%d", i), "v1"))
				}
				e.sync()
				st := davMust(e.store.GetSource("up"))
				st.SyncToken = token
				if err := e.store.PutSource(st); err != nil {
					t.Fatal(err)
				}
				srv.Put(e.url("e3.ics"), davEvent("u3", "v2"))
				srv.Delete(e.url("e4.ics"))
				res := e.sync()
				if res.Put != 1 || res.Deleted != 1 || res.Unchanged != 8 {
					t.Fatalf("resync: %+v, want 1 put, 1 delete, 8 unchanged", res)
				}
				objs := davMust(e.store.ListObjects(davUser, davCal))
				uids := map[string]bool{}
				for _, o := range objs {
					if uids[o.UID] {
						t.Fatalf("duplicate UID %s", o.UID)
					}
					uids[o.UID] = true
				}
				if len(objs) != 9 {
					t.Fatalf("%d objects, want 9", len(objs))
				}
				if st := davMust(e.store.GetSource("up")); st.SyncToken == token || st.SyncToken == "" {
					t.Fatalf("token not replaced: %q", st.SyncToken)
				}
				if res := e.sync(); !res.NotModified {
					t.Fatalf("sync after resync: %+v", res)
				}
			})
		}
	})
}

// An upstream object calgate cannot store is quarantined; the others
// arrive, and the quarantine clears once the object is fixed.
func TestCalDAVQuarantine(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, mode := range davSyncModes {
			t.Run(mode.name, func(t *testing.T) {
				e := newCalDAVEnv(t, srv, mode.mod)
				srv.Put(e.url("good.ics"), davEvent("good", "fine"))
				// Both servers accept an iTIP message; RFC 4791 §4.1 does not.
				bad := strings.Replace(string(davEvent("bad", "itip")), "VERSION:2.0\r\n", "VERSION:2.0\r\nMETHOD:REQUEST\r\n", 1)
				srv.Put(e.url("bad.ics"), []byte(bad))
				res := e.sync()
				if res.Put != 1 || res.Quarantined != 1 {
					t.Fatalf("sync: %+v, want 1 put, 1 quarantined", res)
				}
				st := davMust(e.store.GetSource("up"))
				if len(st.Quarantine) != 1 || !strings.Contains(st.Quarantine[0], "bad.ics: ") || !strings.Contains(st.Quarantine[0], "METHOD") {
					t.Fatalf("quarantine %q", st.Quarantine)
				}
				if res := e.sync(); res.Put != 0 || res.Quarantined != 1 || res.NotModified {
					t.Fatalf("sync without change: %+v, want the quarantined object tried again", res)
				}
				srv.Put(e.url("bad.ics"), davEvent("bad", "fixed"))
				if res := e.sync(); res.Put != 1 || res.Quarantined != 0 {
					t.Fatalf("sync after fix: %+v", res)
				}
				if st := davMust(e.store.GetSource("up")); len(st.Quarantine) != 0 {
					t.Fatalf("quarantine %q", st.Quarantine)
				}
			})
		}
	})
}

// The mass-delete guard holds a sudden loss of most objects until the
// next sync confirms it.
func TestCalDAVMassDeleteGuard(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, mode := range davSyncModes {
			t.Run(mode.name, func(t *testing.T) {
				e := newCalDAVEnv(t, srv, mode.mod)
				for i := range 30 {
					srv.Put(e.url(fmt.Sprintf("e%d.ics", i)), davEvent(fmt.Sprintf("u%d", i), "v1"))
				}
				e.sync()
				for i := range 25 {
					srv.Delete(e.url(fmt.Sprintf("e%d.ics", i)))
				}
				srv.Put(e.url("e29.ics"), davEvent("u29", "v2"))
				res := e.sync()
				if res.HeldDeletes != 25 || res.Deleted != 0 || res.Put != 1 {
					t.Fatalf("first sync: %+v, want 25 held, 1 put", res)
				}
				if n := e.count(); n != 30 {
					t.Fatalf("%d objects after held deletion, want 30", n)
				}
				if st := davMust(e.store.GetSource("up")); st.HeldDeletes != 25 {
					t.Fatalf("state HeldDeletes %d", st.HeldDeletes)
				}
				res = e.sync()
				if res.Deleted != 25 || res.HeldDeletes != 0 {
					t.Fatalf("confirming sync: %+v, want 25 deleted", res)
				}
				if n := e.count(); n != 5 {
					t.Fatalf("%d objects, want 5", n)
				}
			})
		}
	})
}

// Faults a real server cannot be made to produce are simulated by an
// in-process server: statuses map to ErrUnavailable, Retry-After and
// permanent errors.
func TestCalDAVClassify(t *testing.T) {
	for _, tc := range []struct {
		status      int
		header      string
		unavailable bool
		retryAfter  time.Duration
		contains    string
	}{
		{http.StatusServiceUnavailable, "120", true, 2 * time.Minute, "503"},
		{http.StatusTooManyRequests, "", true, 0, "429"},
		{http.StatusInternalServerError, "", true, 0, "500"},
		{http.StatusUnauthorized, "", false, 0, "authentication failed"},
		{http.StatusForbidden, "", false, 0, "authentication failed"},
		{http.StatusNotFound, "", false, 0, "404"},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.status)
			}))
			defer ts.Close()
			src := NewCalDAV(CalDAVOptions{ID: "x", URL: ts.URL + "/cal", Client: ts.Client()})
			_, err := src.propfindCollection(context.Background())
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrUnavailable) != tc.unavailable {
				t.Fatalf("unavailable=%v: %v", !tc.unavailable, err)
			}
			var ra *RetryAfterError
			if got := errors.As(err, &ra); got != (tc.retryAfter > 0) || got && ra.After != tc.retryAfter {
				t.Fatalf("retry-after: %v", err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("error %q does not say %q", err, tc.contains)
			}
		})
	}
	t.Run("network", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		u := ts.URL
		ts.Close()
		src := NewCalDAV(CalDAVOptions{ID: "x", URL: u + "/cal/"})
		if _, err := src.propfindCollection(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("closed server: %v", err)
		}
	})
}

// The multistatus parser keeps calendar-data byte for byte (CRLF,
// entities, CDATA), which encoding/xml alone does not.
func TestParseMultistatus(t *testing.T) {
	body := "<?xml version='1.0' encoding='utf-8'?>\r\n" +
		`<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><response><href>/c/a%20b.ics</href>` +
		`<propstat><prop><getetag>"e1"</getetag><C:calendar-data>BEGIN:VCALENDAR` + "\r\n" + `X-A:a &amp; b &lt;&#13;&#x41;` + "\r\n" +
		`<![CDATA[X-B:<raw> & stuff]]>` + "\r\nEND:VCALENDAR\r\n" + `</C:calendar-data></prop><status>HTTP/1.1 200 OK</status></propstat>` +
		`<propstat><prop><C:other/></prop><status>HTTP/1.1 404 Not Found</status></propstat></response>` +
		`<response><href>/c/gone.ics</href><status>HTTP/1.1 404 Not Found</status></response>` +
		`<sync-token>tok-2</sync-token></multistatus>`
	ms, err := parseMultistatus([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if ms.SyncToken != "tok-2" || len(ms.Responses) != 2 {
		t.Fatalf("%+v", ms)
	}
	r := ms.Responses[0]
	want := "BEGIN:VCALENDAR\r\nX-A:a & b <\rA\r\nX-B:<raw> & stuff\r\nEND:VCALENDAR\r\n"
	if r.Href != "/c/a%20b.ics" || r.ETag != `"e1"` || !r.HasData || string(r.Data) != want {
		t.Fatalf("%+v\n%q", r, r.Data)
	}
	if ms.Responses[1].Status != 404 {
		t.Fatalf("%+v", ms.Responses[1])
	}
}

func davMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// roundTripFunc lets a test act between calgate and the upstream.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A client writes the object again while its previous version is being
// pushed: the later entry (still based on the older upstream ETag) meets
// calgate's own write upstream, which is not a conflict.
func TestCalDAVWriteDuringPush(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		var e *caldavEnv
		var once sync.Once
		e = newCalDAVEnv(t, srv, func(o *CalDAVOptions) {
			o.Client = &http.Client{Timeout: 30 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodPut {
					once.Do(func() { e.localPut("e.ics", davEvent("u", "v3")) })
				}
				return http.DefaultTransport.RoundTrip(r)
			})}
		})
		srv.Put(e.url("e.ics"), davEvent("u", "v1"))
		e.sync()
		e.localPut("e.ics", davEvent("u", "v2"))
		e.pushAll() // pushes v2, during which v3 is written; then v3
		if got := srv.Get(e.url("e.ics")); !sameContent(got, davEvent("u", "v3")) {
			t.Fatalf("upstream has\n%s", got)
		}
		if c := davMust(e.store.ListConflicts(davUser)); len(c) != 0 {
			t.Fatalf("conflicts recorded: %+v", c)
		}
		if o, _ := e.local("e.ics"); !strings.Contains(string(o.Data), "v3") {
			t.Fatalf("local has\n%s", o.Data)
		}
		if res := e.sync(); res.Put != 0 || res.Deleted != 0 {
			t.Fatalf("sync after push: %+v", res)
		}
	})
}

// A server that truncates sync-collection answers (507 on the collection,
// RFC 6578 §3.6) is asked again from the token it gave. No real server
// at hand truncates, so an in-process one does.
func TestCalDAVSyncTruncated(t *testing.T) {
	var (
		mu      sync.Mutex
		reports []string
	)
	objs := map[string][]byte{}
	for _, n := range []string{"a", "b", "c"} {
		objs["/cal/"+n+".ics"] = davEvent(n, n)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		resp := func(href string) string {
			return `<d:response><d:href>` + href + `</d:href><d:propstat><d:prop><d:getetag>"` + href + `"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`
		}
		var out string
		switch {
		case r.Method == "PROPFIND":
			out = `<d:response><d:href>/cal/</d:href><d:propstat><d:prop><d:sync-token>t2</d:sync-token>` +
				`<d:supported-report-set><d:supported-report><d:report><d:sync-collection/></d:report></d:supported-report></d:supported-report-set>` +
				`</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`
		case strings.Contains(string(body), "sync-collection"):
			mu.Lock()
			reports = append(reports, string(body))
			mu.Unlock()
			if strings.Contains(string(body), "<d:sync-token></d:sync-token>") {
				out = resp("/cal/a.ics") + resp("/cal/b.ics") +
					`<d:response><d:href>/cal/</d:href><d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response><d:sync-token>t1</d:sync-token>`
			} else {
				out = resp("/cal/c.ics") + `<d:sync-token>t2</d:sync-token>`
			}
		default: // calendar-multiget
			for href, data := range objs {
				if strings.Contains(string(body), href) {
					out += `<d:response><d:href>` + href + `</d:href><d:propstat><d:prop><d:getetag>"` + href + `"</d:getetag>` +
						`<c:calendar-data><![CDATA[` + string(data) + `]]></c:calendar-data></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`
				}
			}
		}
		w.WriteHeader(http.StatusMultiStatus)
		fmt.Fprint(w, `<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">`+out+`</d:multistatus>`)
	}))
	defer ts.Close()
	store, err := cache.Open(filepath.Join(t.TempDir(), "db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateCalendar(cache.Calendar{User: davUser, ID: davCal, Kind: "caldav", Source: "up"}); err != nil {
		t.Fatal(err)
	}
	src := NewCalDAV(CalDAVOptions{ID: "up", User: davUser, Calendar: davCal, URL: ts.URL + "/cal/", Client: ts.Client(), Store: store})
	res, err := src.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Put != 3 || len(reports) != 2 {
		t.Fatalf("%+v after %d reports", res, len(reports))
	}
	if st := davMust(store.GetSource("up")); st.SyncToken != "t2" {
		t.Fatalf("token %q", st.SyncToken)
	}
	for href, data := range objs {
		o, err := store.GetObject(davUser, davCal, strings.TrimPrefix(href, "/cal/"))
		if err != nil || string(o.Data) != string(data) || o.UpstreamETag != href {
			t.Fatalf("%s: %v %+v", href, err, o)
		}
	}
	if res, err := src.Sync(context.Background()); err != nil || !res.NotModified {
		t.Fatalf("second sync: %+v %v", res, err)
	}
}

// While the upstream is down, Sync and Push fail with ErrUnavailable and
// the write waits in the outbox; once it is back, the write arrives.
func TestCalDAVUpstreamDown(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		e := newCalDAVEnv(t, srv, nil)
		srv.Put(e.url("e.ics"), davEvent("u", "v1"))
		e.sync()
		srv.Stop()
		e.localPut("e.ics", davEvent("u", "offline edit"))
		if _, err := e.src.Sync(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Sync with the upstream down: %v", err)
		}
		entries := davMust(e.store.DueOutbox(time.Now(), 0))
		if len(entries) != 1 {
			t.Fatalf("%d entries", len(entries))
		}
		if err := e.src.Push(context.Background(), entries[0]); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Push with the upstream down: %v", err)
		}
		srv.Start()
		e.pushAll()
		if got := srv.Get(e.url("e.ics")); !sameContent(got, davEvent("u", "offline edit")) {
			t.Fatalf("upstream has\n%s", got)
		}
		if res := e.sync(); res.Put != 0 {
			t.Fatalf("sync: %+v", res)
		}
	})
}

// TestCalDAVPushProperties checks that a client's change of a mirrored
// calendar's properties goes through the outbox to the upstream.
func TestCalDAVPushProperties(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		e := newCalDAVEnv(t, srv, nil)
		e.sync()
		if _, err := e.store.UpdateCalendarProps(davUser, davCal, func(c *cache.Calendar) error {
			c.DisplayName = "Renamed by calgate"
			c.Color = "#123456"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		pending := davMust(e.store.PendingOutbox(davUser, davCal))
		if len(pending) != 1 || pending[0].Op != "proppatch" || pending[0].Name != cache.PropsName {
			t.Fatalf("outbox after a property change: %+v", pending)
		}
		e.pushAll()
		if n := len(davMust(e.store.PendingOutbox(davUser, davCal))); n != 0 {
			t.Fatalf("%d entries left after the push", n)
		}
		body := `<d:propfind xmlns:d="DAV:"><d:prop><d:displayname/></d:prop></d:propfind>`
		r := srv.Do("PROPFIND", e.coll, http.Header{"Depth": {"0"}, "Content-Type": {"application/xml"}}, []byte(body))
		if !strings.Contains(string(r.Body), "Renamed by calgate") {
			t.Fatalf("upstream displayname after the push:\n%s", r.Body)
		}
	})
}

// Under local-wins, a push that fails after the upstream's version was
// recorded as the loser (the replacing PUT does not reach the upstream,
// or its reply is lost) is retried: the loser is recorded once. The
// faults are the property test's (propFaults), on the replacing PUT only.
// On Radicale, an upstream version of another UID is replaced by a DELETE
// and a PUT (see put); a failure between the two is not taken for a
// deletion upstream at the retry.
func TestCalDAVLocalWinsRetryRecordsOnce(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		for _, tc := range []struct {
			mode     string
			otherUID bool
		}{{opSyncDown, false}, {opSyncLost, false}, {opSyncDown, true}, {opSyncLost, true}} {
			if tc.otherUID && srv.Kind != "radicale" {
				continue
			}
			t.Run(fmt.Sprintf("%s/other-uid=%v", tc.mode, tc.otherUID), func(t *testing.T) {
				ft := &propFaults{base: http.DefaultTransport}
				var mu sync.Mutex
				puts, faulty := 0, false
				e := newCalDAVEnv(t, srv, func(o *CalDAVOptions) {
					o.Conflict = ConflictLocalWins
					o.Client = &http.Client{Timeout: 30 * time.Second, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
						mu.Lock()
						if r.Method == http.MethodPut && faulty {
							// The PUT after the 412, or after the DELETE of
							// the object of another UID.
							if puts++; !tc.otherUID && puts == 2 || tc.otherUID && r.Header.Get("If-None-Match") == "*" {
								ft.set(tc.mode)
							}
						}
						mu.Unlock()
						defer ft.set("")
						return ft.RoundTrip(r)
					})}
				})
				srv.Put(e.url("e.ics"), davEvent("u", "base"))
				e.sync()
				if tc.otherUID {
					srv.Delete(e.url("e.ics"))
					srv.Put(e.url("e.ics"), davEvent("u2", "upstream edit"))
				} else {
					srv.Put(e.url("e.ics"), davEvent("u", "upstream edit"))
				}
				upstreamData := srv.Get(e.url("e.ics"))
				localData := davEvent("u", "local edit")
				e.localPut("e.ics", localData)

				mu.Lock()
				faulty = true
				mu.Unlock()
				entries := davMust(e.store.DueOutbox(time.Now(), 0))
				if len(entries) != 1 {
					t.Fatalf("outbox %+v", entries)
				}
				if err := e.src.Push(context.Background(), entries[0]); err == nil {
					t.Fatal("push succeeded with the replacing PUT failing")
				}
				mu.Lock()
				faulty = false
				mu.Unlock()
				e.pushAll()

				if got := srv.Get(e.url("e.ics")); !sameContent(got, localData) {
					t.Fatalf("upstream has\n%s", got)
				}
				cs := davMust(e.store.ListConflicts(davUser))
				if len(cs) != 1 {
					t.Fatalf("%d conflicts, want 1: %+v", len(cs), cs)
				}
				if c := cs[0]; c.Kept != cache.KeptLocal || string(c.LoserData) != string(upstreamData) || c.Reason != reasonBothChanged {
					t.Fatalf("conflict %+v", c)
				}
				if res := e.sync(); res.Put != 0 || res.Deleted != 0 {
					t.Fatalf("sync after the push: %+v", res)
				}
			})
		}
	})
}
