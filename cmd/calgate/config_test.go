package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testHash is a bcrypt hash (cost 4) of "secret".
var testHash string

func TestMain(m *testing.M) {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	testHash = string(h)
	code := m.Run()
	removeCalgateBinary() // built by the end-to-end tests (interop_test.go)
	os.Exit(code)
}

// parseAndValidate runs the same steps as serve and check-config.
func parseAndValidate(t *testing.T, yml string) (*Config, error) {
	t.Helper()
	yml = strings.ReplaceAll(yml, "HASH", testHash)
	cfg, err := ParseConfig(strings.NewReader(yml))
	if err != nil {
		return nil, err
	}
	return cfg, cfg.Validate()
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		yml  string
		want []string // substrings of the error; none means success
	}{
		{
			name: "minimal",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
`,
		},
		{
			name: "local calendars",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
        name: Personal
        color: "#3366cc"
      - id: tasks.2024_x-y
        components: [vtodo]
`,
		},
		{
			name: "typo top level",
			yml: `
listne: "127.0.0.1:8080"
users:
  - name: alice
    password_hash: "HASH"
`,
			want: []string{`line 2: unknown key "listne" at the top level`},
		},
		{
			name: "typo in calendar",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
        colour: "#3366cc"
`,
			want: []string{`line 7: unknown key "colour" in a calendar`},
		},
		{
			name: "duplicate calendar id",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
      - id: work
      - id: personal
`,
			want: []string{`users[0] "alice": calendars[2]: duplicate calendar id "personal" (also calendars[0])`},
		},
		{
			name: "duplicate user",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
  - name: alice
    password_hash: "HASH"
`,
			want: []string{`users[1] "alice": duplicate user name (also users[0])`},
		},
		{
			name: "id with slash",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
  - name: bob
    password_hash: "HASH"
    calendars:
      - id: a/b
`,
			want: []string{`users[1] "bob": calendars[0]: id "a/b" must not contain '/'`},
		},
		{
			name: "bad ids",
			yml: `
users:
  - name: "al ice"
    password_hash: "HASH"
    calendars:
      - id: ""
      - id: ".."
      - id: "wörk"
`,
			want: []string{
				`users[0] "al ice": name "al ice" may contain only letters, digits`,
				`users[0] "al ice": calendars[0]: id is missing`,
				`users[0] "al ice": calendars[1]: id ".." is not allowed`,
				`users[0] "al ice": calendars[2]: id "wörk" may contain only`,
			},
		},
		{
			name: "missing user name",
			yml: `
users:
  - password_hash: "HASH"
`,
			want: []string{`users[0]: name is missing`},
		},
		{
			name: "missing hash",
			yml: `
users:
  - name: alice
`,
			want: []string{`users[0] "alice": password_hash is missing`},
		},
		{
			name: "plain password as hash",
			yml: `
users:
  - name: alice
    password_hash: "secret"
`,
			want: []string{`users[0] "alice": password_hash is not a bcrypt hash`},
		},
		{
			name: "caldav password missing",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: work
        caldav:
          url: "https://dav.example.com/calendars/alice/work/"
          username: alice
          password_env: CALGATE_TEST_UNSET_PASSWORD
`,
			want: []string{`users[0] "alice": calendar "work": caldav: password_env: environment variable CALGATE_TEST_UNSET_PASSWORD is not set`},
		},
		{
			name: "caldav bad values",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: work
        caldav:
          url: "ftp://dav.example.com/"
          conflict: both-win
          interval: 1s
`,
			want: []string{
				`calendar "work": caldav: url "ftp://dav.example.com/": want an absolute http or https URL`,
				`calendar "work": caldav: conflict "both-win": want upstream-wins or local-wins`,
				`calendar "work": caldav: interval 1s is shorter than 10s`,
			},
		},
		{
			name: "one source per calendar",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: both
        ics: {url: "https://example.com/a.ics"}
        caldav: {url: "https://dav.example.com/"}
`,
			want: []string{`calendar "both": a calendar has at most one of caldav, ics and merge`},
		},
		{
			name: "merge, feeds and accounts validated",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: holidays
        ics: {url: "https://example.com/holidays.ics", interval: 6h}
      - id: everything
        merge: {calendars: [holidays, nope], write_to: holidays}
    accounts:
      - id: fastmail
        caldav: {url: "https://caldav.example.net/", username: alice, password_file: /run/secrets/fm}
feeds:
  - name: alice-busy
    calendars: [alice/holidays, bob/x]
    privacy: secret
    prefix: {alice/other: "[O] "}
    tokens_env: CALGATE_TEST_UNSET_TOKENS
`,
			want: []string{
				`account "fastmail": caldav: password_file: open /run/secrets/fm`,
				`calendar "everything": merge: unknown calendar "nope"`,
				`calendar "everything": merge: write_to "holidays" mirrors a read-only .ics feed`,
				`feeds[0] "alice-busy": unknown calendar "bob/x"`,
				`feeds[0] "alice-busy": prefix for "alice/other", which is not a member`,
				`feeds[0] "alice-busy": privacy "secret": want full or busy`,
				`feeds[0] "alice-busy": tokens_env: environment variable CALGATE_TEST_UNSET_TOKENS is not set`,
			},
		},
		{
			name: "bad duration",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: holidays
        ics: {url: "https://example.com/holidays.ics", interval: 6}
`,
			want: []string{"line 7"},
		},
		{
			name: "bad color and components",
			yml: `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
        color: blue
        components: [VEVENT, VCARD, vevent]
`,
			want: []string{
				`calendar "personal": color "blue": want #RRGGBB`,
				`calendar "personal": components: unknown component "VCARD"`,
				`calendar "personal": components: VEVENT listed twice`,
			},
		},
		{
			name: "no users",
			yml:  "listen: 127.0.0.1:0\n",
			want: []string{"users: at least one user is required"},
		},
		{
			name: "bad listen and base_url",
			yml: `
listen: "8080"
base_url: "cal.example.com"
users:
  - name: alice
    password_hash: "HASH"
`,
			want: []string{`listen "8080": want host:port`, `base_url "cal.example.com": want an absolute http or https URL`},
		},
		{
			name: "tls incomplete",
			yml: `
tls: {cert: server.pem}
users:
  - name: alice
    password_hash: "HASH"
`,
			want: []string{"tls: both cert and key are required"},
		},
		{
			name: "empty",
			yml:  "",
			want: []string{"config is empty"},
		},
		{
			name: "two documents",
			yml: `
users: [{name: alice, password_hash: "HASH"}]
---
users: []
`,
			want: []string{"more than one YAML document"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAndValidate(t, tc.yml)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testHash) {
				t.Errorf("error reveals the password hash: %v", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseAndValidate(t, `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
      - id: tasks
        components: [vtodo]
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Data != "./calgate.db" || cfg.BaseURL != "http://127.0.0.1:8080" || !cfg.baseURLDerived {
		t.Errorf("listen/data/base_url defaults: %q %q %q %v", cfg.Listen, cfg.Data, cfg.BaseURL, cfg.baseURLDerived)
	}
	if cfg.MaxResourceSize != 10<<20 {
		t.Errorf("max_resource_size default = %d", cfg.MaxResourceSize)
	}
	p := cfg.Users[0].Calendars[0]
	if p.Name != "personal" || !slices.Equal(p.Components, []string{"VEVENT", "VTODO", "VJOURNAL"}) {
		t.Errorf("calendar defaults: %+v", p)
	}
	if got := cfg.Users[0].Calendars[1].Components; !slices.Equal(got, []string{"VTODO"}) {
		t.Errorf("components = %q, want [VTODO]", got)
	}
	if n := cfg.CountCalendars(); n != 2 {
		t.Errorf("CountCalendars = %d", n)
	}
}

func TestExampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "gateway.yaml.example")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Data != "./calgate.db" {
		t.Errorf("listen %q, data %q", cfg.Listen, cfg.Data)
	}
	if len(cfg.Users) != 1 || cfg.Users[0].Name != "demo" {
		t.Fatalf("users = %+v", cfg.Users)
	}
	u := cfg.Users[0]
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("demo")); err != nil {
		t.Errorf("demo password: %v", err)
	}
	if len(u.Calendars) != 2 {
		t.Fatalf("calendars = %+v", u.Calendars)
	}
	if c := u.Calendars[0]; c.ID != "personal" || c.Name != "Personal" || c.Color != "#3366cc" {
		t.Errorf("personal = %+v", c)
	}
	if c := u.Calendars[1]; c.ID != "tasks" || c.Name != "Tasks" || !slices.Equal(c.Components, []string{"VTODO"}) {
		t.Errorf("tasks = %+v", c)
	}

	// check-config on the example prints the summary.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "-config", path}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("check-config exit %d: %s", code, stderr.String())
	}
	if got, want := stdout.String(), "config OK: 1 users, 2 calendars\n"; got != want {
		t.Errorf("check-config printed %q, want %q", got, want)
	}
}

func TestCheckConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	yml := "users:\n  - name: a/b\n  - name: c\n    password_hash: nope\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "-config", path}, nil, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, w := range []string{path + ": invalid config", `users[0] "a/b": name "a/b" must not contain '/'`,
		`users[0] "a/b": password_hash is missing`, `users[1] "c": password_hash is not a bcrypt hash`} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr %q\ndoes not contain %q", stderr.String(), w)
		}
	}
	if strings.Contains(stderr.String(), "nope") {
		t.Errorf("stderr reveals the password_hash value: %s", stderr.String())
	}

	stderr.Reset()
	if code := run([]string{"check-config", "-config", filepath.Join(t.TempDir(), "missing.yaml")}, nil, &stdout, &stderr); code != 1 {
		t.Fatalf("missing file: exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "not found") {
		t.Errorf("missing file: stderr %q", stderr.String())
	}
}

func TestHashPassword(t *testing.T) {
	h, err := hashPassword([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")); err != nil {
		t.Errorf("round trip: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horsE")); err == nil {
		t.Error("a wrong password matched")
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != 10 {
		t.Errorf("cost = %d, %v; want 10", cost, err)
	}
	if _, err := hashPassword(nil); err == nil {
		t.Error("empty password accepted")
	}
	if _, err := hashPassword(bytes.Repeat([]byte("x"), 73)); err == nil {
		t.Error("73-byte password accepted")
	}
}

func TestReadPassword(t *testing.T) {
	for in, want := range map[string]string{
		"s3cret pw\n":          "s3cret pw",
		"s3cret pw\r\n":        "s3cret pw",
		"s3cret pw":            "s3cret pw",
		"s3cret pw\nignored\n": "s3cret pw",
		" spaces kept \n":      " spaces kept ",
		"":                     "",
	} {
		got, err := readPassword(strings.NewReader(in))
		if err != nil || string(got) != want {
			t.Errorf("readPassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestHashPasswordCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"hash-password"}, strings.NewReader("s3cret pw\n"), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	h := strings.TrimSuffix(stdout.String(), "\n")
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret pw")); err != nil {
		t.Error(err)
	}
	stdout.Reset()
	if code := run([]string{"hash-password"}, strings.NewReader("\n"), &stdout, &stderr); code != 1 || stdout.Len() != 0 {
		t.Errorf("empty password: exit %d, stdout %q; want 1 and nothing", code, stdout.String())
	}
}

func TestConfigSources(t *testing.T) {
	t.Setenv("CALGATE_TEST_PASSWORD", "s3cret")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := strings.ReplaceAll(`
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: work
        caldav: {url: "https://dav.example.com/alice/work/", username: alice, password_env: CALGATE_TEST_PASSWORD}
      - id: team
        caldav: {url: "http://127.0.0.1:5232/team/", username: alice, password_file: PWFILE, conflict: local-wins, interval: 1m}
      - id: holidays
        ics: {url: "https://example.com/holidays.ics"}
`, "PWFILE", pwFile)
	cfg, err := ParseConfig(strings.NewReader(strings.ReplaceAll(yml, "HASH", testHash)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cals := cfg.Users[0].Calendars
	if cals[0].CalDAV.Interval != defaultCalDAVInterval || cals[0].CalDAV.Conflict != conflictUpstreamWins || cals[2].ICS.Interval != defaultICSInterval {
		t.Fatalf("defaults not applied: %+v %+v", cals[0].CalDAV, cals[2].ICS)
	}
	if pw, err := cals[0].CalDAV.password(); err != nil || pw != "s3cret" {
		t.Fatalf("password_env: %q %v", pw, err)
	}
	if pw, err := cals[1].CalDAV.password(); err != nil || pw != "from-file" {
		t.Fatalf("password_file: %q %v", pw, err)
	}
	for i, want := range []string{calendarKindCalDAV, calendarKindCalDAV, calendarKindICS} {
		if got := calendarKind(cals[i]); got != want {
			t.Fatalf("calendar %d kind %q, want %q", i, got, want)
		}
	}
}

func TestConfigAccounts(t *testing.T) {
	t.Setenv("CALGATE_TEST_PASSWORD", "s3cret")
	cfg, err := parseAndValidate(t, `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
    accounts:
      - id: fastmail
        caldav: {url: "https://caldav.example.net/", username: alice, password_env: CALGATE_TEST_PASSWORD}
      - id: radicale
        caldav: {url: "http://127.0.0.1:5232/alice/", interval: 1m, conflict: local-wins}
`)
	if err != nil {
		t.Fatal(err)
	}
	accs := cfg.Users[0].Accounts
	if d := accs[0].CalDAV; d.Interval != defaultCalDAVInterval || d.Conflict != conflictUpstreamWins {
		t.Errorf("defaults not applied: %+v", d)
	}
	if d := accs[1].CalDAV; d.Interval != time.Minute || d.Conflict != conflictLocalWins {
		t.Errorf("values not kept: %+v", d)
	}
	if pw, err := accs[0].CalDAV.password(); err != nil || pw != "s3cret" {
		t.Errorf("password: %q %v", pw, err)
	}

	_, err = parseAndValidate(t, `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: work
    accounts:
      - id: "a/b"
        caldav: {url: "https://dav.example.com/"}
      - id: work
        caldav: {url: "https://dav.example.com/"}
      - id: fm
        caldav: {url: "https://dav.example.com/"}
      - id: fm
        caldav: {url: "https://dav.example.com/"}
      - id: nodav
      - id: bad
        caldav: {url: "ftp://dav.example.com/", username: alice, conflict: both-win, interval: 1s}
      - id: unset
        caldav: {url: "https://dav.example.com/", username: alice, password_env: CALGATE_TEST_UNSET_PASSWORD}
`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		`users[0] "alice": accounts[0]: id "a/b" must not contain '/'`,
		`users[0] "alice": account "work": id is also the id of calendars[0]`,
		`users[0] "alice": accounts[3]: duplicate account id "fm" (also accounts[2])`,
		`users[0] "alice": account "nodav": caldav is missing`,
		`account "bad": caldav: url "ftp://dav.example.com/": want an absolute http or https URL`,
		`account "bad": caldav: username is set but neither password_env nor password_file`,
		`account "bad": caldav: conflict "both-win": want upstream-wins or local-wins`,
		`account "bad": caldav: interval 1s is shorter than 10s`,
		`account "unset": caldav: password_env: environment variable CALGATE_TEST_UNSET_PASSWORD is not set`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), `account "fm": caldav`) {
		t.Errorf("a valid account reported: %v", err)
	}
}

func TestConfigFeedsAndMerge(t *testing.T) {
	t.Setenv("CALGATE_TEST_TOKENS", "0123456789abcdef0123,fedcba9876543210fedc")
	yml := `
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - id: personal
      - id: work
      - id: everything
        merge: {calendars: [personal, work], write_to: personal}
feeds:
  - name: alice-busy
    calendars: [alice/personal, alice/work]
    privacy: busy
    window: {past: 720h, future: 8760h}
    prefix: {alice/work: "[Work] "}
    tokens_env: CALGATE_TEST_TOKENS
`
	cfg, err := ParseConfig(strings.NewReader(strings.ReplaceAll(yml, "HASH", testHash)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	feeds, err := gatewayFeeds(cfg)
	if err != nil || len(feeds) != 1 || len(feeds[0].Tokens) != 2 {
		t.Fatalf("feeds %+v, %v", feeds, err)
	}
	spec := feeds[0].Spec
	if !spec.Busy || spec.BusySummary != "Busy" || spec.Refresh != time.Hour || len(spec.Members) != 2 || spec.Members[1].Prefix != "[Work] " {
		t.Fatalf("spec %+v", spec)
	}
	if calendarKind(cfg.Users[0].Calendars[2]) != calendarKindMerged {
		t.Fatal("merge calendar kind")
	}
	// Short tokens are refused.
	t.Setenv("CALGATE_TEST_TOKENS", "short")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "shorter than 16") {
		t.Fatalf("short token: %v", err)
	}
}

func TestConfigMetrics(t *testing.T) {
	const user = "\nusers:\n  - name: alice\n    password_hash: \"HASH\"\n"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALGATE_TEST_METRICS_TOKEN", "fedcba9876543210fedc")
	t.Setenv("CALGATE_TEST_METRICS_EMPTY", "")
	for _, tc := range []struct {
		name      string
		yml       string
		on        bool
		token     string
		want      string // substring of the error; "" means valid
		parseFail bool
	}{
		{name: "default: on, open", yml: user, on: true},
		{name: "disabled", yml: user + "metrics: {enabled: false}\n", on: false},
		{name: "token_env", yml: user + "metrics: {token_env: CALGATE_TEST_METRICS_TOKEN}\n", on: true, token: "fedcba9876543210fedc"},
		{name: "token_file", yml: user + "metrics: {token_file: " + tokenFile + "}\n", on: true, token: "0123456789abcdef0123"},
		{name: "unset env", yml: user + "metrics: {token_env: CALGATE_TEST_METRICS_UNSET}\n",
			want: "metrics: token_env: environment variable CALGATE_TEST_METRICS_UNSET is not set"},
		{name: "empty env", yml: user + "metrics: {token_env: CALGATE_TEST_METRICS_EMPTY}\n",
			want: "metrics: token_env: environment variable CALGATE_TEST_METRICS_EMPTY is empty"},
		{name: "empty file", yml: user + "metrics: {token_file: " + emptyFile + "}\n", want: "metrics: token_file " + emptyFile + " is empty"},
		{name: "missing file", yml: user + "metrics: {token_file: " + filepath.Join(dir, "nope") + "}\n", want: "metrics: token_file:"},
		{name: "both", yml: user + "metrics: {token_file: " + tokenFile + ", token_env: CALGATE_TEST_METRICS_TOKEN}\n",
			want: "metrics: set only one of token_env and token_file"},
		{name: "unknown key", yml: user + "metrics:\n  token: abc\n", want: `line 6: unknown key "token" in metrics`, parseFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseAndValidate(t, tc.yml)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				if (cfg == nil) != tc.parseFail {
					t.Errorf("parse failed: %v, want %v", cfg == nil, tc.parseFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Metrics.On(); got != tc.on {
				t.Errorf("On() = %v, want %v", got, tc.on)
			}
			tok, err := cfg.Metrics.token()
			if err != nil || tok != tc.token {
				t.Errorf("token() = %q, %v; want %q", tok, err, tc.token)
			}
		})
	}

	// A short token is refused, and its value is not shown.
	t.Setenv("CALGATE_TEST_METRICS_TOKEN", "s3cret")
	_, err := parseAndValidate(t, user+"metrics: {token_env: CALGATE_TEST_METRICS_TOKEN}\n")
	if err == nil || !strings.Contains(err.Error(), "shorter than 16") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("short token: %v", err)
	}
}

func TestConfigTrustedProxies(t *testing.T) {
	base := "users:\n  - name: alice\n    password_hash: \"$2a$10$UXXx./.VSTrofAOwJ.DCDuuQEW1yE42ca72IP83Ptmej/LqqYhMZO\"\n"
	cfg, err := parseAndValidate(t, base+"trusted_proxies: [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\", \"192.168.1.7/16\"]\n")
	if err != nil {
		t.Fatalf("valid trusted_proxies refused: %v", err)
	}
	got, err := cfg.trustedProxies()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1/32", "::1/128", "10.0.0.0/8", "192.168.0.0/16"}
	if len(got) != len(want) {
		t.Fatalf("trustedProxies = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("trustedProxies[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	_, err = parseAndValidate(t, base+"trusted_proxies: [\"localhost\"]\n")
	if err == nil || !strings.Contains(err.Error(), "trusted_proxies[0]") {
		t.Errorf("host name in trusted_proxies: err = %v, want one naming trusted_proxies[0]", err)
	}
}
