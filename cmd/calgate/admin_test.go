package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// Names of the ops test config (writeOpsConfig).
const (
	opsFeed      = "alice-all"
	opsTokensEnv = "CALGATE_TEST_OPS_TOKENS"
	opsToken     = "ops-feed-token-5b1f0c"
)

// writeOpsConfig writes a config for testUser with a local calendar
// (personal), a VTODO-only one (tasks), a calendar mirroring the .ics
// feed at icsURL every 10 s (holidays), and a feed of all three.
func writeOpsConfig(t *testing.T, dir, icsURL string) string {
	t.Helper()
	t.Setenv(opsTokensEnv, opsToken)
	q := strconv.Quote
	yml := strings.NewReplacer("DATA", q(filepath.Join(dir, "calgate.db")), "USER", testUser, "HASH", q(testHash),
		"ICSURL", q(icsURL), "FEED", opsFeed, "TOKENS", opsTokensEnv).Replace(`listen: "127.0.0.1:0"
data: DATA
users:
  - name: USER
    password_hash: HASH
    calendars:
      - id: personal
        name: Personal
      - id: tasks
        components: [VTODO]
      - id: holidays
        ics:
          url: ICSURL
          interval: 10s
feeds:
  - name: FEED
    calendars: [USER/personal, USER/tasks, USER/holidays]
    tokens_env: TOKENS
`)
	p := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runBinary runs the calgate binary with args (as an admin would, from a
// shell) and returns its exit code, stdout and stderr.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, calgateBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("calgate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	return 0, "", ""
}

// statusKeys are the keys of every element of status -json.
var statusKeys = []string{"calendar", "conflicts", "failures", "kind", "last_attempt", "last_error",
	"last_success", "next_sync", "notes", "outbox", "source", "user"}

// parseStatusJSON decodes status -json output, checking that each row has
// exactly the documented keys and that times are RFC 3339 or null.
func parseStatusJSON(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("status -json is not a JSON array: %v\n%s", err, out)
	}
	for _, r := range rows {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range r {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, statusKeys) {
			t.Errorf("status -json row has keys %v, want %v", keys, statusKeys)
		}
		for _, k := range []string{"last_success", "last_attempt", "next_sync"} {
			if v, ok := r[k].(string); ok {
				if _, err := time.Parse(time.RFC3339, v); err != nil {
					t.Errorf("%s %q is not RFC 3339: %v", k, v, err)
				}
			} else if r[k] != nil {
				t.Errorf("%s is %v, want a string or null", k, r[k])
			}
		}
	}
	return rows
}

// statusTable splits the status table into rows of columns by header
// name (columns are separated by two or more spaces; LAST ERROR, the last,
// may hold single spaces).
func statusTable(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	split := func(s string) []string {
		var cols []string
		for c := range strings.SplitSeq(s, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, c)
			}
		}
		return cols
	}
	header := split(lines[0])
	if want := []string{"SOURCE", "KIND", "LAST SUCCESS", "FAILURES", "OUTBOX", "CONFLICTS", "NEXT SYNC", "LAST ERROR"}; !slices.Equal(header, want) {
		t.Fatalf("status header %q, want %q", header, want)
	}
	rows := map[string]map[string]string{}
	for _, l := range lines[1:] {
		cols := split(l)
		m := map[string]string{}
		for i, h := range header {
			if i < len(cols) {
				m[h] = cols[i]
			}
		}
		rows[cols[0]] = m
	}
	return rows
}

// checkStatusAgree checks that the table and the JSON list the same
// sources with the same counts.
func checkStatusAgree(t *testing.T, table map[string]map[string]string, rows []map[string]any) {
	t.Helper()
	if len(table) != len(rows) {
		t.Errorf("the table has %d sources, the JSON %d", len(table), len(rows))
	}
	for _, r := range rows {
		src, _ := r["source"].(string)
		tr, ok := table[src]
		if !ok {
			t.Errorf("source %q of the JSON is not in the table %v", src, table)
			continue
		}
		for col, key := range map[string]string{"FAILURES": "failures", "OUTBOX": "outbox", "CONFLICTS": "conflicts", "KIND": "kind"} {
			if got, want := tr[col], fmt.Sprint(r[key]); got != want {
				t.Errorf("%s: table %s %q, JSON %s %q", src, col, got, key, want)
			}
		}
	}
}

