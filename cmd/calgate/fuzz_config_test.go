package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/gateway"
)

// configSeeds are gateway.yaml.example, the configs of the package's
// tests (every raw string literal that holds a users: key, so that new
// tests add seeds) and a few written for the fuzzer: every block, the
// files and environment variables FuzzConfig provides, and YAML that
// pokes at the decoder.
func configSeeds(tb testing.TB) []string {
	example, err := os.ReadFile(filepath.Join("..", "..", "gateway.yaml.example"))
	if err != nil {
		tb.Fatal(err)
	}
	seeds := []string{string(example), `
listen: "[::1]:0"
data: data/calgate.db
base_url: https://cal.example.org/calgate/
max_resource_size: 1048576
trusted_proxies: ["127.0.0.1", "10.0.0.0/8", "::ffff:192.0.2.1"]
metrics: {enabled: true, token_file: testdata/fuzzconfig/metrics.token}
users:
  - name: alice
    password_hash: "HASH"
    calendars:
      - {id: personal, name: "Persönlich ✓", color: "#3366ccff", description: "a: b # c", components: [" vevent", VTODO]}
      - id: work
        caldav: {url: "https://dav.example.com/alice/work/", username: alice, password_file: testdata/fuzzconfig/password.txt, interval: 90s, conflict: local-wins}
      - id: holidays
        ics: {url: "https://example.com/holidays.ics", interval: 720h}
      - id: all
        merge: {calendars: [personal, work, team-x], write_to: work}
    accounts:
      - id: team
        caldav: {url: "http://127.0.0.1:5232/", username: alice, password_env: CALGATE_FUZZ_PASSWORD}
  - name: bob.b_2-x
    password_hash: "HASH"
feeds:
  - name: family
    calendars: [alice/personal, alice/all]
    privacy: busy
    busy_summary: "Not free"
    window: {past: 720h, future: 8760h}
    prefix: {alice/personal: "[A] "}
    tokens_file: testdata/fuzzconfig/tokens.txt
    title: Family
    refresh: 15m
  - name: env
    calendars: [alice/team-x]
    tokens_env: CALGATE_FUZZ_TOKENS
`, `
users:
  - &u {name: alice, password_hash: "HASH", calendars: [{id: a}]}
  - <<: *u
    name: bob
`, "users: [{name: alice, password_hash: \"HASH\", calendars: [{id: \"\\u00e9\"}]}]\n",
		"users:\n- name: alice\n  password_hash: HASH\n---\nusers: []\n",
		"listen: 127.0.0.1:8080\nlisten: 127.0.0.1:9090\nusers: [{name: a, password_hash: HASH}]\n",
		"users: [{name: a, password_hash: HASH, calendars: [{id: c, caldav: {url: 'https://x/', interval: 300}}]}]\n",
		"tls: {cert: testdata/fuzzconfig/cert.pem, key: testdata/fuzzconfig/key.pem}\nusers: [{name: a, password_hash: HASH}]\n",
		"", "---", "users:", "users: ~", "[]", "!!binary AAAA", "a: &a [*a]",
	}
	files, _ := filepath.Glob("*_test.go")
	lit := regexp.MustCompile("`([^`]*)`")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		for _, m := range lit.FindAllSubmatch(src, -1) {
			if s := string(m[1]); strings.Contains(s, "users:") {
				seeds = append(seeds, s)
			}
		}
	}
	for i := range seeds {
		seeds[i] = strings.ReplaceAll(seeds[i], "HASH", testHash)
	}
	return seeds
}

// configFiles are the paths a config may name: token, password and
// certificate files.
func configFiles(c *Config) []string {
	var out []string
	if c.TLS != nil {
		out = append(out, c.TLS.Cert, c.TLS.Key)
	}
	out = append(out, c.Metrics.TokenFile)
	for _, f := range c.Feeds {
		out = append(out, f.TokensFile)
	}
	for _, u := range c.Users {
		for _, cal := range u.Calendars {
			if cal.CalDAV != nil {
				out = append(out, cal.CalDAV.PasswordFile)
			}
		}
		for _, a := range u.Accounts {
			if a.CalDAV != nil {
				out = append(out, a.CalDAV.PasswordFile)
			}
		}
	}
	return out
}

// zeroEmpty sets every empty slice and map reachable through exported
// fields of v to nil: YAML writes nil and empty alike ([] or {}) and
// reads them back as empty, a difference no reader of a Config sees.
func zeroEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			zeroEmpty(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				zeroEmpty(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
		}
		for i := range v.Len() {
			zeroEmpty(v.Index(i))
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
		}
	}
}

