package gateway

import (
	"bufio"
	"encoding/xml"
	"github.com/calgate/calgate/internal/fixtures"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fixturesDir is the shared iCalendar corpus.
func fixturesDir(t *testing.T) string { return fixtures.Dir(t) }

// putVerdicts reads testdata/fixtures-put.txt: "path accept" or
// "path refuse precondition".
func putVerdicts(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("testdata/fixtures-put.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[string][]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		fields := strings.Fields(line)
		out[fields[0]] = fields[1:]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFixturesPut PUTs every file of the shared corpus as a resource: it
// is either stored, and GET returns the identical bytes, or refused with
// a 4xx and a precondition element, as testdata/fixtures-put.txt says.
func TestFixturesPut(t *testing.T) {
	dir := fixturesDir(t)
	verdicts := putVerdicts(t)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".ics") {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) < 100 {
		t.Fatalf("only %d fixture files found", len(files))
	}
	e := newEnv(t)
	for i, rel := range files {
		t.Run(rel, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			want, ok := verdicts[rel]
			if !ok {
				t.Fatalf("no verdict for %s in testdata/fixtures-put.txt", rel)
			}
			path := "/dav/calendars/alice/personal/" + strings.NewReplacer("/", "-").Replace(rel)
			resp := e.do("alice", "PUT", path, string(data), ct, icsType)
			body, _ := io.ReadAll(resp.Body)
			got := "accept"
			if resp.StatusCode >= 500 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if resp.StatusCode >= 400 {
				var e anyXML
				if err := xml.Unmarshal(body, &e); err != nil || len(e.Children) == 0 || e.Children[0].XMLName.Space != nsCalDAV {
					t.Fatalf("refused with %d but no CalDAV precondition: %s", resp.StatusCode, body)
				}
				got = "refuse " + e.Children[0].XMLName.Local
				if msg := e.child(nsCalgate, "message"); msg != nil {
					t.Logf("%s: %s", rel, msg.Text)
				}
			} else if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got != strings.Join(want, " ") {
				t.Errorf("%s: got %q, want %q", rel, got, strings.Join(want, " "))
			}
			if got == "accept" {
				g := e.do("alice", "GET", path, "")
				wantStatus(t, g, http.StatusOK)
				if b := readAll(t, g); b != string(data) {
					t.Fatalf("GET returned different bytes (%d vs %d)", len(b), len(data))
				}
			} else {
				wantStatus(t, e.do("alice", "GET", path, ""), http.StatusNotFound)
			}
			_ = i
		})
	}
}
