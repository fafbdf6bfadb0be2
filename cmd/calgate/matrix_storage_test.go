package main

// The storage rows of the issue-8 matrix, against the calgate binary: a
// second instance on a data file in use fails fast saying what to do; a
// full disk answers writes with 507, corrupts nothing, keeps reads going,
// and writes work again once there is room; a backup taken during writes
// verifies and holds every write acknowledged before it started.

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
)

// TestMatrixStorage (issue 8, storage).
func TestMatrixStorage(t *testing.T) {
	t.Run("second instance", testSecondInstance)
	t.Run("disk full/RLIMIT_FSIZE", testDiskFullFileSizeLimit)
	t.Run("disk full/tmpfs", testDiskFullTmpfs)
	// TestBackupDuringWrites (backup_test.go) is this row already: four
	// writers PUT without pause while `calgate backup` copies the store
	// through the admin socket; the copy passes cache.Verify and holds
	// every write acknowledged before the backup started, with its ETag.
	t.Run("backup during writes", TestBackupDuringWrites)
}

// testSecondInstance runs calgate commands that need the data file for
// themselves while a calgate serves on it: each exits 1 within about the
// store's lock timeout (1 s), naming the data file and what to do, and the
// running calgate goes on serving what it had.
func testSecondInstance(t *testing.T) {
	dir := t.TempDir()
	config := writeCalgateConfig(t, dir)
	data := filepath.Join(dir, "calgate.db")
	srv := startCalgate(t, config)
	obj := personalPath + "held.ics"
	body := eventICS("held@storage.test", "Held", time.Date(2031, 2, 1, 9, 0, 0, 0, time.UTC))
	srv.putNew(t, obj, body)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, out, errOut := runBinary(t, "backup", "-config", config, backup); code != 0 {
		t.Fatalf("backup through the admin socket: exit %d\n%s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		want []string // in stderr, besides the data file's path
	}{
		{[]string{"serve", "-config", config}, []string{"in use by another process", "stop the other calgate, or change `data` in the config"}},
		{[]string{"compact", "-config", config}, []string{"stop calgate first", "use calgate backup FILE"}},
		{[]string{"restore", "-config", config, backup}, []string{"stop calgate first", "restore replaces the data file"}},
	} {
		start := time.Now()
		code, out, errOut := runBinary(t, tc.args...)
		took := time.Since(start)
		t.Logf("MATRIX storage: second instance: calgate %s exited %d in %v: %s", tc.args[0], code, took.Round(time.Millisecond), strings.TrimSpace(lastLine(errOut)))
		if code != 1 {
			t.Errorf("calgate %s on a data file in use: exit %d, want 1\n%s%s", tc.args[0], code, out, errOut)
		}
		for _, w := range append(tc.want, data) {
			if !strings.Contains(errOut, w) {
				t.Errorf("calgate %s on a data file in use: stderr lacks %q:\n%s", tc.args[0], w, errOut)
			}
		}
		// A hang bound, not a timing target: the lock wait is 1 s.
		if took > 20*time.Second {
			t.Errorf("calgate %s on a data file in use took %v to give up", tc.args[0], took)
		}
	}
	resp, got := srv.mustDo(t, http.MethodGet, obj, nil, nil)
	if resp.StatusCode != http.StatusOK || string(got) != string(body) {
		t.Errorf("the running calgate after the refused commands: GET %s: %s\n%s", obj, resp.Status, got)
	}
	srv.stop(t)
	if _, err := cache.Verify(data); err != nil {
		t.Errorf("cache.Verify: %v", err)
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// testDiskFullFileSizeLimit fills the disk by a file-size limit
// (RLIMIT_FSIZE) set on the running calgate with prlimit(1): the store
// file cannot grow, and the write gets EFBIG (Go ignores SIGXFSZ). Room
// comes back by lifting the limit.
func testDiskFullFileSizeLimit(t *testing.T) {
	requireTool(t, "util-linux", "prlimit", "--version")
	dir := t.TempDir()
	config := writeCalgateConfig(t, dir)
	srv := startCalgate(t, config)
	setFsize := func(limit string) {
		t.Helper()
		pid := strconv.Itoa(srv.cmd.Process.Pid)
		// The soft limit only, so that it can be raised again.
		if out, err := exec.CommandContext(t.Context(), "prlimit", "--pid", pid, "--fsize="+limit+":").CombinedOutput(); err != nil {
			t.Fatalf("prlimit --pid %s --fsize=%s: %v\n%s", pid, limit, err, out)
		}
	}
	// bbolt grows a small file by doubling it, so the limit stops the
	// store at 256 KiB.
	const limit = 256 << 10
	diskFull(t, srv, config, "RLIMIT_FSIZE", func(size int64) string {
		if size >= limit {
			t.Fatalf("the data file has %d bytes before the limit of %d", size, limit)
		}
		setFsize(strconv.Itoa(limit))
		return fmt.Sprintf("file-size limit %d bytes", limit)
	}, func() {
		setFsize("unlimited")
	})
}

// testDiskFullTmpfs fills a real file system: the data file lives on a
// 4 MiB tmpfs that a filler file fills up, so writes get ENOSPC; room
// comes back by deleting the filler. Mounting needs root (or
// CAP_SYS_ADMIN), which CI has: there a failed mount fails the test;
// elsewhere the case is skipped, as the RLIMIT_FSIZE case covers the same
// path without privileges.
func testDiskFullTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.CommandContext(t.Context(), "mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs here (%v: %s); run as root, or rely on the RLIMIT_FSIZE case", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Registered before startCalgate, so it runs after calgate stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	config := writeCalgateConfig(t, mnt)
	srv := startCalgate(t, config)
	filler := filepath.Join(mnt, "filler")
	diskFull(t, srv, config, "tmpfs", func(int64) string {
		// Leave 128 KiB free, in whole pages.
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * st.Bsize
		if err := os.WriteFile(filler, make([]byte, max(0, free-128<<10)), 0o600); err != nil {
			t.Fatalf("write the filler: %v", err)
		}
		if err := syscall.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		free = int64(st.Bavail) * st.Bsize
		return fmt.Sprintf("4 MiB tmpfs, %d bytes free", free)
	}, func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	})
}

// Bounds of the write phase of diskFull.
const (
	fullWriters  = 4
	fullMaxPuts  = 5000
	fullRefusals = 8 // 507s to collect before stopping
	fullMaxTime  = time.Minute
)

// diskFull runs one disk-full case on the calgate srv started with config
// (data file calgate.db beside it). It writes a few objects, takes the
// room away with fill, and writes from fullWriters writers until calgate has refused
// fullRefusals of them; every answer must be 201 or a 507 with the
// DAV:sufficient-disk-space precondition, never a 500, and calgate logs a
// disk-full warning. A DELETE and a PROPPATCH then are done or refused
// with 507. fill is called with the data file's size and
// describes the limit. While the disk is full every acknowledged object is
// served and a refused one is not. Then makeRoom gives the room back: a
// write succeeds in the same process (bbolt recovers from a failed
// commit), calgate stops cleanly, cache.Verify passes, and after a
// restart without the limit everything acknowledged is there and new
// writes work.
func diskFull(t *testing.T, srv *calgateProcess, config, name string, fill func(size int64) string, makeRoom func()) {
	t.Helper()
	data := filepath.Join(filepath.Dir(config), "calgate.db")
	pad := "DESCRIPTION:" + strings.Repeat("disk full ", 30)
	newBody := func(n string) []byte {
		return eventICS(n+"@full.test", "Write "+n, time.Date(2031, 5, 1, 9, 0, 0, 0, time.UTC), pad)
	}
	put := func(path string, body []byte) (*http.Response, []byte, error) {
		return srv.do(t.Context(), http.MethodPut, path, body, http.Header{
			"Content-Type": {"text/calendar; charset=utf-8"}, "If-None-Match": {"*"}})
	}
	acked := make(map[string]ackedPut)
	for i := range 10 {
		p := fmt.Sprintf("%sseed-%02d.ics", personalPath, i)
		b := newBody(fmt.Sprintf("seed-%02d", i))
		resp, _, err := put(p, b)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s before the disk is full: %v %v", p, resp, err)
		}
		acked[p] = ackedPut{etag: resp.Header.Get("ETag"), body: b}
	}
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	before := fi.Size()
	capped := fill(before)

	var (
		mu       sync.Mutex // protects the variables below and acked
		sent     int
		refused  []string // paths answered 507
		statuses = map[int]int{}
		failures []string
		wg       sync.WaitGroup
	)
	t0 := time.Now()
	deadline := t0.Add(fullMaxTime)
	for w := range fullWriters {
		wg.Go(func() {
			for i := 0; ; i++ {
				mu.Lock()
				if sent >= fullMaxPuts || len(refused) >= fullRefusals || len(failures) > 0 || time.Now().After(deadline) {
					mu.Unlock()
					return
				}
				sent++
				mu.Unlock()
				n := fmt.Sprintf("w%d-%05d", w, i)
				p, b := personalPath+n+".ics", newBody(n)
				resp, body, err := put(p, b)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("PUT %s: %v", p, err))
				case resp.StatusCode == http.StatusCreated:
					acked[p] = ackedPut{etag: resp.Header.Get("ETag"), body: b}
				case resp.StatusCode == http.StatusInsufficientStorage:
					refused = append(refused, p)
					if msg := checkNoSpaceBody(body); msg != "" {
						failures = append(failures, fmt.Sprintf("PUT %s: 507 %s:\n%s", p, msg, body))
					}
				default:
					failures = append(failures, fmt.Sprintf("PUT %s with the disk full: %s, want 201 or 507:\n%s", p, resp.Status, body))
				}
				if resp != nil {
					statuses[resp.StatusCode]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fillTime := time.Since(t0)
	fillAcked := len(acked) - 10
	for _, f := range failures {
		t.Error(f)
	}
	if len(refused) == 0 {
		t.Fatalf("no write was refused after %d PUTs (%v) with %s; statuses %v", sent, fillTime, capped, statuses)
	}
	fi, err = os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	full := fi.Size()

	// Other kinds of write while the disk is full: each is done, or
	// refused with 507; never a 500.
	other := map[string]int{}
	del := personalPath + "seed-00.ics"
	resp, body, err := srv.do(t.Context(), http.MethodDelete, del, nil, nil)
	switch {
	case err != nil:
		t.Fatalf("DELETE %s with the disk full: %v", del, err)
	case resp.StatusCode == http.StatusNoContent:
		delete(acked, del)
	case resp.StatusCode == http.StatusInsufficientStorage && checkNoSpaceBody(body) == "":
	default:
		t.Errorf("DELETE %s with the disk full: %s, want 204 or 507 with DAV:sufficient-disk-space:\n%s", del, resp.Status, body)
	}
	if resp != nil {
		other["DELETE "+strconv.Itoa(resp.StatusCode)]++
	}
	resp, body, err = srv.do(t.Context(), "PROPPATCH", personalPath, []byte(`<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>Personal (disk full)</D:displayname></D:prop></D:set></D:propertyupdate>`),
		http.Header{"Content-Type": {"application/xml; charset=utf-8"}})
	switch {
	case err != nil:
		t.Fatalf("PROPPATCH %s with the disk full: %v", personalPath, err)
	case resp.StatusCode == http.StatusMultiStatus:
		var ms multistatus
		if err := xml.Unmarshal(body, &ms); err != nil || len(ms.Responses) != 1 || len(ms.Responses[0].Propstat) != 1 ||
			!strings.Contains(ms.Responses[0].Propstat[0].Status, " 200 ") {
			t.Errorf("PROPPATCH %s with the disk full: 207 but not a 200 propstat (%v):\n%s", personalPath, err, body)
		}
	case resp.StatusCode == http.StatusInsufficientStorage && checkNoSpaceBody(body) == "":
	default:
		t.Errorf("PROPPATCH %s with the disk full: %s, want 207 or 507 with DAV:sufficient-disk-space:\n%s", personalPath, resp.Status, body)
	}
	if resp != nil {
		other["PROPPATCH "+strconv.Itoa(resp.StatusCode)]++
	}
	logs := srv.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "disk full") {
		t.Errorf("calgate logged no disk-full warning:\n%s", logs)
	}
	if strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "panic") {
		t.Errorf("calgate logged an error or a panic with the disk full:\n%s", logs)
	}

	// Reads go on, and nothing refused was stored.
	whileFull := len(acked)
	checkServed(t, srv, acked, refused)
	select {
	case <-srv.stopped:
		t.Fatalf("calgate exited with the disk full: %v\n%s", srv.waitErr, srv.logs.String())
	default:
	}

	// Room again: a write succeeds in the same process.
	makeRoom()
	p := personalPath + "after-room.ics"
	b := newBody("after-room")
	resp, body, err = put(p, b)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s once there is room again: %v %v\n%s", p, resp, err, body)
	}
	acked[p] = ackedPut{etag: resp.Header.Get("ETag"), body: b}
	retry := refused[0]
	resp, body, err = put(retry, newBody("retried"))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s (refused with the disk full) once there is room again: %v %v\n%s", retry, resp, err, body)
	}
	acked[retry] = ackedPut{etag: resp.Header.Get("ETag"), body: newBody("retried")}
	refused = refused[1:]
	srv.stop(t)
	sum, err := cache.Verify(data)
	if err != nil {
		t.Fatalf("cache.Verify after the disk was full: %v", err)
	}
	if sum.Objects != len(acked) {
		t.Errorf("cache.Verify counts %d objects, %d were acknowledged", sum.Objects, len(acked))
	}

	// A restart without the limit: all there, and writes work.
	srv = startCalgate(t, config)
	checkServed(t, srv, acked, refused)
	p = personalPath + "after-restart.ics"
	srv.putNew(t, p, newBody("after-restart"))
	srv.stop(t)
	if _, err := cache.Verify(data); err != nil {
		t.Errorf("cache.Verify after the restart: %v", err)
	}
	t.Logf("MATRIX storage: disk full (%s): %s, data file %d bytes before: %d PUTs from %d writers in %v: %d acknowledged before and between the refusals, %d answered 507 (statuses %v), 0 answered 500; data file %d bytes when full; other writes while full: %v; reads served all %d acknowledged objects while full; a write succeeded in the same process once there was room; cache.Verify clean (%d objects, %d bytes); after a restart all acknowledged present and new writes work",
		name, capped, before, sent, fullWriters, fillTime.Round(time.Millisecond), fillAcked, len(refused)+1, statuses, full, other, whileFull, sum.Objects, sum.Size)
}