// stringFields appends the strings reachable through exported fields
// and slices of v (not map values, which cannot be set) to out, in the
// order of the fields.
func stringFields(v reflect.Value, out []reflect.Value) []reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			out = stringFields(v.Elem(), out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				out = stringFields(v.Field(i), out)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			out = stringFields(v.Index(i), out)
		}
	case reflect.String:
		out = append(out, v)
	}
	return out
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// FuzzConfig feeds arbitrary bytes to the config loader (ParseConfig,
// then Validate, as serve and check-config do), optionally with one
// string of the loaded config set to an arbitrary value, and checks that it never
// panics; that Defaults is idempotent; and that a config that validates
// is written by yaml.v3 into a file that loads back into an equal config
// that validates again (a fixpoint: written again, the same bytes), and
// refers only to calendars that can exist, and is accepted by what serve
// builds from it before it listens: the trusted proxies, the feeds and
// their tokens, and the gateway.
func FuzzConfig(f *testing.F) {
	for _, s := range configSeeds(f) {
		f.Add([]byte(s), "")
	}
	// Every string of the seed that uses every block, set to itself: the
	// fuzzer starts from each value of a valid config.
	rich := []byte(configSeeds(f)[1])
	cfg, err := ParseConfig(bytes.NewReader(rich))
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range stringFields(reflect.ValueOf(cfg), nil) {
		if v.String() != "" {
			f.Add(rich, v.String())
		}
	}
	// The seeds name the files in testdata/fuzzconfig and these
	// environment variables.
	f.Setenv("CALGATE_FUZZ_PASSWORD", "s3cret")
	f.Setenv("CALGATE_FUZZ_TOKENS", "0123456789abcdef0123,,fedcba9876543210fedc")
	store, err := cache.Open(filepath.Join(f.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })

	f.Fuzz(func(t *testing.T, data []byte, value string) {
		cfg, err := ParseConfig(bytes.NewReader(data))
		if err != nil {
			return
		}
		if value != "" {
			// Byte mutations rarely change one value of a config and keep
			// the rest valid, so the fuzzer also sets the string of a
			// config that loads that is most like value (the longest
			// common prefix) to value, and the config is written out and
			// loaded again as a file would be.
			fields := stringFields(reflect.ValueOf(cfg), nil)
			if len(fields) == 0 {
				return
			}
			best, n := 0, -1
			for i, f := range fields {
				if p := commonPrefix(f.String(), value); p > n {
					best, n = i, p
				}
			}
			fields[best].SetString(value)
			if data, err = yaml.Marshal(cfg); err != nil {
				return
			}
			if cfg, err = ParseConfig(bytes.NewReader(data)); err != nil {
				return
			}
		}
		// Validate reads the files a config names: the fuzzer only gets
		// to name files of this package's directory (regular files, of
		// which testdata/fuzzconfig holds the seeds' tokens).
		for _, p := range configFiles(cfg) {
			if p != "" && !filepath.IsLocal(p) {
				return
			}
		}
		again, err := ParseConfig(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("the same bytes parse once and fail once: %v", err)
		}
		again.Defaults()
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("Defaults is not idempotent:\n%+v\n%+v", cfg, again)
		}
		if err := cfg.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatalf("Validate failed without a message")
			}
			return
		}

		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("a valid config does not marshal: %v", err)
		}
		back, err := ParseConfig(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("a valid config, written by yaml.v3, does not load: %v\n%s", err, out)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("a valid config, written and loaded again, does not validate: %v\n%s", err, out)
		}
		// Written out, base_url is no longer derived from listen.
		back.baseURLDerived = cfg.baseURLDerived
		zeroEmpty(reflect.ValueOf(cfg))
		zeroEmpty(reflect.ValueOf(back))
		if !reflect.DeepEqual(cfg, back) {
			t.Fatalf("a valid config changed through yaml.v3:\n%+v\n%+v\n%s", cfg, back, out)
		}
		if out2, err := yaml.Marshal(back); err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("written twice, a valid config differs (%v):\n%s\n%s", err, out, out2)
		}

		// Merge and feed members name calendars that can exist: ids as
		// checkID allows them (a discovered calendar's id is one too).
		for _, u := range cfg.Users {
			for _, c := range u.Calendars {
				if c.Merge == nil {
					continue
				}
				for _, m := range append(slices.Clone(c.Merge.Calendars), c.Merge.WriteTo) {
					if err := checkID("id", m); m != "" && err != nil {
						t.Fatalf("calendar %q of user %q merges %q: %v\n%s", c.ID, u.Name, m, err, data)
					}
				}
			}
		}
		for _, fd := range cfg.Feeds {
			for _, m := range fd.Calendars {
				user, cal, _ := strings.Cut(m, "/")
				if checkID("name", user) != nil || checkID("id", cal) != nil {
					t.Fatalf("feed %q has member %q, which names no calendar that can exist\n%s", fd.Name, m, data)
				}
			}
		}

		// What serve builds from the config before it listens.
		trusted, err := cfg.trustedProxies()
		if err != nil {
			t.Fatalf("trusted_proxies validate but do not parse: %v", err)
		}
		feeds, err := gatewayFeeds(cfg)
		if err != nil {
			t.Fatalf("the feeds validate but have no tokens: %v", err)
		}
		users := make([]gateway.User, 0, len(cfg.Users))
		for _, u := range cfg.Users {
			users = append(users, gateway.User{Name: u.Name, PasswordHash: u.PasswordHash})
		}
		if _, err := gateway.New(gateway.Options{Store: store, Users: users, Feeds: feeds, TrustedProxies: trusted,
			BaseURL: cfg.BaseURL, MaxResourceSize: cfg.MaxResourceSize, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			t.Fatalf("the gateway refuses a valid config: %v\n%s", err, data)
		}
	})
}
