package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// accountEnv is an account of a real upstream server, mirrored into a
// fresh store through an engine that is not started: the test drives
// every Reconcile and sync itself.
type accountEnv struct {
	t      *testing.T
	srv    *davServer
	store  *cache.Store
	engine *Engine
	acct   *Account
}

func newAccountEnv(t *testing.T, srv *davServer, url string) *accountEnv {
	t.Helper()
	store, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	engine := NewEngine(EngineOptions{Store: store, Logger: log})
	acct := NewAccount(AccountOptions{
		ID: "up", User: davUser, URL: url,
		Username: srv.Username, Password: srv.Password,
		Client: &http.Client{Timeout: 30 * time.Second},
		Store:  store, Engine: engine, Logger: log,
	})
	return &accountEnv{t: t, srv: srv, store: store, engine: engine, acct: acct}
}

func (e *accountEnv) reconcile() {
	e.t.Helper()
	if err := e.acct.Reconcile(context.Background()); err != nil {
		e.t.Fatalf("Reconcile: %v\n%s", err, e.srv.Log())
	}
}

// calendar returns local calendar id, or false.
func (e *accountEnv) calendar(id string) (cache.Calendar, bool) {
	e.t.Helper()
	c, err := e.store.GetCalendar(davUser, id)
	if errors.Is(err, cache.ErrNotFound) {
		return cache.Calendar{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return c, true
}

func (e *accountEnv) hasSource(id string) bool {
	return slices.Contains(e.engine.Sources(), davUser+"/"+id)
}

// syncAll syncs every source of the engine once, now.
func (e *accountEnv) syncAll() {
	e.t.Helper()
	for _, id := range e.engine.Sources() {
		if _, err := e.engine.SyncNow(context.Background(), id); err != nil {
			e.t.Fatalf("SyncNow %s: %v\n%s", id, err, e.srv.Log())
		}
	}
}

func (e *accountEnv) count(cal string) int {
	e.t.Helper()
	objs, err := e.store.ListObjects(davUser, cal)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(objs)
}

// notes returns the account's stored notes (SourceState.Quarantine).
func (e *accountEnv) notes() string {
	e.t.Helper()
	st, err := e.store.GetSource(e.acct.ID())
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Join(st.Quarantine, "\n")
}

// ids lists the calendar ids of ds.
func ids(ds []Discovered) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Calendar)
	}
	return out
}

// principalPath is where each server keeps the test user's principal.
func principalPath(srv *davServer) string {
	if srv.Kind == "radicale" {
		return "/" + srv.Username + "/"
	}
	return "/user/"
}