// checkNoSpaceBody returns what is wrong with the body of a 507, or "".
func checkNoSpaceBody(body []byte) string {
	var e struct {
		XMLName xml.Name  `xml:"DAV: error"`
		Cond    *struct{} `xml:"DAV: sufficient-disk-space"`
		Message string    `xml:"urn:calgate:xml message"`
	}
	if err := xml.Unmarshal(body, &e); err != nil {
		return fmt.Sprintf("body is not a DAV:error: %v", err)
	}
	if e.Cond == nil {
		return "DAV:error without DAV:sufficient-disk-space"
	}
	if !strings.Contains(e.Message, "disk is full") {
		return fmt.Sprintf("message %q does not say the disk is full", e.Message)
	}
	return ""
}

// checkServed checks with one REPORT that calgate serves every object of
// acked with its ETag and bytes, nothing of refused, and nothing else,
// and that a GET of each refused path is 404.
func checkServed(t *testing.T, srv *calgateProcess, acked map[string]ackedPut, refused []string) {
	t.Helper()
	served := srv.servedObjects(t, personalPath)
	for p, want := range acked {
		got, ok := served[p]
		if !ok || got.etag != want.etag || string(got.body) != string(want.body) {
			t.Errorf("%s (acknowledged, ETag %s): served %v, ETag %s", p, want.etag, ok, got.etag)
		}
	}
	for p := range served {
		if _, ok := acked[p]; !ok {
			t.Errorf("%s is served, but was never acknowledged", p)
		}
	}
	for _, p := range refused {
		if resp, _ := srv.mustDo(t, http.MethodGet, p, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s (refused with 507): %s, want 404", p, resp.Status)
		}
	}
}
