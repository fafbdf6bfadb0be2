package main

// The status page in a real browser: headless Chromium (the Debian
// package), driven with chromedp, loads the page of a calgate process
// whose .ics source fails and whose mirrored calendar (a real Radicale
// upstream) holds a real modify/modify conflict, checks that calendar
// data carrying script is shown as text, resolves the conflict with a
// click, and checks the result in calgate and in Radicale.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath is the Debian chromium binary.
const chromiumPath = "/usr/bin/chromium"

// XSS attempts stored through calgate's CalDAV interface.
const (
	xssCalendarName = `<script>alert("name")</script><img src=x onerror=alert(3)>`
	xssClientTitle  = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
)

// artifactsDir is $CALGATE_TEST_ARTIFACTS, or test-artifacts/ at the
// repository root.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CALGATE_TEST_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = filepath.Abs(filepath.Join("..", "..", "test-artifacts")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts directory: %v", err)
	}
	return dir
}

// closedPort returns a port of 127.0.0.1 on which nothing listens.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// writeStatusConfig writes a config with a local calendar, a calendar
// mirroring the Radicale collection coll, an .ics calendar whose URL
// nothing answers, and a feed. The polls are a day apart, so the only
// syncs are the first ones and those a client write kicks.
func writeStatusConfig(t *testing.T, dir, coll, icsURL string) string {
	t.Helper()
	t.Setenv(e2eUpstreamPasswordEnv, e2eUpstreamPassword)
	t.Setenv("CALGATE_STATUS_FEED_TOKENS", "statusfeedtoken0123456789")
	yml := fmt.Sprintf(`listen: "127.0.0.1:0"
data: %q
users:
  - name: %s
    password_hash: %q
    calendars:
      - id: personal
        name: Personal
        color: "#3366cc"
      - id: work
        name: Work
        color: "#1a7f37"
        caldav:
          url: %q
          username: %s
          password_env: %s
          interval: 24h
      - id: holidays
        name: Holidays
        color: "#e0a000"
        ics:
          url: %q
          interval: 24h
feeds:
  - name: alice-all
    calendars: [%s/personal, %s/work]
    tokens_env: CALGATE_STATUS_FEED_TOKENS
`, filepath.Join(dir, "calgate.db"), testUser, testHash, coll, testUser, e2eUpstreamPasswordEnv, icsURL, testUser, testUser)
	p := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// statusHTML returns the status page as the test user sees it.
func (p *calgateProcess) statusHTML(t *testing.T) string {
	t.Helper()
	resp, body := p.mustDo(t, http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s\n%s", resp.Status, body)
	}
	return string(body)
}

// summaryThrough returns the SUMMARY of object path as calgate serves it.
func (p *calgateProcess) summaryThrough(t *testing.T, path string) string {
	t.Helper()
	resp, body := p.mustDo(t, http.MethodGet, path, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through calgate: %s\n%s", path, resp.Status, body)
	}
	_, summary := parseObject(t, body)
	return summary
}

// newBrowser starts headless Chromium for the test: a missing browser
// fails the test when CI=true and skips it otherwise.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := fmt.Sprintf("%s not found (%v); install it with: sudo apt-get install -y chromium chromium-driver", chromiumPath, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // the tests run as root
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	// The whole browser session is bounded.
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 3*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit, before TempDir cleanup
		cancelTimeout()
	})
	return bctx
}