// An account follows the upstream: two calendars are discovered and
// imported, a third one added upstream appears on the next Reconcile, one
// deleted upstream goes only after a second discovery confirms it, and a
// calendar with a pending write is kept until the write is gone.
func TestAccountFollowsUpstream(t *testing.T) {
	eachDAVServer(t, func(t *testing.T, srv *davServer) {
		e := newAccountEnv(t, srv, srv.Base) // no path: RFC 6764 .well-known first
		ctx := context.Background()

		// Xandikos (--defaults) starts with a calendar of its own.
		before, err := e.acct.Discover(ctx)
		if err != nil {
			t.Fatalf("Discover: %v\n%s", err, srv.Log())
		}
		baseline := ids(before)

		work := srv.NewCalendar("work")
		home := srv.NewCalendar("home")
		r := srv.Do("PROPPATCH", work, http.Header{"Content-Type": {"application/xml; charset=utf-8"}}, []byte(
			`<?xml version="1.0" encoding="utf-8"?>`+
				`<d:propertyupdate xmlns:d="DAV:" xmlns:a="http://apple.com/ns/ical/"><d:set><d:prop>`+
				`<d:displayname>Work stuff</d:displayname><a:calendar-color>#FF0000FF</a:calendar-color>`+
				`</d:prop></d:set></d:propertyupdate>`))
		if r.StatusCode != http.StatusMultiStatus {
			t.Fatalf("PROPPATCH %s: %s\n%s", work, r.Status, r.Body)
		}
		for i := range 3 {
			srv.Put(fmt.Sprintf("%sw%d.ics", work, i), davEvent(fmt.Sprintf("w%d@test", i), "work"))
		}
		for i := range 2 {
			srv.Put(fmt.Sprintf("%sh%d.ics", home, i), davEvent(fmt.Sprintf("h%d@test", i), "home"))
		}

		found, err := e.acct.Discover(ctx)
		if err != nil {
			t.Fatalf("Discover: %v", err)
		}
		want := slices.Sorted(slices.Values(append(slices.Clone(baseline), "up-home", "up-work")))
		if got := ids(found); !slices.Equal(got, want) {
			t.Fatalf("discovered %v, want %v", got, want)
		}
		for _, d := range found {
			if d.Calendar == "up-work" && (d.DisplayName != "Work stuff" || !strings.EqualFold(d.Color, "#FF0000FF") || d.Href != work ||
				!slices.Equal(d.Components, []string{"VEVENT", "VTODO", "VJOURNAL"})) {
				t.Errorf("up-work discovered as %+v", d)
			}
		}

		// The same account found from the principal's URL.
		byPath := newAccountEnv(t, srv, srv.Base+principalPath(srv))
		if got, err := byPath.acct.Discover(ctx); err != nil || !slices.Equal(ids(got), want) {
			t.Errorf("Discover from the principal URL: %v, %v; want %v", ids(got), err, want)
		}

		e.reconcile()
		for _, id := range []string{"up-work", "up-home"} {
			c, ok := e.calendar(id)
			if !ok {
				t.Fatalf("no local calendar %s", id)
			}
			if c.Kind != "caldav" || c.Source != davUser+"/"+id {
				t.Errorf("%s: kind %q source %q", id, c.Kind, c.Source)
			}
			if !e.hasSource(id) {
				t.Errorf("engine has no source for %s: %v", id, e.engine.Sources())
			}
		}
		if c, _ := e.calendar("up-work"); c.DisplayName != "Work stuff" || !strings.EqualFold(c.Color, "#FF0000FF") {
			t.Errorf("up-work created as %q %q", c.DisplayName, c.Color)
		}
		e.syncAll()
		if n := e.count("up-work"); n != 3 {
			t.Errorf("up-work holds %d objects, want 3", n)
		}
		if n := e.count("up-home"); n != 2 {
			t.Errorf("up-home holds %d objects, want 2", n)
		}
		nsrc := len(e.engine.Sources())
		e.reconcile() // nothing changed upstream: nothing changes here
		if n := len(e.engine.Sources()); n != nsrc {
			t.Errorf("a second Reconcile changed the sources from %d to %d", nsrc, n)
		}

		// A third calendar appears upstream.
		third := srv.NewCalendar("third")
		srv.Put(third+"t.ics", davEvent("t@test", "third"))
		e.reconcile()
		if _, ok := e.calendar("up-third"); !ok || !e.hasSource("up-third") {
			t.Fatalf("up-third not mirrored after Reconcile (sources %v)", e.engine.Sources())
		}
		if _, err := e.engine.SyncNow(ctx, davUser+"/up-third"); err != nil {
			t.Fatal(err)
		}
		if n := e.count("up-third"); n != 1 {
			t.Errorf("up-third holds %d objects, want 1", n)
		}

		// One is deleted upstream: removed after the second discovery.
		srv.Delete(home)
		e.reconcile()
		if _, ok := e.calendar("up-home"); !ok || !e.hasSource("up-home") {
			t.Fatal("up-home removed after one discovery")
		}
		if n := e.notes(); !strings.Contains(n, `calendar "up-home" is removed if the next discovery confirms`) {
			t.Errorf("notes after one miss: %q", n)
		}
		e.reconcile()
		if _, ok := e.calendar("up-home"); ok || e.hasSource("up-home") {
			t.Fatal("up-home still mirrored after two discoveries without it")
		}
		if n := e.notes(); n != "" {
			t.Errorf("notes after the removal: %q", n)
		}

		// Re-created upstream: a fresh calendar, with no old sync state.
		home = srv.NewCalendar("home")
		srv.Put(home+"new.ics", davEvent("new@test", "home again"))
		e.reconcile()
		if _, err := e.engine.SyncNow(ctx, davUser+"/up-home"); err != nil {
			t.Fatal(err)
		}
		if n := e.count("up-home"); n != 1 {
			t.Errorf("re-created up-home holds %d objects, want 1", n)
		}

		// A calendar with a write waiting for the upstream is kept.
		obj := davInspect(t, "local.ics", davEvent("local@test", "written through calgate"))
		if _, _, err := e.store.PutObject(davUser, "up-work", obj, cache.PutConditions{}); err != nil {
			t.Fatal(err)
		}
		if p, _ := e.store.PendingOutbox(davUser, "up-work"); len(p) != 1 {
			t.Fatalf("pending outbox of up-work: %+v, want one entry", p)
		}
		srv.Delete(work)
		for range 3 {
			e.reconcile()
		}
		if _, ok := e.calendar("up-work"); !ok || !e.hasSource("up-work") {
			t.Fatal("up-work removed although a write is pending")
		}
		if n := e.notes(); !strings.Contains(n, `calendar "up-work" kept: 1 pending writes`) {
			t.Errorf("notes with a pending write: %q", n)
		}
		// Once the write is gone (a new object deleted before its push
		// leaves no entry), the calendar goes too.
		if err := e.store.DeleteObject(davUser, "up-work", "local.ics", ""); err != nil {
			t.Fatal(err)
		}
		e.reconcile()
		if _, ok := e.calendar("up-work"); ok || e.hasSource("up-work") {
			t.Fatal("up-work still mirrored after its pending write went away")
		}
		for _, id := range append(baseline, "up-third", "up-home") {
			if _, ok := e.calendar(id); !ok {
				t.Errorf("calendar %s lost", id)
			}
		}
	})
}

