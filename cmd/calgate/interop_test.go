package main

// End-to-end interoperability tests: the calgate binary runs as a real
// process on 127.0.0.1 over a real store, and real clients talk to it
// (python3-caldav, vdirsyncer, go-webdav's caldav.Client). The crash
// tests, which kill the process with SIGKILL under concurrent writes, are
// in matrix_crash_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"github.com/emersion/go-webdav/carddav"
)

// testPassword is the password of testUser; testHash (config_test.go) is
// its bcrypt hash at MinCost.
const (
	testUser     = "alice"
	testPassword = "secret"
)

// personalPath is the URL path of testUser's configured local calendar.
const personalPath = "/dav/calendars/" + testUser + "/personal/"

// calgateBuild is the calgate binary, built once per test binary run into
// a temporary directory that TestMain removes.
var calgateBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// calgateBinary builds calgate once (with -race when the tests run with
// -race, so that the server's own data races fail the tests too) and
// returns the path of the binary.
func calgateBinary(t *testing.T) string {
	t.Helper()
	calgateBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "calgate-e2e-")
		if err != nil {
			calgateBuild.err = err
			return
		}
		calgateBuild.dir = dir
		bin := filepath.Join(dir, "calgate")
		args := []string{"build", "-o", bin}
		if raceEnabled() {
			args = append(args, "-race")
		}
		args = append(args, ".")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...) // go test puts GOROOT/bin first on PATH
		if out, err := cmd.CombinedOutput(); err != nil {
			calgateBuild.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
			return
		}
		calgateBuild.path = bin
	})
	if calgateBuild.err != nil {
		t.Fatalf("build calgate: %v", calgateBuild.err)
	}
	return calgateBuild.path
}

// removeCalgateBinary deletes the directory calgateBinary built into.
func removeCalgateBinary() {
	if calgateBuild.dir != "" {
		os.RemoveAll(calgateBuild.dir)
	}
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// requireTool runs probe (a command that succeeds only if the tool is
// usable). If it fails, the test fails on CI and is skipped elsewhere,
// naming the apt-get command that installs the tool.
func requireTool(t *testing.T, aptPackages string, probe ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, probe[0], probe[1:]...).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s is not usable (%v: %s); install it with: sudo apt-get install -y %s",
		probe[0], err, bytes.TrimSpace(out), aptPackages)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// writeCalgateConfig writes a config for one user (testUser) with two
// local calendars, personal (all components) and tasks (VTODO only),
// listening on a free port of 127.0.0.1, with its data file in dir.
func writeCalgateConfig(t *testing.T, dir string) string {
	t.Helper()
	yml := fmt.Sprintf(`listen: "127.0.0.1:0"
data: %q
users:
  - name: %s
    password_hash: %q
    calendars:
      - id: personal
        name: Personal
      - id: tasks
        name: Tasks
        components: [VTODO]
`, filepath.Join(dir, "calgate.db"), testUser, testHash)
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// calgateProcess is a running calgate binary.
type calgateProcess struct {
	URL    string // the bare server URL, http://127.0.0.1:PORT/
	client *http.Client
	logs   *syncBuffer
	cmd    *exec.Cmd

	stopped chan struct{} // closed when the process has exited
	waitErr error         // set before stopped is closed
}

// startCalgate starts calgate with the config file and waits until it
// listens. At cleanup a still running process is stopped with SIGTERM.
func startCalgate(t *testing.T, config string) *calgateProcess {
	t.Helper()
	bin := calgateBinary(t)
	// The context bounds the process's life in case a test hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	p := &calgateProcess{logs: new(syncBuffer), stopped: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, "serve", "-config", config, "-log-level", "info")
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start calgate: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		cancel()
		close(p.stopped)
	}()
	t.Cleanup(func() {
		select {
		case <-p.stopped:
		default:
			p.stop(t)
		}
		if p.client != nil {
			p.client.CloseIdleConnections()
		}
		if strings.Contains(p.logs.String(), "DATA RACE") {
			t.Errorf("the calgate process reported a data race:\n%s", p.logs.String())
		}
	})
	addr := waitListening(t, p.logs, p.stopped)
	p.URL = "http://" + addr + "/"
	p.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return p
}

