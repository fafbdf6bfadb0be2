package main

// End-to-end tests of upstream sync: a real Radicale (the Debian package)
// on 127.0.0.1 is the upstream of a calendar of a calgate process, and
// the tests talk to both over HTTP as a client of each would. They cover
// mirroring (an upstream change seen by a calgate client, also through
// sync-collection), write-back (a client write through calgate arriving
// upstream), writes made while the upstream is down (all acknowledged,
// all served, all replayed exactly once when it returns), and a SIGKILL
// of calgate in the middle of that replay.

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// e2eUpstreamPasswordEnv names the variable the config's password_env
// points at; the tests set it, and calgate inherits it.
const (
	e2eUpstreamPasswordEnv = "CALGATE_E2E_UPSTREAM_PASSWORD"
	e2eUpstreamPassword    = "upstream-s3cret"
)

// workPath is the URL path of the mirrored calendar in calgate.
const workPath = "/dav/calendars/" + testUser + "/work/"

// e2eRadicale is a real Radicale on 127.0.0.1 with its storage in a
// temporary directory, as in upstream/servers_test.go. Stop and Start take
// it away and bring it back on the same port with the same data. With
// auth type none Radicale takes the user from the Basic credentials, so
// /alice/ belongs to whoever says they are alice.
type e2eRadicale struct {
	Base string // http://127.0.0.1:PORT

	t      *testing.T
	bin    string
	dir    string
	port   int
	client *http.Client

	mu   sync.Mutex // protects cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *syncBuffer
}

