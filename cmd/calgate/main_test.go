package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningLine = regexp.MustCompile(`msg="calgate listening" addr=(127\.0\.0\.1:\d+)`)

// waitListening waits up to 60 s (a loaded CI machine running the race
// build can be slow to start it) for the "calgate listening" line in logs
// and returns the address it names. It fails the test if stopped is closed
// first (the server exited) or the line does not come.
func waitListening(t *testing.T, logs *syncBuffer, stopped <-chan struct{}) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		if m := listeningLine.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		select {
		case <-stopped:
			t.Fatalf("calgate exited before listening:\n%s", logs.String())
		case <-deadline:
			t.Fatalf("no listening line within 60s in:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestServe starts the server on a free port over a real store, checks the
// log line tests and scripts rely on and the well-known redirect, shuts it
// down through its context, and checks that the configured calendars were
// created and the store was closed.
func TestServe(t *testing.T) {
	example, err := LoadConfig(filepath.Join("..", "..", "gateway.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Listen: "127.0.0.1:0",
		Data:   filepath.Join(t.TempDir(), "calgate.db"),
		Users:  example.Users,
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var serveErr error
	stopped := make(chan struct{})
	go func() {
		serveErr = serve(ctx, cfg, log)
		if serveErr != nil {
			fmt.Fprintf(&logs, "serve returned: %v\n", serveErr) // shown by waitListening
		}
		close(stopped)
	}()

	addr := waitListening(t, &logs, stopped)
	if !strings.Contains(logs.String(), "base_url=http://"+addr) {
		t.Errorf("base_url not derived from the listening address:\n%s", logs.String())
	}

	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get("http://" + addr + "/.well-known/caldav")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently {
		t.Errorf("GET /.well-known/caldav: %s, want 301", resp.Status)
	}

	cancel()
	select {
	case <-stopped:
		if serveErr != nil {
			t.Fatalf("serve: %v", serveErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if strings.Contains(logs.String(), example.Users[0].PasswordHash) {
		t.Error("the log contains a password hash")
	}

	// The store was closed: it opens again, and holds the calendars.
	store, err := cache.Open(cfg.Data, cache.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	defer store.Close()
	personal, err := store.GetCalendar("demo", "personal")
	if err != nil {
		t.Fatal(err)
	}
	if personal.DisplayName != "Personal" || personal.Color != "#3366cc" ||
		!slices.Equal(personal.Components, []string{"VEVENT", "VTODO", "VJOURNAL"}) {
		t.Errorf("personal = %+v", personal)
	}
	tasks, err := store.GetCalendar("demo", "tasks")
	if err != nil {
		t.Fatal(err)
	}
	if tasks.DisplayName != "Tasks" || !slices.Equal(tasks.Components, []string{"VTODO"}) {
		t.Errorf("tasks = %+v", tasks)
	}
}

// TestServeStoreLocked checks that a second server on the same data file
// fails at once with a message saying what to do.
func TestServeStoreLocked(t *testing.T) {
	data := filepath.Join(t.TempDir(), "calgate.db")
	store, err := cache.Open(data, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	cfg := &Config{
		Listen: "127.0.0.1:0",
		Data:   data,
		Users:  []UserConfig{{Name: "alice", PasswordHash: testHash}},
	}
	cfg.Defaults()
	err = serve(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("serve on a locked store: %v", err)
	}
}
