package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Secrets of TestLogsJSONWithoutSecrets; none may appear in the logs.
const (
	logPassword      = "pw-Kx81qZ-user"
	logWrongPassword = "pw-wrong-77Hq"
	logToken         = "tok-Zr5v2m9Q-4f7a1c9e"
	logWrongToken    = "tok-wrong-Pp3k-8d2b6e"
	logDAVURLPass    = "urlpass-Bq3r"
	logDAVEnvPass    = "envpass-Vw7n"
	logICSURLPass    = "icspass-Ty6c"
)

// startCalgateJSON starts calgate serve with JSON logs at debug, stdout
// and stderr kept apart, and waits until it listens.
func startCalgateJSON(t *testing.T, config string) (p *calgateProcess, stderr *syncBuffer, stdout *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	p = &calgateProcess{logs: new(syncBuffer), stopped: make(chan struct{})}
	stdout = new(syncBuffer)
	p.cmd = exec.CommandContext(ctx, calgateBinary(t), "serve", "-config", config, "-log-level", "debug", "-log-format", "json")
	p.cmd.Stdout, p.cmd.Stderr = stdout, p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
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
			p.kill(t)
		}
	})
	var addr string
	waitUntil(t, "calgate's JSON listening line", 20*time.Second, 20*time.Millisecond, func() (bool, string) {
		for line := range strings.SplitSeq(p.logs.String(), "\n") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "calgate listening" {
				addr = rec.Addr
				return true, ""
			}
		}
		select {
		case <-p.stopped:
			t.Fatalf("calgate exited:\n%s", p.logs.String())
		default:
		}
		return false, p.logs.String()
	})
	p.URL = "http://" + addr + "/"
	p.client = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(p.client.CloseIdleConnections)
	return p, p.logs, stdout
}

// TestLogsJSONWithoutSecrets runs calgate at -log-level debug with JSON
// logs, with requests carrying right and wrong passwords and feed tokens
// (in ?token= and in the path), and upstreams whose URLs and environment
// carry credentials; then it checks that every stderr line is a JSON
// record with time, level and msg, that requests and sync failures were
// logged, and that no secret appears anywhere in the output.
func TestLogsJSONWithoutSecrets(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "upstream broken", http.StatusInternalServerError)
	}))
	defer up.Close()
	hash, err := bcrypt.GenerateFromPassword([]byte(logPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("CALGATE_TEST_LOG_TOKENS", logToken)
	t.Setenv("CALGATE_TEST_LOG_DAVPW", logDAVEnvPass)
	host := strings.TrimPrefix(up.URL, "http://")
	q := strconv.Quote
	yml := strings.NewReplacer("DATA", q(filepath.Join(dir, "calgate.db")), "HASH", q(string(hash)),
		"DAVURL", q("http://davuser:"+logDAVURLPass+"@"+host+"/dav/cal/"),
		"ICSURL", q("http://icsuser:"+logICSURLPass+"@"+host+"/feed.ics")).Replace(`listen: "127.0.0.1:0"
data: DATA
users:
  - name: alice
    password_hash: HASH
    calendars:
      - id: personal
      - id: work
        caldav:
          url: DAVURL
          username: davuser
          password_env: CALGATE_TEST_LOG_DAVPW
          interval: 10s
      - id: holidays
        ics:
          url: ICSURL
          interval: 10s
feeds:
  - name: alice-feed
    calendars: [alice/personal]
    tokens_env: CALGATE_TEST_LOG_TOKENS
`)
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, stderr, stdout := startCalgateJSON(t, cfg)

	for _, tc := range []struct {
		path, user, pw string
		want           int
	}{
		{"/dav/calendars/alice/", "alice", logPassword, http.StatusMultiStatus},
		{"/dav/calendars/alice/", "alice", logWrongPassword, http.StatusUnauthorized},
		{"/feeds/alice-feed.ics?token=" + logToken, "", "", http.StatusOK},
		{"/feeds/" + logToken + "/alice-feed.ics", "", "", http.StatusOK},
		{"/feeds/alice-feed.ics?token=" + logWrongToken, "", "", http.StatusNotFound},
		{"/feeds/" + logWrongToken + "/alice-feed.ics", "", "", http.StatusNotFound},
	} {
		method := http.MethodGet
		if strings.HasPrefix(tc.path, "/dav/") {
			method = "PROPFIND"
		}
		req, err := http.NewRequestWithContext(t.Context(), method, strings.TrimSuffix(srv.URL, "/")+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pw)
			req.Header.Set("Depth", "1")
		}
		resp, err := srv.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %s, want %d", method, tc.path, resp.Status, tc.want)
		}
	}
	waitUntil(t, "both sources to fail once", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		logs := stderr.String()
		return strings.Count(logs, `"msg":"sync failed"`) >= 2, fmt.Sprintf("%d upstream requests", hits.Load())
	})
	srv.stop(t)

	out := stderr.String() + stdout.String()
	secrets := []string{logPassword, logWrongPassword, string(hash), logToken, logWrongToken,
		logDAVURLPass, logDAVEnvPass, logICSURLPass,
		base64.StdEncoding.EncodeToString([]byte("alice:" + logPassword)),
		base64.StdEncoding.EncodeToString([]byte("alice:" + logWrongPassword)),
		base64.StdEncoding.EncodeToString([]byte("davuser:" + logDAVEnvPass)),
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the logs contain the secret %q", s)
		}
	}
	if stdout.String() != "" {
		t.Errorf("serve wrote to stdout: %q", stdout.String())
	}
	msgs := map[string]int{}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %q (%v)", line, err)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k].(string); !ok {
				t.Errorf("line without %s: %q", k, line)
			}
		}
		msg, _ := rec["msg"].(string)
		msgs[msg]++
	}
	if msgs["request"] < 6 || msgs["sync failed"] < 2 || msgs["admin socket listening"] != 1 || msgs["calgate stopped"] != 1 {
		t.Errorf("log messages %v; want a request line per request, the sync failures and the lifecycle", msgs)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", out)
	}
}

// TestRedactAttr checks the loggers' last line of defence against
// secrets, for both formats.
func TestRedactAttr(t *testing.T) {
	for _, format := range []string{logFormatText, logFormatJSON} {
		var buf bytes.Buffer
		log := newLogger(&buf, format, slog.LevelDebug)
		log.Info("x", "password", "hunter2", "Authorization", "Basic aHVudGVyMg==", "token", "t0k",
			"url", "https://bob:hunter3@example.com/cal/", "err", fmt.Errorf("get %q: refused", "http://u:hunter4@h/x"),
			"user", "bob@example.com")
		out := buf.String()
		for _, s := range []string{"hunter2", "aHVudGVyMg", "t0k", "hunter3", "hunter4"} {
			if strings.Contains(out, s) {
				t.Errorf("%s: %q leaked: %s", format, s, out)
			}
		}
		for _, s := range []string{"bob:xxxxx@example.com", "u:xxxxx@h/x", "bob@example.com"} {
			if !strings.Contains(out, s) {
				t.Errorf("%s: %q missing: %s", format, s, out)
			}
		}
	}
	for _, bad := range [][]string{{"-log-format", "xml"}, {"-log-level", "loud"}} {
		code, _, errOut := runCLI(t, "", append([]string{"check-config"}, bad...)...)
		if code != 2 || !strings.Contains(errOut, bad[0]) {
			t.Errorf("check-config %v: exit %d, %q", bad, code, errOut)
		}
	}
}