// startE2ERadicale starts Radicale and stops it when the test ends. A
// missing binary fails the test when CI=true and skips it otherwise.
func startE2ERadicale(t *testing.T) *e2eRadicale {
	t.Helper()
	const bin = "/usr/bin/radicale"
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("%s not found (%v); install it with: sudo apt-get install -y radicale", bin, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	r := &e2eRadicale{
		t:      t,
		bin:    bin,
		dir:    t.TempDir(),
		log:    new(syncBuffer),
		client: &http.Client{Timeout: 20 * time.Second},
	}
	var err error
	for range 5 { // a free port may be taken before Radicale binds it
		r.port, err = e2eFreePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		r.Base = "http://127.0.0.1:" + strconv.Itoa(r.port)
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting radicale: %v", err)
	}
	t.Cleanup(func() {
		r.Stop()
		r.client.CloseIdleConnections()
	})
	return r
}

func e2eFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *e2eRadicale) start() error {
	cmd := exec.Command(r.bin,
		"--storage-filesystem-folder", filepath.Join(r.dir, "collections"),
		"--server-hosts", "127.0.0.1:"+strconv.Itoa(r.port),
		"--auth-type", "none",
		"--rights-type", "owner_only",
		"--logging-level", "warning",
	)
	cmd.Env = append(os.Environ(), "HOME="+r.dir)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !r.answers() {
		select {
		case err := <-exited:
			return fmt.Errorf("radicale exited: %v\n%s", err, r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("radicale did not answer on %s within 20s\n%s", r.Base, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	go func() {
		<-exited
		close(done)
	}()
	return nil
}

// answers reports whether something answers HTTP on Radicale's port.
func (r *e2eRadicale) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, r.Base+"/", nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// Start starts Radicale again after Stop, on the same port and storage.
func (r *e2eRadicale) Start() {
	r.t.Helper()
	var err error
	for range 20 { // the old socket may linger for a moment
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("restarting radicale: %v", err)
}

// Stop kills Radicale and waits until its port no longer answers.
func (r *e2eRadicale) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
	r.client.CloseIdleConnections()
	for range 100 {
		if !r.answers() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Errorf("radicale still answers on %s after it was killed", r.Base)
}

// do sends one request to Radicale as alice, as another client of the
// upstream would, and fails the test on a transport error.
func (r *e2eRadicale) do(method, target string, hdr http.Header, body []byte) (*http.Response, []byte) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.t.Context(), method, target, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	maps.Copy(req.Header, hdr)
	req.SetBasicAuth(testUser, e2eUpstreamPassword)
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("radicale %s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("radicale %s %s: read body: %v", method, target, err)
	}
	return resp, data
}

// newCalendar creates alice's calendar collection name and returns its URL.
func (r *e2eRadicale) newCalendar(name string) string {
	r.t.Helper()
	u := r.Base + "/" + testUser + "/" + name + "/"
	resp, body := r.do("MKCALENDAR", u, nil, nil)
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("radicale MKCALENDAR %s: %s\n%s\n%s", u, resp.Status, body, r.log.String())
	}
	return u
}

// put stores an object in Radicale directly.
func (r *e2eRadicale) put(u string, data []byte) {
	r.t.Helper()
	resp, body := r.do(http.MethodPut, u, http.Header{"Content-Type": {"text/calendar; charset=utf-8"}}, data)
	if resp.StatusCode/100 != 2 {
		r.t.Fatalf("radicale PUT %s: %s\n%s", u, resp.Status, body)
	}
}

// hrefs lists the member hrefs of collection coll (PROPFIND Depth 1).
func (r *e2eRadicale) hrefs(coll string) []string {
	r.t.Helper()
	resp, body := r.do("PROPFIND", coll, http.Header{"Depth": {"1"}, "Content-Type": {"application/xml; charset=utf-8"}},
		[]byte(`<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`))
	if resp.StatusCode != http.StatusMultiStatus {
		r.t.Fatalf("radicale PROPFIND %s: %s\n%s", coll, resp.Status, body)
	}
	var ms multistatus
	if err := xml.Unmarshal(body, &ms); err != nil {
		r.t.Fatalf("radicale PROPFIND %s: %v\n%s", coll, err, body)
	}
	collPath := mustURL(r.t, coll).Path
	var out []string
	for _, resp := range ms.Responses {
		if p := mustURL(r.t, resp.Href).Path; p != collPath {
			out = append(out, p)
		}
	}
	return out
}

// objects lists every object of collection coll with a calendar-query
// REPORT, as href path -> UID. It fails the test if an href is listed
// twice or two hrefs hold the same UID.
func (r *e2eRadicale) objects(coll string) map[string]string {
	r.t.Helper()
	resp, body := r.do("REPORT", coll, http.Header{"Depth": {"1"}, "Content-Type": {"application/xml; charset=utf-8"}},
		[]byte(`<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"/></C:filter>
</C:calendar-query>`))
	if resp.StatusCode != http.StatusMultiStatus {
		r.t.Fatalf("radicale REPORT %s: %s\n%s", coll, resp.Status, body)
	}
	var ms multistatus
	if err := xml.Unmarshal(body, &ms); err != nil {
		r.t.Fatalf("radicale REPORT %s: %v\n%s", coll, err, body)
	}
	byHref := make(map[string]string, len(ms.Responses))
	byUID := make(map[string]string, len(ms.Responses))
	for _, resp := range ms.Responses {
		prop, ok := resp.found()
		if !ok || prop.CalendarData == "" {
			r.t.Fatalf("radicale REPORT %s: %s without calendar-data", coll, resp.Href)
		}
		href := mustURL(r.t, resp.Href).Path
		uid, _ := parseObject(r.t, []byte(prop.CalendarData))
		if _, dup := byHref[href]; dup {
			r.t.Errorf("radicale lists %s twice", href)
		}
		if other, dup := byUID[uid]; dup {
			r.t.Errorf("radicale holds UID %s twice: %s and %s", uid, other, href)
		}
		byHref[href], byUID[uid] = uid, href
	}
	return byHref
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("bad href %q: %v", s, err)
	}
	return u
}

// writeSyncConfig writes a calgate config with a local calendar,
// personal, and a calendar, work, mirroring the upstream collection coll
// every 10 s (the shortest interval allowed), and sets the upstream
// password in the environment calgate inherits.
func writeSyncConfig(t *testing.T, dir, coll string) string {
	t.Helper()
	t.Setenv(e2eUpstreamPasswordEnv, e2eUpstreamPassword)
	yml := fmt.Sprintf(`listen: "127.0.0.1:0"
data: %q
users:
  - name: %s
    password_hash: %q
    calendars:
      - id: personal
        name: Personal
      - id: work
        name: Work
        caldav:
          url: %q
          username: %s
          password_env: %s
          interval: 10s
`, filepath.Join(dir, "calgate.db"), testUser, testHash, coll, testUser, e2eUpstreamPasswordEnv)
	p := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitUntil calls cond every interval until it reports true, for at most
// limit, and fails the test with cond's last description if it never
// does. It returns how long it took.
func waitUntil(t *testing.T, what string, limit, interval time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(limit)
	var last string
	for n := 0; n < int(limit/interval)+1; n++ {
		var ok bool
		if ok, last = cond(); ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(interval)
	}
	t.Fatalf("%s: not within %v; last seen: %s", what, limit, last)
	return 0
}

// hrefsOf lists the member hrefs of a calgate calendar with PROPFIND
// Depth 1, as href -> ETag.
func (p *calgateProcess) hrefsOf(t *testing.T, calPath string) map[string]string {
	t.Helper()
	ms := p.davMultistatus(t, "PROPFIND", calPath, "1", `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>`)
	out := make(map[string]string, len(ms.Responses))
	for _, r := range ms.Responses {
		href := mustURL(t, r.Href).Path
		if href == calPath {
			continue
		}
		prop, ok := r.found()
		if !ok || prop.ETag == "" {
			t.Fatalf("PROPFIND %s: member %s without getetag: %+v", calPath, r.Href, r)
		}
		if _, dup := out[href]; dup {
			t.Fatalf("PROPFIND %s lists %s twice", calPath, href)
		}
		out[href] = prop.ETag
	}
	return out
}

// multiget fetches hrefs of a calgate calendar with calendar-multiget
// (RFC 4791 §7.9), keyed by href.
func (p *calgateProcess) multiget(t *testing.T, calPath string, hrefs []string) map[string]davObject {
	t.Helper()
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>`)
	for _, h := range hrefs {
		b.WriteString("<D:href>")
		xml.EscapeText(&b, []byte(h))
		b.WriteString("</D:href>")
	}
	b.WriteString("</C:calendar-multiget>")
	ms := p.davMultistatus(t, "REPORT", calPath, "1", b.String())
	out := make(map[string]davObject, len(ms.Responses))
	for _, r := range ms.Responses {
		prop, ok := r.found()
		if !ok || prop.CalendarData == "" {
			t.Errorf("multiget %s: %s not found: %+v", calPath, r.Href, r)
			continue
		}
		o := davObject{Href: mustURL(t, r.Href).Path, ETag: prop.ETag, Data: []byte(prop.CalendarData)}
		o.UID, o.Summary = parseObject(t, o.Data)
		out[o.Href] = o
	}
	return out
}

// syncCollection sends an RFC 6578 sync-collection REPORT with token and
// returns the changed members (href -> ETag), the removed hrefs and the
// new token.
func (p *calgateProcess) syncCollection(t *testing.T, calPath, token string) (changed map[string]string, removed []string, newToken string) {
	t.Helper()
	ms := p.davMultistatus(t, "REPORT", calPath, "0", `<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:"><D:sync-token>`+token+`</D:sync-token><D:sync-level>1</D:sync-level>
<D:prop><D:getetag/></D:prop></D:sync-collection>`)
	changed = make(map[string]string)
	for _, r := range ms.Responses {
		href := mustURL(t, r.Href).Path
		if strings.Contains(r.Status, " 404 ") {
			removed = append(removed, href)
			continue
		}
		prop, ok := r.found()
		if !ok {
			t.Fatalf("sync-collection %s: %s neither changed nor removed: %+v", calPath, r.Href, r)
		}
		changed[href] = prop.ETag
	}
	if ms.SyncToken == "" {
		t.Fatalf("sync-collection %s: no sync-token", calPath)
	}
	return changed, removed, ms.SyncToken
}

// putNew creates an object through calgate and fails the test unless
// calgate acknowledges it with 201 and an ETag.
func (p *calgateProcess) putNew(t *testing.T, objPath string, body []byte) {
	t.Helper()
	resp, data := p.mustDo(t, http.MethodPut, objPath, body, http.Header{
		"Content-Type":  {"text/calendar; charset=utf-8"},
		"If-None-Match": {"*"},
	})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("ETag") == "" {
		t.Fatalf("PUT %s through calgate: %s, ETag %q\n%s", objPath, resp.Status, resp.Header.Get("ETag"), data)
	}
}

// statusLine runs `calgate status` (calgate must be stopped: it opens the
// data file) and returns the columns of source alice/work by header name.
func statusLine(t *testing.T, config string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, calgateBinary(t), "status", "-config", config)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // logs; the table is on stdout
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("calgate status: %v\n%s%s", err, out, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// The header's columns are separated by two or more spaces; the last
	// column (LAST ERROR) may hold single spaces.
	split := func(s string) []string {
		var cols []string
		for _, c := range strings.Split(s, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, c)
			}
		}
		return cols
	}
	header := split(lines[0])
	for _, l := range lines[1:] {
		cols := split(l)
		if len(cols) == 0 || cols[0] != testUser+"/work" {
			continue
		}
		m := make(map[string]string, len(header))
		for i, h := range header {
			if i < len(cols) {
				m[h] = cols[i]
			}
		}
		return m
	}
	t.Fatalf("calgate status has no line for %s/work:\n%s", testUser, out)
	return nil
}

// checkLogs fails the test if calgate logged the upstream password.
func checkLogs(t *testing.T, p *calgateProcess) {
	t.Helper()
	if strings.Contains(p.logs.String(), e2eUpstreamPassword) {
		t.Errorf("calgate logged the upstream password:\n%s", p.logs.String())
	}
}

// TestSyncE2EMirror: events put straight into Radicale appear in calgate
// (PROPFIND Depth 1, calendar-multiget, sync-collection) after one sync,
// and a client write through calgate is acknowledged at once and arrives
// in Radicale.
func TestSyncE2EMirror(t *testing.T) {
	rad := startE2ERadicale(t)
	coll := rad.newCalendar("work")
	start := time.Date(2031, 3, 2, 9, 0, 0, 0, time.UTC)
	// Present before calgate starts: the initial import.
	for i := range 3 {
		rad.put(coll+fmt.Sprintf("initial-%d.ics", i), eventICS(fmt.Sprintf("initial-%d@e2e.test", i), fmt.Sprintf("Initial %d", i), start.Add(time.Duration(i)*time.Hour)))
	}
	srv := startCalgate(t, writeSyncConfig(t, t.TempDir(), coll))
	defer checkLogs(t, srv)

	wantHref := func(name string) string { return workPath + name }
	hasAll := func(names ...string) func() (bool, string) {
		return func() (bool, string) {
			got := srv.hrefsOf(t, workPath)
			for _, n := range names {
				if _, ok := got[wantHref(n)]; !ok {
					return false, fmt.Sprintf("%d members: %v", len(got), slices.Sorted(maps.Keys(got)))
				}
			}
			return true, ""
		}
	}
	took := waitUntil(t, "initial import into calgate", 30*time.Second, 200*time.Millisecond,
		hasAll("initial-0.ics", "initial-1.ics", "initial-2.ics"))
	t.Logf("initial import visible in calgate after %v", took.Round(time.Millisecond))
	_, token := srv.ctag(t, workPath)

	// a. Upstream changes: two new events and a changed one, put into
	// Radicale directly.
	rad.put(coll+"upstream-new-1.ics", eventICS("upstream-new-1@e2e.test", "New upstream 1", start.Add(24*time.Hour)))
	rad.put(coll+"upstream-new-2.ics", eventICS("upstream-new-2@e2e.test", "New upstream 2", start.Add(25*time.Hour)))
	rad.put(coll+"initial-1.ics", eventICS("initial-1@e2e.test", "Initial 1 (changed upstream)", start.Add(time.Hour)))
	changed := func() (bool, string) {
		if ok, last := hasAll("upstream-new-1.ics", "upstream-new-2.ics")(); !ok {
			return false, last
		}
		o := srv.multiget(t, workPath, []string{wantHref("initial-1.ics")})[wantHref("initial-1.ics")]
		return o.Summary == "Initial 1 (changed upstream)", "initial-1 summary " + o.Summary
	}
	// One poll interval is 10 s (±10%); 30 s leaves room for a slow sync.
	took = waitUntil(t, "upstream changes visible in calgate", 30*time.Second, 200*time.Millisecond, changed)
	t.Logf("upstream changes visible in calgate after %v", took.Round(time.Millisecond))

	members := srv.hrefsOf(t, workPath)
	if len(members) != 5 {
		t.Errorf("calgate's work calendar has %d members, want 5: %v", len(members), slices.Sorted(maps.Keys(members)))
	}
	objs := srv.multiget(t, workPath, slices.Sorted(maps.Keys(members)))
	wantSummaries := map[string]string{
		"initial-0@e2e.test":      "Initial 0",
		"initial-1@e2e.test":      "Initial 1 (changed upstream)",
		"initial-2@e2e.test":      "Initial 2",
		"upstream-new-1@e2e.test": "New upstream 1",
		"upstream-new-2@e2e.test": "New upstream 2",
	}
	gotSummaries := make(map[string]string)
	for href, o := range objs {
		gotSummaries[o.UID] = o.Summary
		if o.ETag != members[href] {
			t.Errorf("%s: multiget ETag %q, PROPFIND ETag %q", href, o.ETag, members[href])
		}
	}
	if !maps.Equal(gotSummaries, wantSummaries) {
		t.Errorf("calgate serves %v, want %v", gotSummaries, wantSummaries)
	}

	// sync-collection from the token taken before the upstream changes
	// reports exactly the changed members, with their current ETags.
	delta, removed, token2 := srv.syncCollection(t, workPath, token)
	wantDelta := []string{wantHref("initial-1.ics"), wantHref("upstream-new-1.ics"), wantHref("upstream-new-2.ics")}
	if got := slices.Sorted(maps.Keys(delta)); !slices.Equal(got, wantDelta) || len(removed) != 0 {
		t.Errorf("sync-collection since %s: changed %v removed %v, want changed %v", token, got, removed, wantDelta)
	}
	for href, etag := range delta {
		if etag != members[href] {
			t.Errorf("sync-collection: %s ETag %q, PROPFIND says %q", href, etag, members[href])
		}
	}
	if token2 == token {
		t.Errorf("sync-collection returned the old token %q", token)
	}

	// b. A client write through calgate: 201 at once, then upstream
	// (the write kicks the source).
	const name = "client-1.ics"
	body := eventICS("client-1@e2e.test", "Written through calgate", start.Add(48*time.Hour))
	t0 := time.Now()
	srv.putNew(t, workPath+name, body)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("the PUT took %v; a write to a mirrored calendar is answered before it is pushed", d)
	}
	// 8 s is shorter than one poll interval (10 s -10%), so only the
	// kick can have pushed the write in time.
	took = waitUntil(t, "client write arriving in radicale", 8*time.Second, 100*time.Millisecond, func() (bool, string) {
		resp, data := rad.do(http.MethodGet, coll+name, nil, nil)
		if resp.StatusCode != http.StatusOK {
			return false, resp.Status
		}
		uid, summary := parseObject(t, data)
		return uid == "client-1@e2e.test" && summary == "Written through calgate", uid + " " + summary
	})
	t.Logf("client write in radicale %v after the PUT", took.Round(time.Millisecond))

	// Pushed once, and not mirrored back as a second object.
	upstream := rad.objects(coll)
	if len(upstream) != 6 || upstream[mustURL(t, coll).Path+name] != "client-1@e2e.test" {
		t.Errorf("radicale holds %v, want the 5 upstream objects and %s", upstream, name)
	}
	if got := srv.calendarObjects(t, workPath); len(got) != 6 {
		t.Errorf("calgate serves %d objects in work, want 6", len(got))
	}
	// The local calendar is not touched by any of this.
	if got := srv.hrefsOf(t, personalPath); len(got) != 0 {
		t.Errorf("the local calendar has members %v", got)
	}
}

// offlineWrites is how many writes the offline tests make while the
// upstream is down.
const offlineWrites = 100

// offlineName is the resource name of the i-th offline write.
func offlineName(prefix string, i int) string { return fmt.Sprintf("%s-%03d.ics", prefix, i) }

// offlineUID is the UID of the object offlineName(prefix, i).
func offlineUID(prefix string, i int) string { return fmt.Sprintf("%s-%03d@e2e.test", prefix, i) }

// setUpOffline starts Radicale with one seed event and calgate mirroring
// it, waits for calgate's first sync (the seed is served), and stops
// Radicale.
func setUpOffline(t *testing.T) (rad *e2eRadicale, coll, config string, srv *calgateProcess) {
	t.Helper()
	rad = startE2ERadicale(t)
	coll = rad.newCalendar("work")
	rad.put(coll+"seed.ics", eventICS("seed@e2e.test", "Seed", time.Date(2031, 1, 1, 9, 0, 0, 0, time.UTC)))
	config = writeSyncConfig(t, t.TempDir(), coll)
	srv = startCalgate(t, config)
	waitUntil(t, "first sync (seed in calgate)", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		got := srv.hrefsOf(t, workPath)
		_, ok := got[workPath+"seed.ics"]
		return ok, fmt.Sprintf("%v", slices.Sorted(maps.Keys(got)))
	})
	rad.Stop()
	return rad, coll, config, srv
}

// writeOffline makes offlineWrites PUTs of new objects through calgate
// and checks each is acknowledged, then that calgate serves all of them
// while the upstream is down.
func writeOffline(t *testing.T, srv *calgateProcess, prefix string) map[string][]byte {
	t.Helper()
	pad := "DESCRIPTION:" + strings.Repeat("offline write ", 40)
	bodies := make(map[string][]byte, offlineWrites)
	start := time.Date(2031, 6, 1, 8, 0, 0, 0, time.UTC)
	t0 := time.Now()
	for i := range offlineWrites {
		name := offlineName(prefix, i)
		body := eventICS(offlineUID(prefix, i), fmt.Sprintf("Offline %s %d", prefix, i), start.Add(time.Duration(i)*time.Hour), pad)
		srv.putNew(t, workPath+name, body)
		bodies[workPath+name] = body
	}
	t.Logf("%d PUTs acknowledged with the upstream down in %v", offlineWrites, time.Since(t0).Round(time.Millisecond))

	// Reads keep working from the store: every object by GET, the
	// listing, and a calendar-query.
	for _, p := range []string{workPath + offlineName(prefix, 0), workPath + offlineName(prefix, offlineWrites/2), workPath + offlineName(prefix, offlineWrites-1)} {
		resp, data := srv.mustDo(t, http.MethodGet, p, nil, nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(data, bodies[p]) {
			t.Errorf("GET %s with the upstream down: %s, body equal %v", p, resp.Status, bytes.Equal(data, bodies[p]))
		}
	}
	members := srv.hrefsOf(t, workPath)
	for p := range bodies {
		if _, ok := members[p]; !ok {
			t.Errorf("PROPFIND with the upstream down does not list %s", p)
		}
	}
	if got := srv.calendarObjects(t, workPath); len(got) != offlineWrites+1 {
		t.Errorf("calendar-query with the upstream down: %d objects, want %d", len(got), offlineWrites+1)
	}
	return bodies
}

// checkUpstreamExactlyOnce checks that Radicale holds the seed and every
// object in want (calgate paths) exactly once, under the same name, and
// nothing else.
func checkUpstreamExactlyOnce(t *testing.T, rad *e2eRadicale, coll string, want map[string]string) {
	t.Helper()
	collPath := mustURL(t, coll).Path
	got := rad.objects(coll) // fails on a duplicate href or UID
	wantUp := map[string]string{collPath + "seed.ics": "seed@e2e.test"}
	for p, uid := range want {
		wantUp[collPath+path.Base(p)] = uid
	}
	for href, uid := range wantUp {
		if got[href] != uid {
			t.Errorf("radicale: %s holds UID %q, want %q", href, got[href], uid)
		}
	}
	for href, uid := range got {
		if _, ok := wantUp[href]; !ok {
			t.Errorf("radicale holds %s (UID %s), which calgate never wrote", href, uid)
		}
	}
	if len(got) != len(wantUp) {
		t.Errorf("radicale holds %d objects, want %d", len(got), len(wantUp))
	}
}

// checkDrained stops calgate and checks with `calgate status` that
// nothing is left in the outbox and no conflict was recorded.
func checkDrained(t *testing.T, srv *calgateProcess, config string) {
	t.Helper()
	srv.stop(t)
	st := statusLine(t, config)
	t.Logf("calgate status: %v", st)
	if st["OUTBOX"] != "0" || st["CONFLICTS"] != "0" {
		t.Errorf("after the replay: outbox %s, conflicts %s, want 0 and 0 (last error %q)", st["OUTBOX"], st["CONFLICTS"], st["LAST ERROR"])
	}
}

// TestSyncE2EOffline: with Radicale down, 100 writes through calgate are
// all acknowledged and served; when Radicale is back, a kick replays them
// all, each exactly once.
func TestSyncE2EOffline(t *testing.T) {
	rad, coll, config, srv := setUpOffline(t)
	defer checkLogs(t, srv)
	writeOffline(t, srv, "offline")
	want := make(map[string]string, offlineWrites+1)
	for i := range offlineWrites {
		want[workPath+offlineName("offline", i)] = offlineUID("offline", i)
	}

	rad.Start()
	t0 := time.Now()
	srv.putNew(t, workPath+"kick.ics", eventICS("kick@e2e.test", "Kick", time.Date(2031, 7, 1, 8, 0, 0, 0, time.UTC)))
	want[workPath+"kick.ics"] = "kick@e2e.test"
	waitUntil(t, "replay of every offline write", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		n := len(rad.hrefs(coll))
		return n == len(want)+1, fmt.Sprintf("%d of %d objects in radicale", n, len(want)+1)
	})
	t.Logf("%d writes replayed into radicale %v after the kick", len(want), time.Since(t0).Round(time.Millisecond))
	checkUpstreamExactlyOnce(t, rad, coll, want)
	// Stay a moment for the next poll: nothing is pushed twice.
	time.Sleep(time.Second)
	checkUpstreamExactlyOnce(t, rad, coll, want)
	checkDrained(t, srv, config)
}

// TestSyncE2EKillDuringReplay: as TestSyncE2EOffline, but calgate is
// killed with SIGKILL while it replays the writes (once some, and if the
// timing allows not all, have arrived), restarted on the same data file
// and kicked again; every write arrives exactly once.
func TestSyncE2EKillDuringReplay(t *testing.T) {
	rad, coll, config, srv := setUpOffline(t)
	bodies := writeOffline(t, srv, "replay")
	want := make(map[string]string, offlineWrites+2)
	for i := range offlineWrites {
		want[workPath+offlineName("replay", i)] = offlineUID("replay", i)
	}

	rad.Start()
	// Whether the kill below lands between a PUT reaching Radicale and
	// calgate recording it is luck, so make that window certain for
	// three objects: they are upstream already, with the bytes calgate
	// sends (Radicale stores its own serialisation of them), as after a
	// crash right after the push. Their replay must meet them (412 on
	// If-None-Match: *), recognise them, and neither duplicate them nor
	// call them a conflict. Nothing pushes before the kick: after the
	// failures of the offline writes the source is in a long backoff.
	for _, i := range []int{0, offlineWrites / 2, offlineWrites - 1} {
		name := offlineName("replay", i)
		rad.put(coll+name, bodies[workPath+name])
	}
	srv.putNew(t, workPath+"kick-1.ics", eventICS("kick-1@e2e.test", "Kick 1", time.Date(2031, 7, 1, 8, 0, 0, 0, time.UTC)))
	want[workPath+"kick-1.ics"] = "kick-1@e2e.test"
	// Kill once a tenth of the replay is upstream. The upstream listing
	// is polled about as fast as Radicale answers.
	total := len(want) + 1 // and the seed
	var arrived int
	waitUntil(t, "the start of the replay", 30*time.Second, 10*time.Millisecond, func() (bool, string) {
		arrived = len(rad.hrefs(coll))
		return arrived > 1+offlineWrites/10, fmt.Sprintf("%d of %d objects in radicale", arrived, total)
	})
	checkLogs(t, srv)
	srv.kill(t)
	after := len(rad.hrefs(coll))
	if after < total {
		t.Logf("killed calgate during the replay: %d of %d objects upstream when the kill was decided, %d after it", arrived, total, after)
	} else {
		t.Logf("the replay finished before the kill landed (%d of %d upstream when decided); the restart still checks exactly once", arrived, total)
	}

	srv = startCalgate(t, config)
	defer checkLogs(t, srv)
	srv.putNew(t, workPath+"kick-2.ics", eventICS("kick-2@e2e.test", "Kick 2", time.Date(2031, 7, 2, 8, 0, 0, 0, time.UTC)))
	want[workPath+"kick-2.ics"] = "kick-2@e2e.test"
	t0 := time.Now()
	waitUntil(t, "replay after the restart", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		n := len(rad.hrefs(coll))
		return n == len(want)+1, fmt.Sprintf("%d of %d objects in radicale", n, len(want)+1)
	})
	t.Logf("replay complete %v after the restart's kick", time.Since(t0).Round(time.Millisecond))
	checkUpstreamExactlyOnce(t, rad, coll, want)

	// calgate still serves each object once, with what was written (the
	// upstream's copy of an object calgate pushed is not a conflict).
	objs := srv.calendarObjects(t, workPath) // fails on a duplicate UID
	if len(objs) != len(want)+1 {
		t.Errorf("calgate serves %d objects in work, want %d", len(objs), len(want)+1)
	}
	for p, uid := range want {
		if o, ok := objs[uid]; !ok || mustURL(t, o.Href).Path != p {
			t.Errorf("calgate: UID %s at %q, want %s", uid, o.Href, p)
		}
	}
	time.Sleep(time.Second)
	checkUpstreamExactlyOnce(t, rad, coll, want)
	checkDrained(t, srv, config)
}