// Start runs discovery in the background until Stop, adding sources to a
// running engine.
func TestAccountStartStop(t *testing.T) {
	srv := startDAVServer(t, "radicale")
	cal := srv.NewCalendar("bg")
	srv.Put(cal+"a.ics", davEvent("a@test", "background"))
	e := newAccountEnv(t, srv, srv.Base)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.engine.Start(ctx)
	e.acct.Start(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := e.calendar("up-bg"); ok && e.hasSource("up-bg") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("up-bg not discovered in the background\n%s", srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The engine would sync it after its start-up jitter; no need to wait.
	if _, err := e.engine.SyncNow(ctx, davUser+"/up-bg"); err != nil {
		t.Fatal(err)
	}
	if n := e.count("up-bg"); n != 1 {
		t.Errorf("up-bg holds %d objects, want 1", n)
	}
	e.acct.Stop()
	e.engine.Stop()
	e.acct.Stop() // twice is harmless
}

// fakeAccountServer answers discovery like a minimal CalDAV server:
// /.well-known/caldav redirects to /dav/, whose principal /dav/p/ has the
// home /dav/cals/ with the collections named in cals.
func fakeAccountServer(t *testing.T, cals ...string) *httptest.Server {
	t.Helper()
	ms := func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.WriteHeader(http.StatusMultiStatus)
		fmt.Fprintf(w, `<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">%s</d:multistatus>`, body)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "PROPFIND" {
			http.Error(w, "no", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case "/.well-known/caldav":
			http.Redirect(w, r, "/dav/", http.StatusMovedPermanently)
		case "/dav/":
			ms(w, `<d:response><d:href>/dav/</d:href><d:propstat><d:prop><d:current-user-principal><d:href>/dav/p/</d:href></d:current-user-principal></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`)
		case "/dav/p/":
			ms(w, `<d:response><d:href>/dav/p/</d:href><d:propstat><d:prop><c:calendar-home-set><d:href>/dav/cals/</d:href></c:calendar-home-set></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`)
		case "/dav/cals/":
			var b strings.Builder
			b.WriteString(`<d:response><d:href>/dav/cals/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`)
			b.WriteString(`<d:response><d:href>/dav/cals/inbox/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/><c:schedule-inbox/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`)
			b.WriteString(`<d:response><d:href>/dav/cals/avail/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/><c:calendar/></d:resourcetype>` +
				`<c:supported-calendar-component-set><c:comp name="VAVAILABILITY"/></c:supported-calendar-component-set></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>`)
			for _, c := range cals {
				fmt.Fprintf(&b, `<d:response><d:href>/dav/cals/%s/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/><c:calendar/></d:resourcetype>`+
					`<c:supported-calendar-component-set><c:comp name="VTODO"/></c:supported-calendar-component-set></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>`+
					`<d:propstat><d:prop><d:displayname/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>`, c)
			}
			ms(w, b.String())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// In-process server (for what Radicale and Xandikos do not do: a 301 from
// the well-known URI to a principal elsewhere, escaped and clashing
// names, collections that are no calendars of events or tasks).
func TestAccountDiscoverFake(t *testing.T) {
	srv := fakeAccountServer(t, "Privé%20cal", "Priv%C3%A9_cal", "tasks")
	store := openStore(t)
	acct := NewAccount(AccountOptions{ID: "acc", User: "u", URL: srv.URL, Store: store, Engine: NewEngine(EngineOptions{Store: store})})
	got, err := acct.Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range got {
		lines = append(lines, d.Calendar+" "+strings.TrimPrefix(d.Href, srv.URL)+" "+strings.Join(d.Components, ","))
	}
	// Both names needed a change: the first by URL keeps the plain id.
	sum := sha256.Sum256([]byte(srv.URL + "/dav/cals/Priv%C3%A9_cal/"))
	want := []string{
		"acc-Priv__cal /dav/cals/Priv%C3%A9%20cal/ VTODO",
		"acc-Priv__cal-" + hex.EncodeToString(sum[:4]) + " /dav/cals/Priv%C3%A9_cal/ VTODO",
		"acc-tasks /dav/cals/tasks/ VTODO",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("discovered:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestCalendarIDs(t *testing.T) {
	ds := []Discovered{
		{Href: "https://h/cals/work/"},
		{Href: "https://h/cals/Work%20Stuff/"},
		{Href: "https://h/cals/Work_Stuff/"}, // clean: keeps the plain id
		{Href: "https://h/cals/%E6%97%A5%E6%9C%AC/"},
		{Href: "https://h/cals/a.b-c_d/"},
	}
	calendarIDs("fm", ds)
	sum := sha256.Sum256([]byte("https://h/cals/Work%20Stuff/"))
	want := []string{"fm-work", "fm-Work_Stuff-" + hex.EncodeToString(sum[:4]), "fm-Work_Stuff", "fm-__", "fm-a.b-c_d"}
	if got := ids(ds); !slices.Equal(got, want) {
		t.Errorf("calendarIDs: %v, want %v", got, want)
	}
}

// A calendar id the account would use that belongs to another calendar
// (a configured one, local or mirrored) is left alone, with a note.
func TestAccountIDTaken(t *testing.T) {
	srv := fakeAccountServer(t, "work", "home")
	store := openStore(t)
	engine := NewEngine(EngineOptions{Store: store})
	if _, err := store.CreateCalendar(cache.Calendar{User: "u", ID: "acc-work", Kind: "local"}); err != nil {
		t.Fatal(err)
	}
	// A configured caldav calendar of the same id as "acc-home".
	if _, err := store.CreateCalendar(cache.Calendar{User: "u", ID: "acc-home", Kind: "caldav", Source: "u/acc-home"}); err != nil {
		t.Fatal(err)
	}
	engine.Add(&fakeSource{id: "u/acc-home"}, "u", "acc-home", time.Hour)
	acct := NewAccount(AccountOptions{ID: "acc", User: "u", URL: srv.URL, Store: store, Engine: engine})
	for range 3 {
		if err := acct.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := store.GetCalendar("u", "acc-work"); err != nil || c.Kind != "local" || c.Source != "" {
		t.Errorf("acc-work changed: %+v, %v", c, err)
	}
	if _, err := store.GetCalendar("u", "acc-home"); err != nil {
		t.Errorf("acc-home: %v", err)
	}
	if got := engine.Sources(); !slices.Equal(got, []string{"u/acc-home"}) {
		t.Errorf("engine sources %v", got)
	}
	st, err := store.GetSource(acct.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Quarantine) != 2 || !strings.Contains(strings.Join(st.Quarantine, "\n"), `calendar id "acc-work" is taken`) {
		t.Errorf("notes %q", st.Quarantine)
	}
}

// A failed discovery changes no calendar and is recorded.
func TestAccountDiscoveryFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	store := openStore(t)
	acct := NewAccount(AccountOptions{ID: "acc", User: "u", URL: srv.URL + "/dav/", Store: store, Engine: NewEngine(EngineOptions{Store: store})})
	err := acct.Reconcile(context.Background())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reconcile: %v, want ErrUnavailable", err)
	}
	st, gerr := store.GetSource("u/acc")
	if gerr != nil || st.Failures != 1 || st.LastError == "" {
		t.Errorf("state %+v, %v", st, gerr)
	}
}
