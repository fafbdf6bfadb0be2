package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// davServer is a real CalDAV server (Radicale or Xandikos from the
// Debian packages) run on 127.0.0.1 for the length of one test. Stop and
// Start let a test take the upstream away and bring it back, with the
// same port and data.
type davServer struct {
	Kind string // "radicale" or "xandikos"
	// Base is the server's root URL, e.g. "http://127.0.0.1:40123".
	Base string
	// Username and Password are what clients send; Radicale (auth none)
	// makes the username the owner of /Username/, Xandikos ignores them.
	Username, Password string

	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex // protects cmd, done and log
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *bytes.Buffer
}

// davKinds are the servers every CalDAV test runs against.
var davKinds = []string{"radicale", "xandikos"}

// startDAVServer starts a server of kind on a free port with storage in
// a temporary directory and stops it when the test ends. A missing
// binary fails the test when CI=true, and skips it otherwise.
func startDAVServer(t testing.TB, kind string) *davServer {
	t.Helper()
	bin := "/usr/bin/" + kind
	if _, err := os.Stat(bin); err != nil {
		if p, lerr := exec.LookPath(kind); lerr == nil {
			bin = p
		} else {
			msg := fmt.Sprintf("%s not found (%v); install it with: apt-get install radicale xandikos", kind, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	s := &davServer{
		Kind:     kind,
		Username: "alice",
		Password: "secret",
		t:        t,
		bin:      bin,
		dir:      t.TempDir(),
	}
	var err error
	for range 5 { // a free port may be taken before the server binds it
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		s.Base = "http://127.0.0.1:" + strconv.Itoa(s.port)
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting %s: %v", kind, err)
	}
	t.Cleanup(s.Stop)
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the server again after Stop, on the same port and data.
func (s *davServer) Start() {
	s.t.Helper()
	var err error
	for range 20 { // the old socket may linger for a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restarting %s: %v", s.Kind, err)
}

func (s *davServer) start() error {
	var args []string
	switch s.Kind {
	case "radicale":
		args = []string{
			"--storage-filesystem-folder", filepath.Join(s.dir, "collections"),
			"--server-hosts", "127.0.0.1:" + strconv.Itoa(s.port),
			"--auth-type", "none",
			"--rights-type", "owner_only",
			"--logging-level", "warning",
		}
	case "xandikos":
		args = []string{"--defaults", "-d", s.dir, "-l", "127.0.0.1", "-p", strconv.Itoa(s.port)}
	default:
		return fmt.Errorf("unknown server kind %q", s.Kind)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+s.dir)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &s.mu, w: log}, &lockedWriter{mu: &s.mu, w: log}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			s.mu.Lock()
			out := log.String()
			s.mu.Unlock()
			return fmt.Errorf("%s exited: %v\n%s", s.Kind, err, out)
		default:
		}
		if s.answers() {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s did not answer on %s within 20s", s.Kind, s.Base)
		}
		time.Sleep(50 * time.Millisecond)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, log
	s.mu.Unlock()
	go func() {
		<-exited // Wait was called above
		close(done)
	}()
	return nil
}

// answers reports whether the server answers HTTP.
func (s *davServer) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "OPTIONS", s.Base+"/", nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// Stop kills the server and waits until its port is closed.
func (s *davServer) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	for range 100 {
		if !s.answers() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns what the server printed.
func (s *davServer) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// NewCalendar creates a calendar collection called name and returns its
// URL (with a trailing slash).
func (s *davServer) NewCalendar(name string) string {
	s.t.Helper()
	var u string
	switch s.Kind {
	case "radicale":
		u = s.Base + "/" + s.Username + "/" + name + "/"
	default:
		u = s.Base + "/user/calendars/" + name + "/"
	}
	resp := s.Do("MKCALENDAR", u, nil, nil)
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("MKCALENDAR %s: %s\n%s", u, resp.Status, s.Log())
	}
	return u
}

// davResp is a response with its body read.
type davResp struct {
	StatusCode int
	Status     string
	Header     http.Header
	Body       []byte
}

// Do sends one request to the server directly (as another client of
// the upstream would) and fails the test on a transport error.
func (s *davServer) Do(method, u string, hdr http.Header, body []byte) davResp {
	s.t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "text/calendar; charset=utf-8")
	}
	req.SetBasicAuth(s.Username, s.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return davResp{StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header, Body: data}
}

// Put stores data at u unconditionally and returns the ETag.
func (s *davServer) Put(u string, data []byte) string {
	s.t.Helper()
	r := s.Do(http.MethodPut, u, nil, data)
	if r.StatusCode/100 != 2 {
		s.t.Fatalf("PUT %s: %s\n%s", u, r.Status, r.Body)
	}
	return r.Header.Get("ETag")
}

// Get returns the body of u, or nil on 404.
func (s *davServer) Get(u string) []byte {
	s.t.Helper()
	r := s.Do(http.MethodGet, u, nil, nil)
	if r.StatusCode == http.StatusNotFound {
		return nil
	}
	if r.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %s", u, r.Status)
	}
	return r.Body
}

// Delete deletes u unconditionally.
func (s *davServer) Delete(u string) {
	s.t.Helper()
	r := s.Do(http.MethodDelete, u, nil, nil)
	if r.StatusCode/100 != 2 {
		s.t.Fatalf("DELETE %s: %s", u, r.Status)
	}
}

// lockedWriter serialises writes of the server's stdout and stderr.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