// stop sends SIGTERM and checks that calgate exits cleanly (status 0)
// within its grace period.
func (p *calgateProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM calgate: %v", err)
	}
	select {
	case <-p.stopped:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.stopped
		t.Errorf("calgate did not stop within 20s of SIGTERM:\n%s", p.logs.String())
		return
	}
	if p.waitErr != nil {
		t.Errorf("calgate exited with %v after SIGTERM:\n%s", p.waitErr, p.logs.String())
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *calgateProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("SIGKILL calgate: %v", err)
	}
	select {
	case <-p.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("calgate still running 10s after SIGKILL")
	}
}

// do sends one authenticated request to path (relative to the server) and
// returns the response with its body read.
func (p *calgateProcess) do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(p.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(req.Header, hdr)
	req.SetBasicAuth(testUser, testPassword)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return resp, data, nil
}

// mustDo is do that fails the test on a transport error.
func (p *calgateProcess) mustDo(t *testing.T, method, path string, body []byte, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, data, err := p.do(t.Context(), method, path, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, data
}

// multistatus is a DAV:multistatus body (RFC 4918 §14.16), with the
// properties these tests read.
type multistatus struct {
	XMLName   xml.Name     `xml:"DAV: multistatus"`
	Responses []msResponse `xml:"DAV: response"`
	SyncToken string       `xml:"DAV: sync-token"`
}

type msResponse struct {
	Href     string     `xml:"DAV: href"`
	Status   string     `xml:"DAV: status"`
	Propstat []propstat `xml:"DAV: propstat"`
}

type propstat struct {
	Status string  `xml:"DAV: status"`
	Prop   davProp `xml:"DAV: prop"`
}

type davProp struct {
	ETag         string `xml:"DAV: getetag"`
	CTag         string `xml:"http://calendarserver.org/ns/ getctag"`
	SyncToken    string `xml:"DAV: sync-token"`
	CalendarData string `xml:"urn:ietf:params:xml:ns:caldav calendar-data"`
}

// found returns the properties of the 200 propstat of r.
func (r msResponse) found() (davProp, bool) {
	for _, ps := range r.Propstat {
		if strings.Contains(ps.Status, " 200 ") {
			return ps.Prop, true
		}
	}
	return davProp{}, false
}

// davMultistatus sends a PROPFIND or REPORT and decodes the 207 multistatus.
func (p *calgateProcess) davMultistatus(t *testing.T, method, path, depth, body string) multistatus {
	t.Helper()
	resp, data := p.mustDo(t, method, path, []byte(body), http.Header{
		"Depth":        {depth},
		"Content-Type": {"application/xml; charset=utf-8"},
	})
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("%s %s: %s, want 207:\n%s", method, path, resp.Status, data)
	}
	var ms multistatus
	if err := xml.Unmarshal(data, &ms); err != nil {
		t.Fatalf("%s %s: decode multistatus: %v\n%s", method, path, err, data)
	}
	return ms
}

// ctag returns the calendar's CS:getctag and DAV:sync-token.
func (p *calgateProcess) ctag(t *testing.T, calPath string) (ctag, syncToken string) {
	t.Helper()
	ms := p.davMultistatus(t, "PROPFIND", calPath, "0", `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/"><D:prop><CS:getctag/><D:sync-token/></D:prop></D:propfind>`)
	if len(ms.Responses) != 1 {
		t.Fatalf("PROPFIND %s Depth 0: %d responses", calPath, len(ms.Responses))
	}
	prop, ok := ms.Responses[0].found()
	if !ok || prop.CTag == "" || prop.SyncToken == "" {
		t.Fatalf("PROPFIND %s: no getctag or sync-token in %+v", calPath, ms.Responses[0])
	}
	return prop.CTag, prop.SyncToken
}

// davObject is one calendar object resource as served.
type davObject struct {
	Href    string
	ETag    string
	Data    []byte
	UID     string
	Summary string
}

