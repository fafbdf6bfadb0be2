package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// syncBuffer collects the server's log output from its process.
type syncBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listeningLine = regexp.MustCompile(`msg="calgate listening" addr=(127\.0\.0\.1:\d+)`)

// startCalgate builds calgate from this module, starts it on a free port
// of 127.0.0.1 with one user alice/secret, and returns alice's calendar
// home URL. The process is stopped at cleanup.
func startCalgate(t *testing.T) (home string, pid int) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(dir, "calgate")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/calgate")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build calgate: %v\n%s", err, out)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	yml := fmt.Sprintf("listen: \"127.0.0.1:0\"\ndata: %q\nusers:\n  - name: alice\n    password_hash: %q\n",
		filepath.Join(dir, "calgate.db"), hash)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := new(syncBuffer)
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		cmd.Wait()
		close(stopped)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-stopped
		}
	})
	deadline := time.After(10 * time.Second)
	for {
		if m := listeningLine.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1] + "/dav/calendars/alice/", cmd.Process.Pid
		}
		select {
		case <-stopped:
			t.Fatalf("calgate exited before listening:\n%s", logs.String())
		case <-deadline:
			t.Fatalf("no listening line within 10s:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestRunAgainstCalgate(t *testing.T) {
	home, pid := startCalgate(t)
	opts := options{
		Home: home, User: "alice", Password: "secret",
		N: 200, C: 4, Duration: 200 * time.Millisecond, Requests: 200, Seed: 7, PID: pid,
	}

	t.Run("correct", func(t *testing.T) {
		rep, err := run(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := generate(opts.Seed, opts.N)
		month, weekInst := 0, 0
		for i := range evs {
			if evs[i].overlapping(monthStart, monthEnd) > 0 {
				month++
			}
			weekInst += evs[i].overlapping(weekStart, weekEnd)
		}
		if month == 0 || weekInst == 0 {
			t.Fatalf("generator gave an empty month (%d) or week (%d): the checks would be weak", month, weekInst)
		}
		want := map[string]int{
			"put_load": 200, "get": 1, "propfind_d0": 1, "propfind_d1": 201, "query_month": month,
			"query_week_expand": weekInst, "multiget_100": 100, "sync_after_change": 1,
			"get_collection": 200, "put_update": 1,
		}
		if len(rep.Ops) != len(want) {
			t.Errorf("%d operations, want %d", len(rep.Ops), len(want))
		}
		for _, r := range rep.Ops {
			if !r.OK || r.Requests == 0 || r.Items != want[r.Name] {
				t.Errorf("%s: ok=%v requests=%d items=%d (want %d) %s", r.Name, r.OK, r.Requests, r.Items, want[r.Name], r.Error)
			}
		}
		if rep.PeakRSSKB <= 0 {
			t.Errorf("peak RSS %d KiB", rep.PeakRSSKB)
		}
	})

	t.Run("wrong count fails", func(t *testing.T) {
		o := opts
		o.monthSkew = 1
		rep, err := run(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), "query_month") {
			t.Fatalf("err = %v, want a query_month failure", err)
		}
		for _, r := range rep.Ops {
			if (r.Name == "query_month") == r.OK {
				t.Errorf("%s: ok=%v %s", r.Name, r.OK, r.Error)
			}
		}
	})
}

// TestCheckObjects feeds the answer checker answers it must reject.
func TestCheckObjects(t *testing.T) {
	const ok = `<propstat><status>HTTP/1.1 200 OK</status><prop><C:calendar-data>BEGIN:VCALENDAR
BEGIN:VEVENT
UID:a
END:VEVENT
BEGIN:VEVENT
UID:a
END:VEVENT
END:VCALENDAR
</C:calendar-data></prop></propstat>`
	ms := func(body string) *multistatus {
		t.Helper()
		m, err := parseMultistatus(207, []byte(`<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">`+body+`</multistatus>`))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	want := map[string]int{"/c/a.ics": 2, "/c/b.ics": 2}
	for _, tc := range []struct {
		name    string
		body    string
		wantErr string
	}{
		{"good", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>http://h/c/b.ics</href>` + ok + `</response>`, ""},
		{"one missing", `<response><href>/c/a.ics</href>` + ok + `</response>`, "1 responses, want 2"},
		{"repeated", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/a.ics</href>` + ok + `</response>`, "repeated"},
		{"foreign", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/x.ics</href>` + ok + `</response>`, "unexpected"},
		{"no data", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/b.ics</href><propstat><status>HTTP/1.1 200 OK</status><prop/></propstat></response>`, "calendar-data"},
		{"404", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/b.ics</href>` + strings.Replace(ok, "200 OK", "404 Not Found", 1) + `</response>`, "calendar-data"},
		{"instances", `<response><href>/c/a.ics</href>` + ok + `</response><response><href>/c/b.ics</href>` + strings.Replace(ok, "BEGIN:VEVENT\nUID:a\nEND:VEVENT\n", "", 1) + `</response>`, "1 expanded instances, want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkObjects(ms(tc.body), want, 2, true)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestInstances checks the rule evaluator on a Berlin weekly event with an
// EXDATE and an override across the March 2026 DST switch.
func TestInstances(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	e := event{Kind: override, Loc: berlin, Count: 5, Dur: time.Hour,
		Start: time.Date(2026, 3, 15, 9, 0, 0, 0, berlin)}
	var got []string
	for _, s := range e.instances() {
		got = append(got, s.Start.UTC().Format("01-02T15:04"))
	}
	// 09:00 CET is 08:00Z; from 29 March 09:00 CEST is 07:00Z. Instance 1
	// (22 March) is excluded, instance 3 (5 April) moved by 2h.
	want := "03-15T08:00 03-29T07:00 04-05T09:00 04-12T07:00"
	if strings.Join(got, " ") != want {
		t.Errorf("instances %v, want %s", got, want)
	}
	if n := e.overlapping(weekStart, weekEnd); n != 1 {
		t.Errorf("week overlap %d, want 1 (29 March only; 22 March is excluded)", n)
	}
	if n := e.overlapping(monthStart, monthEnd); n != 2 {
		t.Errorf("month overlap %d, want 2", n)
	}
}