func TestStatusPageBrowser(t *testing.T) {
	bctx := newBrowser(t)
	rad := startE2ERadicale(t)
	coll := rad.newCalendar("work")
	start := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	const uid = "status-conflict@e2e.test"
	rad.put(coll+"ev.ics", eventICS(uid, "original", start))

	dir := t.TempDir()
	icsURL := fmt.Sprintf("http://127.0.0.1:%d/holidays.ics", closedPort(t))
	srv := startCalgate(t, writeStatusConfig(t, dir, coll, icsURL))
	evPath := workPath + "ev.ics"

	// The first sync brings the event down; the .ics source fails.
	waitUntil(t, "first sync of work", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		hrefs := srv.hrefsOf(t, workPath)
		_, ok := hrefs[evPath]
		return ok, fmt.Sprint(hrefs)
	})
	waitUntil(t, "the .ics source failing", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		page := srv.statusHTML(t)
		return strings.Contains(page, `data-calendar="holidays" data-state="failing"`), "not failing yet"
	})

	// A modify/modify conflict: the event changes in Radicale directly,
	// then a client of calgate changes it too. The push meets a 412 and
	// the upstream version wins; the client's is kept as the loser.
	rad.put(coll+"ev.ics", eventICS(uid, "changed upstream", start.Add(time.Hour)))
	mine := eventICS(uid, xssClientTitle, start.Add(2*time.Hour))
	if resp, body := srv.mustDo(t, http.MethodPut, evPath, mine, http.Header{"Content-Type": {"text/calendar; charset=utf-8"}}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s through calgate: %s\n%s", evPath, resp.Status, body)
	}
	waitUntil(t, "the conflict recorded", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		return strings.Contains(srv.statusHTML(t), `<article class="conflict"`), "no conflict on the page yet"
	})
	if got := srv.summaryThrough(t, evPath); got != "changed upstream" {
		t.Fatalf("after the conflict calgate serves %q, want the upstream version", got)
	}

	// A calendar name with script in it, set by PROPPATCH.
	var name strings.Builder
	if err := xmlEscape(&name, xssCalendarName); err != nil {
		t.Fatal(err)
	}
	resp, body := srv.mustDo(t, "PROPPATCH", personalPath, []byte(`<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>`+name.String()+`</D:displayname></D:prop></D:set></D:propertyupdate>`),
		http.Header{"Content-Type": {"application/xml; charset=utf-8"}})
	if resp.StatusCode != http.StatusMultiStatus || !strings.Contains(string(body), "200 OK") {
		t.Fatalf("PROPPATCH displayname: %s\n%s", resp.Status, body)
	}

	// The browser signs in with a Basic Authorization header on every
	// request, and notes every JavaScript dialog (none may open).
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
	if _, err := chromedp.Call(bctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(bctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
	dctx, stopDialogs := context.WithCancel(bctx)
	var (
		dialogMu sync.Mutex
		dialogs  []string
		wg       sync.WaitGroup
	)
	events := chromedp.Events(dctx, page.JavascriptDialogOpening)
	wg.Go(func() {
		for ev, err := range events { // ends when dctx ends
			if err != nil {
				return
			}
			dialogMu.Lock()
			dialogs = append(dialogs, ev.Type.String()+": "+ev.Message)
			dialogMu.Unlock()
			// Dismiss it, or the page would hang.
			chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	})
	defer func() {
		stopDialogs()
		wg.Wait()
		dialogMu.Lock()
		defer dialogMu.Unlock()
		if len(dialogs) > 0 {
			t.Errorf("JavaScript dialogs opened: %q", dialogs)
		}
	}()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser: text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(expr string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("browser: %s: %v", expr, err)
		}
		return n
	}

	step("load the status page", chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.CSS("article.conflict")))

	// The failing source's error, in full, and its state.
	if got := text(`tr.source[data-calendar="holidays"]`); !strings.Contains(got, "failing") || !strings.Contains(got, "stale") && !strings.Contains(got, "no data yet") {
		t.Errorf("holidays source row: %q", got)
	}
	if got := text(`tr.source-error pre.err`); !strings.Contains(got, "connection refused") || !strings.Contains(got, icsURL) {
		t.Errorf("the source's error text: %q", got)
	}
	if got := text(`tr.source[data-calendar="work"]`); !strings.Contains(got, "ok") || strings.Contains(got, "never") {
		t.Errorf("work source row: %q", got)
	}
	// The conflict with both versions.
	if got := text(`article.conflict`); !strings.Contains(got, "ev.ics") || !strings.Contains(got, "412 on push") || !strings.Contains(got, "kept: upstream") {
		t.Errorf("conflict text: %q", got)
	}
	if got := text(`article.conflict .side-upstream .summary`); got != "changed upstream" {
		t.Errorf("upstream side summary %q", got)
	}
	// The XSS attempts are visible text, and nothing of them became markup.
	if got := text(`article.conflict .side-mine .summary`); got != xssClientTitle {
		t.Errorf("my side's summary shows %q, want the text %q", got, xssClientTitle)
	}
	if got := text(`tr.calendar[data-id="personal"] .name`); got != xssCalendarName {
		t.Errorf("the calendar name shows %q, want the text %q", got, xssCalendarName)
	}
	if n := eval(`document.querySelectorAll("img").length + document.scripts.length`); n != 1 {
		t.Errorf("the page has %d img and script elements, want only its own script", n)
	}
	// The feed link and its webcal variant; copy buttons shown by the script.
	if n := eval(`[...document.querySelectorAll("tr.feed input")].filter(i => i.value.endsWith("/feeds/statusfeedtoken0123456789/alice-all.ics")).length`); n != 2 {
		t.Errorf("%d feed link inputs, want 2 (https and webcal)", n)
	}
	if n := eval(`[...document.querySelectorAll("button.copy")].filter(b => !b.hidden).length`); n < 2 {
		t.Errorf("%d copy buttons visible, want every one", n)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shotPath := filepath.Join(artifactsDir(t), "status-page.png")
	if err := os.WriteFile(shotPath, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("status page screenshot: %s", shotPath)

	// Keep mine: the form posts, the page comes back without the conflict.
	ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
	_, err = chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS("article.conflict button.keep-mine"))))
	cancel()
	if err != nil {
		t.Fatalf("browser: click Keep mine: %v", err)
	}
	ctx, cancel = context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#conflicts p.empty")))
	cancel()
	if err != nil {
		got, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		t.Fatalf("browser: the page after the click has no empty conflict list (%v):\n%s", err, got)
	}
	if loc, err := chromedp.Run(bctx, chromedp.Location()); err != nil || loc != srv.URL {
		t.Errorf("after the click the browser is at %q (%v), want %s", loc, err, srv.URL)
	}
	if n := eval(`document.querySelectorAll("article.conflict").length + document.querySelectorAll("#message").length`); n != 0 {
		t.Errorf("after the click the page still shows %d conflicts or messages", n)
	}

	// calgate serves the client's version, and pushes it to Radicale.
	if got := srv.summaryThrough(t, evPath); got != xssClientTitle {
		t.Errorf("after Keep mine calgate serves %q, want the client's version", got)
	}
	waitUntil(t, "the client's version in Radicale", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		resp, body := rad.do(http.MethodGet, coll+"ev.ics", nil, nil)
		if resp.StatusCode != http.StatusOK {
			return false, resp.Status
		}
		_, summary := parseObject(t, body)
		return summary == xssClientTitle, summary
	})
	checkLogs(t, srv)
}

// xmlEscape writes s escaped for XML character data.
func xmlEscape(b *strings.Builder, s string) error {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	_, err := r.WriteString(b, s)
	return err
}