// calendarObjects lists every object of the calendar with a
// calendar-query REPORT (RFC 4791 §7.8) for VCALENDAR, keyed by UID.
func (p *calgateProcess) calendarObjects(t *testing.T, calPath string) map[string]davObject {
	t.Helper()
	ms := p.davMultistatus(t, "REPORT", calPath, "1", `<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"/></C:filter>
</C:calendar-query>`)
	objs := make(map[string]davObject, len(ms.Responses))
	for _, r := range ms.Responses {
		prop, ok := r.found()
		if !ok || prop.ETag == "" || prop.CalendarData == "" {
			t.Fatalf("REPORT %s: response without getetag and calendar-data: %+v", calPath, r)
		}
		o := davObject{Href: r.Href, ETag: prop.ETag, Data: []byte(prop.CalendarData)}
		o.UID, o.Summary = parseObject(t, o.Data)
		if _, dup := objs[o.UID]; dup {
			t.Fatalf("REPORT %s: UID %s served twice", calPath, o.UID)
		}
		objs[o.UID] = o
	}
	return objs
}

// parseObject decodes an iCalendar object and returns the UID and SUMMARY
// of its first component.
func parseObject(t *testing.T, data []byte) (uid, summary string) {
	t.Helper()
	cal, err := ical.NewDecoder(bytes.NewReader(data)).Decode()
	if err != nil {
		t.Fatalf("decode iCalendar: %v\n%s", err, data)
	}
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			continue
		}
		uid, err = c.Props.Text(ical.PropUID)
		if err != nil || uid == "" {
			t.Fatalf("component %s without UID (%v):\n%s", c.Name, err, data)
		}
		summary, _ = c.Props.Text(ical.PropSummary)
		return uid, summary
	}
	t.Fatalf("no component in:\n%s", data)
	return "", ""
}

// eventICS is a one-event VCALENDAR with CRLF line ends.
func eventICS(uid, summary string, start time.Time, extra ...string) []byte {
	lines := []string{
		"BEGIN:VCALENDAR",
		"VERSION:2.0",
		"PRODID:-//calgate tests//interop_test.go//EN",
		"BEGIN:VEVENT",
		"UID:" + uid,
		"DTSTAMP:20240101T000000Z",
		"DTSTART:" + start.UTC().Format("20060102T150405Z"),
		"DTEND:" + start.Add(time.Hour).UTC().Format("20060102T150405Z"),
		"SUMMARY:" + summary,
	}
	lines = append(lines, extra...)
	lines = append(lines, "END:VEVENT", "END:VCALENDAR", "")
	return []byte(strings.Join(lines, "\r\n"))
}

// scrubbedEnv is the environment for client tools: HOME and the XDG
// directories point into a temporary directory, so nothing reads or
// writes the user's own configuration.
func scrubbedEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"LC_ALL=C.UTF-8",
		"LANG=C.UTF-8",
		"PYTHONDONTWRITEBYTECODE=1",
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", k == "LANG", k == "LC_ALL", strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "PYTHON"):
		default:
			env = append(env, kv)
		}
	}
	return env
}