// TestStatusOffline stores a source state and a conflict, then checks
// that status prints them, escapes control characters from the upstream,
// and that status -json agrees with the table.
func TestStatusOffline(t *testing.T) {
	dir := t.TempDir()
	cfg := writeOpsConfig(t, dir, "http://127.0.0.1:9/holidays.ics")
	if code, out, errOut := runCLI(t, "", "check-config", "-config", cfg); code != 0 {
		t.Fatalf("check-config: %d %s %s", code, out, errOut)
	}
	store, err := cache.Open(filepath.Join(dir, "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Defaults()
	if err := ensureCalendars(store, c, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := store.PutSource(cache.SourceState{ID: testUser + "/holidays", LastAttempt: now.Add(-time.Minute),
		LastSuccess: now.Add(-time.Hour), LastError: "upstream said \x1b[31mno\x1b[0m", Failures: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutConflict(cache.Conflict{User: testUser, Cal: "holidays", Name: "x.ics", Kept: "upstream",
		LoserData: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	code, out, errOut := runCLI(t, "", "status", "-config", cfg)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("status printed a control character from the upstream: %q", out)
	}
	table := statusTable(t, out)
	row := table[testUser+"/holidays"]
	if row["KIND"] != "ics" || row["FAILURES"] != "2" || row["CONFLICTS"] != "1" || row["LAST SUCCESS"] != "1h0m0s ago" && row["LAST SUCCESS"] != "1h0m1s ago" ||
		row["LAST ERROR"] != "upstream said ?[31mno?[0m" || row["NEXT SYNC"] == "" {
		t.Errorf("status row %v", row)
	}
	code, out, errOut = runCLI(t, "", "status", "-json", "-config", cfg)
	if code != 0 {
		t.Fatalf("status -json: exit %d\n%s%s", code, out, errOut)
	}
	rows := parseStatusJSON(t, out)
	checkStatusAgree(t, table, rows)
	if len(rows) != 1 || rows[0]["last_success"] != now.Add(-time.Hour).Format(time.RFC3339) ||
		rows[0]["last_error"] != "upstream said \x1b[31mno\x1b[0m" || rows[0]["user"] != testUser || rows[0]["calendar"] != "holidays" {
		t.Errorf("status -json rows %v", rows)
	}
	// A failed source is retried after the engine's backoff (60s after
	// two failures), counted from its last attempt.
	if want := now.Add(-time.Minute).Add(time.Minute).Format(time.RFC3339); rows[0]["next_sync"] != want {
		t.Errorf("next_sync %v, want %s", rows[0]["next_sync"], want)
	}
}

// TestAdminSocket runs calgate with a failing feed source and checks, with
// the binary as an admin runs it, that status, status -json and export go
// through the admin socket while it serves, that the socket is private,
// and that it is gone after shutdown.
func TestAdminSocket(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the feed is down for maintenance", http.StatusServiceUnavailable)
	}))
	defer upstream.Close()
	dir := t.TempDir()
	cfg := writeOpsConfig(t, dir, upstream.URL+"/holidays.ics")
	srv := startCalgate(t, cfg)

	sock := filepath.Join(dir, "calgate.db.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("no admin socket: %v\n%s", err, srv.logs.String())
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode %v, want a socket with 0600", fi.Mode())
	}

	event := eventICS("socket-export-1", "Through the socket", time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC))
	srv.putNew(t, personalPath+"socket-export-1.ics", event)

	var rows []map[string]any
	var out, errOut string
	waitUntil(t, "the feed source's failure in status -json", 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		var code int
		code, out, errOut = runBinary(t, "status", "-json", "-config", cfg, "-log-level", "debug")
		if code != 0 {
			return false, fmt.Sprintf("exit %d: %s", code, errOut)
		}
		rows = parseStatusJSON(t, out)
		return len(rows) == 1 && rows[0]["failures"] != 0.0, out
	})
	if !strings.Contains(errOut, "asking the running calgate") {
		t.Errorf("status did not go through the socket; its stderr:\n%s", errOut)
	}
	if msg, _ := rows[0]["last_error"].(string); !strings.Contains(msg, "503") {
		t.Errorf("last_error %q does not name the upstream's 503", msg)
	}
	code, table, errOut := runBinary(t, "status", "-config", cfg)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, errOut)
	}
	checkStatusAgree(t, statusTable(t, table), rows)

	code, out, errOut = runBinary(t, "export", "-config", cfg, "-log-level", "debug", testUser+"/personal")
	if code != 0 || !strings.Contains(out, "UID:socket-export-1\r\n") || !strings.Contains(out, "SUMMARY:Through the socket\r\n") {
		t.Errorf("export while serving: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "asking the running calgate") {
		t.Errorf("export did not go through the socket; its stderr:\n%s", errOut)
	}
	feedFile := filepath.Join(t.TempDir(), "feed.ics")
	code, _, errOut = runBinary(t, "export", "-config", cfg, "-o", feedFile, opsFeed)
	if body, err := os.ReadFile(feedFile); code != 0 || err != nil || !bytes.Contains(body, []byte("UID:socket-export-1\r\n")) {
		t.Errorf("export of the feed while serving: exit %d, %v\n%s\n%s", code, err, body, errOut)
	}
	for _, tc := range []struct {
		target string
		code   int
		want   string
	}{
		{testUser + "/nope", 1, "no calendar alice/nope"},
		{"nope", 2, `"nope" is neither a feed of the config nor USER/CALENDAR`},
	} {
		code, out, errOut := runBinary(t, "export", "-config", cfg, tc.target)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("export %s while serving: exit %d, stdout %q, stderr %q; want %d and %q", tc.target, code, out, errOut, tc.code, tc.want)
		}
	}

	// Profiles are served on the socket, and not on the public listener
	// (net/http/pprof also registers on http.DefaultServeMux, which
	// calgate never serves).
	unixClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := unixClient.Get("http://calgate/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	heap, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(heap, []byte("heap profile")) {
		t.Errorf("heap profile on the admin socket: %s\n%.300s", resp.Status, heap)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/dav/debug/pprof/heap"} {
		resp, body, err := srv.do(context.Background(), "GET", path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK || bytes.Contains(body, []byte("heap profile")) || bytes.Contains(body, []byte("Types of profiles")) {
			t.Errorf("GET %s on the public listener: %s\n%.300s", path, resp.Status, body)
		}
	}

	srv.stop(t)
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket still there after shutdown: %v", err)
	}
	// Offline, status reads the data file: the same sources.
	code, out, errOut = runBinary(t, "status", "-json", "-config", cfg, "-log-level", "debug")
	if code != 0 || strings.Contains(errOut, "asking the running calgate") {
		t.Fatalf("status after shutdown: exit %d\n%s", code, errOut)
	}
	if offline := parseStatusJSON(t, out); len(offline) != 1 || offline[0]["source"] != rows[0]["source"] {
		t.Errorf("status after shutdown: %v, while serving: %v", offline, rows)
	}
}

// TestAdminSocketPathTooLong serves from a data file whose socket path
// would be too long for a unix socket: calgate warns and serves without
// the socket, and status says why it cannot reach it.
func TestAdminSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := writeCalgateConfig(t, dir)
	cfg := loadValidConfig(cfgPath, io.Discard)
	if cfg == nil {
		t.Fatal("config does not load")
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	var serveErr error
	go func() {
		defer close(stopped)
		serveErr = serve(ctx, cfg, log)
	}()
	waitListening(t, &logs, stopped)
	if !strings.Contains(logs.String(), "admin socket disabled: its path is too long") {
		t.Errorf("no warning about the socket path:\n%s", logs.String())
	}
	code, out, errOut := runCLI(t, "", "status", "-config", cfgPath)
	if code != 1 || out != "" || !strings.Contains(errOut, "no admin socket at") {
		t.Errorf("status: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	cancel()
	<-stopped
	if serveErr != nil {
		t.Errorf("serve: %v", serveErr)
	}
}
