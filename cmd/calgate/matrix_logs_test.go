package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMatrixFeedTokensProcessLog is the process-level half of issue 8's
// feed-token row: calgate serve, at -log-level debug (one line per
// request), with 5 feeds of 5 tokens each, answers only a feed's own
// tokens, and no token reaches its log, wherever a request put it (the
// query, the path, places where no token belongs, other endpoints).
func TestMatrixFeedTokensProcessLog(t *testing.T) {
	dir := t.TempDir()
	var feeds strings.Builder
	tokens := make([][]string, 5)
	for f := range tokens {
		for range 5 {
			b := make([]byte, 16)
			rand.Read(b)
			tokens[f] = append(tokens[f], hex.EncodeToString(b))
		}
		env := fmt.Sprintf("CALGATE_MATRIX_FEED%d_TOKENS", f)
		t.Setenv(env, strings.Join(tokens[f], ","))
		fmt.Fprintf(&feeds, "  - name: feed%d\n    calendars: [%s/personal]\n    tokens_env: %s\n", f, testUser, env)
	}
	cfg := writeCalgateConfig(t, dir)
	base, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(base, "feeds:\n"+feeds.String()...), 0o600); err != nil {
		t.Fatal(err)
	}
	p, stderr, stdout := startCalgateJSON(t, cfg)
	if resp, _ := p.mustDo(t, "PUT", personalPath+"a.ics", eventICS("a", "Alpha", time.Now()),
		http.Header{"Content-Type": {"text/calendar"}}); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s", resp.Status)
	}
	status := func(method, path string) int {
		t.Helper()
		resp, _ := p.mustDo(t, method, path, nil, nil)
		return resp.StatusCode
	}

	requests, opened := 0, 0
	for f := range tokens {
		for g := range tokens {
			for _, tok := range tokens[g] {
				for _, path := range []string{fmt.Sprintf("/feeds/feed%d.ics?token=%s", f, tok), fmt.Sprintf("/feeds/%s/feed%d.ics", tok, f)} {
					code := status("GET", path)
					requests++
					switch {
					case f == g && code == http.StatusOK:
						opened++
					case f == g || code != http.StatusNotFound:
						t.Errorf("feed%d with a token of feed%d: %d", f, g, code)
					}
				}
			}
		}
	}
	// Tokens where none belongs, near misses, and other endpoints.
	odd, logged := 0, requests
	for f, ts := range tokens {
		tok := ts[f]
		for _, r := range []struct {
			method, path string
			want         int
		}{
			{"GET", "/feeds/" + tok, http.StatusNotFound},
			{"GET", "/feeds/" + tok + "/", http.StatusNotFound},
			{"GET", "/feeds/" + tok + ".ics", http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/feed%d.ics/%s", f, tok), http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/x/%s/feed%d.ics", tok, f), http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/%s/feed%d.ics", strings.ToUpper(tok), f), http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/%s/feed%d.ics", tok[:len(tok)-1], f), http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/%s%s/feed%d.ics", tok, tok, f), http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/%s/feed%d.ics", url.PathEscape(tok+"/"), f), http.StatusNotFound},
			{"GET", fmt.Sprintf("/feeds/feed%d.ics;token=%s", f, tok), http.StatusNotFound},
			{"POST", fmt.Sprintf("/feeds/%s/feed%d.ics", tok, f), http.StatusMethodNotAllowed},
			{"DELETE", fmt.Sprintf("/feeds/feed%d.ics?token=%s", (f+1)%5, tok), http.StatusNotFound},
			{"GET", "/healthz?token=" + tok, http.StatusOK},
			{"GET", "/readyz/" + tok, 0},
			{"GET", "/metrics/" + tok, 0},
			{"PROPFIND", "/dav/calendars/" + testUser + "/" + tok + "/", http.StatusNotFound},
			{"GET", "/" + tok, 0},
		} {
			code := status(r.method, r.path)
			odd++
			if !strings.HasPrefix(r.path, pathHealthz) {
				logged++ // health probes are answered before the gateway and its log
			}
			if (r.want != 0 && code != r.want) || (r.want == 0 && code == http.StatusOK) {
				t.Errorf("%s %s: %d, want %d", r.method, strings.ReplaceAll(r.path, tok, "TOKEN"), code, r.want)
			}
		}
	}
	p.stop(t)

	out := stderr.String() + stdout.String()
	if n := strings.Count(out, `"msg":"request"`); n < logged {
		t.Fatalf("%d request lines for %d requests: the requests were not logged, so the check below would prove nothing", n, logged)
	}
	leaked := 0
	for _, ts := range tokens {
		for _, tok := range ts {
			for _, s := range []string{tok, strings.ToUpper(tok), tok[:len(tok)-1]} {
				if strings.Contains(out, s) {
					leaked++
					t.Errorf("the log contains the token %s", s)
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", out)
	}
	t.Logf("MATRIX feed tokens: calgate serve -log-level debug, 5 feeds x 5 tokens: %d feed requests (%d opened: the matching pairs), "+
		"%d requests with tokens in odd places and other endpoints; %d log lines, %d tokens in them",
		requests, opened, odd, strings.Count(out, "\n"), leaked)
}