// TestPythonCaldav runs testdata/caldav_client.py (python3-caldav) against
// calgate: discovery from the bare URL, MKCALENDAR, events and a task,
// reads, a date search, calendar-multiget, a sync-collection round and
// deletes. The script checks each step; this test checks its exit status
// and its JSON summary.
func TestPythonCaldav(t *testing.T) {
	const python = "/usr/bin/python3" // a different python3 may come first on PATH
	requireTool(t, "python3-caldav python3-icalendar", python, "-c", "import caldav, icalendar")
	srv := startCalgate(t, writeCalgateConfig(t, t.TempDir()))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "caldav_client.py"), srv.URL, testUser, testPassword)
	cmd.Env = scrubbedEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()

	out := strings.TrimSpace(stdout.String())
	last := out[strings.LastIndexByte(out, '\n')+1:]
	var got struct {
		OK                  bool     `json:"ok"`
		Failures            []string `json:"failures"`
		Exception           string   `json:"exception"`
		Principal           string   `json:"principal"`
		Home                string   `json:"home"`
		CalendarsBefore     []string `json:"calendars_before"`
		CalendarsAfter      []string `json:"calendars_after"`
		Created             string   `json:"created"`
		SupportedComponents []string `json:"supported_components"`
		Events              int      `json:"events"`
		Todos               int      `json:"todos"`
		Search              []string `json:"search"`
		Multiget            int      `json:"multiget"`
		SyncInitial         int      `json:"sync_initial"`
		SyncDelta           []string `json:"sync_delta"`
		SyncAgain           int      `json:"sync_again"`
		EventsLeft          []string `json:"events_left"`
	}
	if err := json.Unmarshal([]byte(last), &got); err != nil {
		t.Fatalf("caldav_client.py: %v; last line is not a JSON summary (%v)\nstdout:\n%s\nstderr:\n%s\ncalgate:\n%s",
			runErr, err, out, stderr.String(), srv.logs.String())
	}
	if runErr != nil || !got.OK {
		t.Fatalf("caldav_client.py: %v\nfailures: %q\nexception: %s\nstderr:\n%s", runErr, got.Failures, got.Exception, stderr.String())
	}

	base := strings.TrimSuffix(srv.URL, "/")
	for _, c := range []struct{ name, got, want string }{
		{"principal", got.Principal, base + "/dav/principals/" + testUser + "/"},
		{"home", got.Home, base + "/dav/calendars/" + testUser + "/"},
		{"created", got.Created, base + "/dav/calendars/" + testUser + "/pytest-cal/"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if want := []string{"Personal", "Tasks"}; !slices.Equal(got.CalendarsBefore, want) || !slices.Equal(got.CalendarsAfter, want) {
		t.Errorf("calendars before %q, after %q; want %q both times", got.CalendarsBefore, got.CalendarsAfter, want)
	}
	if !slices.Equal(got.SupportedComponents, []string{"VEVENT", "VJOURNAL", "VTODO"}) {
		t.Errorf("supported components of the new calendar: %q", got.SupportedComponents)
	}
	if got.Events != 3 || got.Todos != 1 || got.Multiget != 3 || got.SyncInitial != 4 || got.SyncAgain != 0 {
		t.Errorf("events %d todos %d multiget %d sync_initial %d sync_again %d, want 3 1 3 4 0",
			got.Events, got.Todos, got.Multiget, got.SyncInitial, got.SyncAgain)
	}
	if want := []string{"py-ev-1@calgate.test", "py-ev-2@calgate.test"}; !slices.Equal(got.Search, want) {
		t.Errorf("date search found %q, want %q", got.Search, want)
	}
	if len(got.SyncDelta) != 2 {
		t.Errorf("sync delta %q, want the changed and the deleted event", got.SyncDelta)
	}
	if want := []string{"py-ev-1@calgate.test"}; !slices.Equal(got.EventsLeft, want) {
		t.Errorf("events left %q, want %q", got.EventsLeft, want)
	}

	// The calendar the script deleted is gone on the server too.
	resp, _ := srv.mustDo(t, "PROPFIND", "/dav/calendars/"+testUser+"/pytest-cal/", nil, http.Header{"Depth": {"0"}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("PROPFIND of the deleted calendar: %s, want 404", resp.Status)
	}
}

// vdirsyncerChange matches the lines vdirsyncer prints when it changes
// either side.
var vdirsyncerChange = regexp.MustCompile(`(?im)^\s*(copying|updating|deleting)\b.*$`)

// TestVdirsyncer syncs a local vdir of 50 events with calgate both ways:
// an initial upload, then edits and deletes on both sides, then a sync
// that must change nothing.
func TestVdirsyncer(t *testing.T) {
	requireTool(t, "vdirsyncer", "vdirsyncer", "--version")
	srv := startCalgate(t, writeCalgateConfig(t, t.TempDir()))

	dir := t.TempDir()
	vdir := filepath.Join(dir, "vdir")
	local := filepath.Join(vdir, "personal") // pre-created, so discover does not prompt
	if err := os.MkdirAll(local, 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "vdirsyncer.conf")
	conf := fmt.Sprintf(`[general]
status_path = %q

[pair calgate]
a = "local"
b = "remote"
collections = ["personal"]

[storage local]
type = "filesystem"
path = %q
fileext = ".ics"

[storage remote]
type = "caldav"
url = %q
username = %q
password = %q
`, filepath.Join(dir, "status")+"/", vdir+"/", srv.URL, testUser, testPassword)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := scrubbedEnv(t)
	vdirsyncer := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "vdirsyncer", append([]string{"-c", config}, args...)...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader("y\n") // in case discover asks to create a collection
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vdirsyncer %s: %v\n%s\ncalgate:\n%s", strings.Join(args, " "), err, out, srv.logs.String())
		}
		t.Logf("vdirsyncer %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}

	const n = 50
	uid := func(i int) string { return fmt.Sprintf("vds-%03d@calgate.test", i) }
	file := func(i int) string { return filepath.Join(local, fmt.Sprintf("vds-%03d.ics", i)) }
	start := time.Date(2030, 5, 1, 9, 0, 0, 0, time.UTC)
	for i := range n {
		body := eventICS(uid(i), fmt.Sprintf("Event %d", i), start.Add(time.Duration(i)*25*time.Hour))
		if err := os.WriteFile(file(i), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Sync 1: everything goes up.
	vdirsyncer("discover")
	out := vdirsyncer("sync")
	if got := len(vdirsyncerChange.FindAllString(out, -1)); got != n {
		t.Errorf("first sync printed %d changes, want %d uploads", got, n)
	}
	remote := srv.calendarObjects(t, personalPath)
	if len(remote) != n {
		t.Fatalf("calgate holds %d objects after the first sync, want %d", len(remote), n)
	}
	for i := range n {
		o, ok := remote[uid(i)]
		if !ok || o.Summary != fmt.Sprintf("Event %d", i) {
			t.Errorf("calgate object %s = %+v", uid(i), o)
		}
	}

	// Local side: edit 0-2, delete 3-4. Calgate side: edit 10-12, delete 13-14.
	want := make(map[string]string) // UID -> SUMMARY expected on both sides
	for i := range n {
		want[uid(i)] = fmt.Sprintf("Event %d", i)
	}
	for i := range 3 {
		s := fmt.Sprintf("Event %d (edited locally)", i)
		body := eventICS(uid(i), s, start.Add(time.Duration(i)*25*time.Hour), "SEQUENCE:1")
		if err := os.WriteFile(file(i), body, 0o600); err != nil {
			t.Fatal(err)
		}
		want[uid(i)] = s
	}
	for i := 3; i < 5; i++ {
		if err := os.Remove(file(i)); err != nil {
			t.Fatal(err)
		}
		delete(want, uid(i))
	}
	for i := 10; i < 13; i++ {
		o := remote[uid(i)]
		s := fmt.Sprintf("Event %d (edited on calgate)", i)
		body := eventICS(uid(i), s, start.Add(time.Duration(i)*25*time.Hour), "SEQUENCE:1")
		resp, data := srv.mustDo(t, http.MethodPut, o.Href, body, http.Header{
			"Content-Type": {"text/calendar; charset=utf-8"},
			"If-Match":     {o.ETag},
		})
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %s, want 204 or 200:\n%s", o.Href, resp.Status, data)
		}
		if etag := resp.Header.Get("ETag"); etag == "" || etag == o.ETag {
			t.Errorf("PUT %s: ETag %q after a change, was %q", o.Href, etag, o.ETag)
		}
		want[uid(i)] = s
	}
	for i := 13; i < 15; i++ {
		o := remote[uid(i)]
		resp, data := srv.mustDo(t, http.MethodDelete, o.Href, nil, http.Header{"If-Match": {o.ETag}})
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s: %s, want 204 or 200:\n%s", o.Href, resp.Status, data)
		}
		delete(want, uid(i))
	}

	// Sync 2: both sides converge.
	vdirsyncer("sync")
	localObjs := readVdir(t, local)
	remote = srv.calendarObjects(t, personalPath)
	if len(want) != n-4 {
		t.Fatalf("test bug: %d expected objects", len(want))
	}
	for side, got := range map[string]map[string]string{"local": localObjs, "calgate": summaries(remote)} {
		for u, s := range want {
			if got[u] != s {
				t.Errorf("%s after the second sync: %s has SUMMARY %q, want %q", side, u, got[u], s)
			}
		}
		for u := range got {
			if _, ok := want[u]; !ok {
				t.Errorf("%s after the second sync holds %s, which was deleted", side, u)
			}
		}
	}

	// Sync 3: nothing to do, and nothing done on either side.
	ctag, token := srv.ctag(t, personalPath)
	before := snapshotDir(t, local)
	out = vdirsyncer("sync")
	if changes := vdirsyncerChange.FindAllString(out, -1); len(changes) > 0 {
		t.Errorf("third sync changed something:\n%s", strings.Join(changes, "\n"))
	}
	if ctag2, token2 := srv.ctag(t, personalPath); ctag2 != ctag || token2 != token {
		t.Errorf("third sync changed calgate: getctag %q -> %q, sync-token %q -> %q", ctag, ctag2, token, token2)
	}
	if after := snapshotDir(t, local); !maps.Equal(before, after) {
		t.Errorf("third sync changed the vdir:\nbefore %v\nafter  %v", before, after)
	}
}

// readVdir returns UID -> SUMMARY of the .ics files in dir.
func readVdir(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.ics"))
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		uid, summary := parseObject(t, data)
		if _, dup := m[uid]; dup {
			t.Errorf("vdir holds UID %s twice", uid)
		}
		m[uid] = summary
	}
	return m
}

func summaries(objs map[string]davObject) map[string]string {
	m := make(map[string]string, len(objs))
	for u, o := range objs {
		m[u] = o.Summary
	}
	return m
}

// snapshotDir returns file name -> modification time and content of
// every file in dir.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = info.ModTime().Format(time.RFC3339Nano) + " " + string(data)
	}
	return m
}

// goEvent is a one-event calendar built with go-ical.
func goEvent(uid, summary string, start time.Time) *ical.Calendar {
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "-//calgate tests//go-webdav//EN")
	ev := ical.NewEvent()
	ev.Props.SetText(ical.PropUID, uid)
	ev.Props.SetDateTime(ical.PropDateTimeStamp, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	ev.Props.SetDateTime(ical.PropDateTimeStart, start)
	ev.Props.SetDateTime(ical.PropDateTimeEnd, start.Add(time.Hour))
	ev.Props.SetText(ical.PropSummary, summary)
	cal.Children = append(cal.Children, ev.Component)
	return cal
}

// summaryOf returns the SUMMARY of the first component of cal.
func summaryOf(cal *ical.Calendar) string {
	if cal == nil || len(cal.Children) == 0 {
		return ""
	}
	s, _ := cal.Children[0].Props.Text(ical.PropSummary)
	return s
}

// TestGoWebdavClient drives calgate with go-webdav's CalDAV client, the
// library calgate's upstream side will use against other servers.
func TestGoWebdavClient(t *testing.T) {
	srv := startCalgate(t, writeCalgateConfig(t, t.TempDir()))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hc := webdav.HTTPClientWithBasicAuth(&http.Client{Timeout: 10 * time.Second}, testUser, testPassword)
	cl, err := caldav.NewClient(hc, srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	principal, err := cl.FindCurrentUserPrincipal(ctx)
	if err != nil {
		t.Fatalf("FindCurrentUserPrincipal: %v", err)
	}
	if want := "/dav/principals/" + testUser + "/"; principal != want {
		t.Errorf("principal %q, want %q", principal, want)
	}
	home, err := cl.FindCalendarHomeSet(ctx, principal)
	if err != nil {
		t.Fatalf("FindCalendarHomeSet: %v", err)
	}
	if want := "/dav/calendars/" + testUser + "/"; home != want {
		t.Errorf("calendar home %q, want %q", home, want)
	}
	cals, err := cl.FindCalendars(ctx, home)
	if err != nil {
		t.Fatalf("FindCalendars: %v", err)
	}
	byPath := make(map[string]caldav.Calendar)
	for _, c := range cals {
		byPath[c.Path] = c
	}
	if c := byPath[personalPath]; c.Name != "Personal" || !slices.Equal(sorted(c.SupportedComponentSet), []string{"VEVENT", "VJOURNAL", "VTODO"}) {
		t.Errorf("personal calendar = %+v", c)
	}
	if c := byPath[home+"tasks/"]; c.Name != "Tasks" || !slices.Equal(c.SupportedComponentSet, []string{"VTODO"}) {
		t.Errorf("tasks calendar = %+v", c)
	}
	if len(cals) != 2 {
		t.Errorf("FindCalendars found %d calendars, want 2: %+v", len(cals), cals)
	}

	// Three events, one outside the query's time range, and a task.
	t0 := time.Date(2030, 2, 1, 10, 0, 0, 0, time.UTC)
	type put struct {
		path, uid, summary, etag string
	}
	puts := []put{
		{path: personalPath + "gw-1.ics", uid: "gw-1@calgate.test", summary: "Go one"},
		{path: personalPath + "gw-2.ics", uid: "gw-2@calgate.test", summary: "Go two"},
		{path: personalPath + "gw-3.ics", uid: "gw-3@calgate.test", summary: "Go three"},
	}
	starts := []time.Time{t0, t0.Add(48 * time.Hour), t0.AddDate(0, 2, 0)}
	for i := range puts {
		obj, err := cl.PutCalendarObject(ctx, puts[i].path, goEvent(puts[i].uid, puts[i].summary, starts[i]))
		if err != nil {
			t.Fatalf("PutCalendarObject %s: %v", puts[i].path, err)
		}
		if obj.ETag == "" {
			t.Errorf("PutCalendarObject %s: no ETag", puts[i].path)
		}
		puts[i].etag = obj.ETag
	}
	todo := ical.NewCalendar()
	todo.Props.SetText(ical.PropVersion, "2.0")
	todo.Props.SetText(ical.PropProductID, "-//calgate tests//go-webdav//EN")
	vtodo := ical.NewComponent(ical.CompToDo)
	vtodo.Props.SetText(ical.PropUID, "gw-todo@calgate.test")
	vtodo.Props.SetDateTime(ical.PropDateTimeStamp, t0)
	vtodo.Props.SetDateTime(ical.PropDue, t0.Add(24*time.Hour))
	vtodo.Props.SetText(ical.PropSummary, "Go task")
	todo.Children = append(todo.Children, vtodo)
	todoPath := personalPath + "gw-todo.ics"
	if _, err := cl.PutCalendarObject(ctx, todoPath, todo); err != nil {
		t.Fatalf("PutCalendarObject %s: %v", todoPath, err)
	}

	for _, p := range puts {
		obj, err := cl.GetCalendarObject(ctx, p.path)
		if err != nil {
			t.Fatalf("GetCalendarObject %s: %v", p.path, err)
		}
		if obj.ETag != p.etag || summaryOf(obj.Data) != p.summary || obj.Path != p.path {
			t.Errorf("GetCalendarObject %s: path %q ETag %q summary %q, want ETag %q summary %q",
				p.path, obj.Path, obj.ETag, summaryOf(obj.Data), p.etag, p.summary)
		}
	}

	allData := caldav.CalendarCompRequest{Name: "VCALENDAR", AllProps: true, AllComps: true}
	got, err := cl.MultiGetCalendar(ctx, personalPath, &caldav.CalendarMultiGet{
		Paths:       []string{puts[0].path, puts[1].path, puts[2].path},
		CompRequest: allData,
	})
	if err != nil {
		t.Fatalf("MultiGetCalendar: %v", err)
	}
	if len(got) != 3 {
		t.Errorf("MultiGetCalendar returned %d objects, want 3", len(got))
	}
	for _, o := range got {
		i := slices.IndexFunc(puts, func(p put) bool { return p.path == o.Path })
		if i < 0 {
			t.Errorf("MultiGetCalendar returned unknown path %q", o.Path)
			continue
		}
		if o.ETag != puts[i].etag || summaryOf(o.Data) != puts[i].summary {
			t.Errorf("MultiGetCalendar %s: ETag %q summary %q, want %q %q", o.Path, o.ETag, summaryOf(o.Data), puts[i].etag, puts[i].summary)
		}
	}

	query := func(comp string, start, end time.Time) []string {
		t.Helper()
		objs, err := cl.QueryCalendar(ctx, personalPath, &caldav.CalendarQuery{
			CompRequest: allData,
			CompFilter: caldav.CompFilter{
				Name:  "VCALENDAR",
				Comps: []caldav.CompFilter{{Name: comp, Start: start, End: end}},
			},
		})
		if err != nil {
			t.Fatalf("QueryCalendar %s %v-%v: %v", comp, start, end, err)
		}
		var paths []string
		for _, o := range objs {
			if o.Data == nil || len(o.Data.Children) == 0 {
				t.Errorf("QueryCalendar: %s without calendar data", o.Path)
			}
			paths = append(paths, o.Path)
		}
		return sorted(paths)
	}
	if got, want := query("VEVENT", t0.Add(-24*time.Hour), t0.Add(10*24*time.Hour)), []string{puts[0].path, puts[1].path}; !slices.Equal(got, want) {
		t.Errorf("QueryCalendar VEVENT in February: %q, want %q", got, want)
	}
	if got, want := query("VTODO", time.Time{}, time.Time{}), []string{todoPath}; !slices.Equal(got, want) {
		t.Errorf("QueryCalendar VTODO: %q, want %q", got, want)
	}

	// go-webdav v0.7.0's caldav.Client has no SyncCollection; its
	// carddav.Client.SyncCollection sends the protocol-generic RFC 6578
	// REPORT (asking for a CardDAV property calgate does not have, which
	// must come back in a 404 propstat) and is what is there to use.
	sc, err := carddav.NewClient(hc, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	initial, err := sc.SyncCollection(ctx, personalPath, &carddav.SyncQuery{})
	if err != nil {
		t.Fatalf("SyncCollection (initial): %v", err)
	}
	var paths []string
	for _, o := range initial.Updated {
		paths = append(paths, o.Path)
	}
	if want := sorted([]string{puts[0].path, puts[1].path, puts[2].path, todoPath}); !slices.Equal(sorted(paths), want) || len(initial.Deleted) != 0 {
		t.Errorf("initial sync: updated %q deleted %q, want updated %q", sorted(paths), initial.Deleted, want)
	}
	if initial.SyncToken == "" {
		t.Fatal("initial sync: no sync token")
	}

	changed, err := cl.PutCalendarObject(ctx, puts[0].path, goEvent(puts[0].uid, "Go one (changed)", starts[0]))
	if err != nil {
		t.Fatalf("PutCalendarObject (change): %v", err)
	}
	if changed.ETag == puts[0].etag {
		t.Errorf("ETag unchanged after a change: %q", changed.ETag)
	}
	if err := cl.RemoveAll(ctx, puts[1].path); err != nil {
		t.Fatalf("delete %s: %v", puts[1].path, err)
	}
	delta, err := sc.SyncCollection(ctx, personalPath, &carddav.SyncQuery{SyncToken: initial.SyncToken})
	if err != nil {
		t.Fatalf("SyncCollection (delta): %v", err)
	}
	if len(delta.Updated) != 1 || delta.Updated[0].Path != puts[0].path || delta.Updated[0].ETag != changed.ETag {
		t.Errorf("delta sync updated %+v, want only %s with ETag %q", delta.Updated, puts[0].path, changed.ETag)
	}
	if !slices.Equal(delta.Deleted, []string{puts[1].path}) {
		t.Errorf("delta sync deleted %q, want %q", delta.Deleted, puts[1].path)
	}
	if delta.SyncToken == "" || delta.SyncToken == initial.SyncToken {
		t.Errorf("delta sync token %q, initial %q", delta.SyncToken, initial.SyncToken)
	}
	if _, err := cl.GetCalendarObject(ctx, puts[1].path); err == nil {
		t.Errorf("GetCalendarObject of a deleted object succeeded")
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// ackedPut is a write calgate acknowledged (or an object as it serves
// it): the ETag and the bytes.
type ackedPut struct {
	etag string
	body []byte
}
