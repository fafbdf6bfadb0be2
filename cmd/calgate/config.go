package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Defaults for the top-level keys of the configuration file.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultData            = "./calgate.db"
	defaultMaxResourceSize = 10 << 20 // 10 MiB, the same as gateway.DefaultMaxResourceSize
)

// defaultComponents is the component set of a calendar that names none.
var defaultComponents = []string{"VEVENT", "VTODO", "VJOURNAL"}

// knownComponents are the component types a calendar may be restricted to.
var knownComponents = map[string]bool{"VEVENT": true, "VTODO": true, "VJOURNAL": true}

// Config is the gateway.yaml file (DESIGN.md §8). Relative paths in it are
// relative to the working directory of the process.
type Config struct {
	// Listen is the TCP address to serve on. Port 0 picks a free port.
	// Default: "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// Data is the path of the bbolt file. Default: "./calgate.db".
	Data string `yaml:"data"`
	// BaseURL is the public URL of the gateway, used for links in feeds and
	// on the status page. Default: "http://" (or "https://" with TLS) +
	// Listen.
	BaseURL string `yaml:"base_url"`
	// TLS, if set, makes calgate serve HTTPS itself. Default: plain HTTP
	// (put a TLS-terminating reverse proxy in front).
	TLS *TLSConfig `yaml:"tls"`
	// MaxResourceSize caps a calendar object and any request body, in
	// bytes. Default: 10485760 (10 MiB).
	MaxResourceSize int64 `yaml:"max_resource_size"`
	// ReadHeaderTimeout is how long a client may take to send a request's
	// line and headers before the connection is closed. Default: 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// Users are the accounts that may sign in, with their calendars.
	Users []UserConfig `yaml:"users"`
	// Feeds are merged .ics feeds, served under /feeds/.
	Feeds []FeedConfig `yaml:"feeds"`
	// TrustedProxies are the addresses (IPs or CIDR prefixes) of reverse
	// proxies whose X-Forwarded-For and X-Forwarded-Proto headers calgate
	// believes. Default: none (the headers are ignored).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Metrics configures /metrics (Prometheus). Default: enabled, open.
	Metrics MetricsConfig `yaml:"metrics"`

	// baseURLDerived records that BaseURL was filled in by Defaults, so
	// that serve may replace it with the address it actually listens on.
	baseURLDerived bool
}

// MetricsConfig configures the Prometheus metrics at /metrics. /healthz
// and /readyz are always served, without authentication.
type MetricsConfig struct {
	// Enabled serves /metrics. Default: true.
	Enabled *bool `yaml:"enabled"`
	// TokenEnv names an environment variable holding a bearer token that
	// a scrape must send (Authorization: Bearer TOKEN). Default: none,
	// /metrics is open (it shows user names and calendar ids).
	TokenEnv string `yaml:"token_env"`
	// TokenFile names a file holding the bearer token (surrounding
	// whitespace ignored). At most one of TokenEnv and TokenFile may be
	// set.
	TokenFile string `yaml:"token_file"`
}

// On reports whether /metrics is served.
func (m MetricsConfig) On() bool { return m.Enabled == nil || *m.Enabled }

// token reads the metrics bearer token from token_env or token_file; ""
// if neither is set. The value is never logged.
func (m MetricsConfig) token() (string, error) {
	switch {
	case m.TokenEnv != "" && m.TokenFile != "":
		return "", errors.New("set only one of token_env and token_file")
	case m.TokenEnv != "":
		v, ok := os.LookupEnv(m.TokenEnv)
		if !ok {
			return "", fmt.Errorf("token_env: environment variable %s is not set (export it before starting calgate)", m.TokenEnv)
		}
		if v = strings.TrimSpace(v); v == "" {
			return "", fmt.Errorf("token_env: environment variable %s is empty (set it to a token, e.g. from: openssl rand -hex 16)", m.TokenEnv)
		}
		return v, nil
	case m.TokenFile != "":
		b, err := os.ReadFile(m.TokenFile)
		if err != nil {
			return "", fmt.Errorf("token_file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("token_file %s is empty (write a token into it, e.g. from: openssl rand -hex 16)", m.TokenFile)
		}
		return v, nil
	}
	return "", nil
}

// validate lists the problems of the metrics block.
func (m MetricsConfig) validate() []error {
	var errs []error
	tok, err := m.token()
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("metrics: %w", err))
	case tok != "" && len(tok) < minTokenLen:
		errs = append(errs, fmt.Errorf("metrics: the token is shorter than %d characters (make one with: openssl rand -hex 16)", minTokenLen))
	case strings.ContainsAny(tok, " \t\r\n"):
		errs = append(errs, errors.New("metrics: the token must be one word, without spaces or line breaks"))
	}
	return errs
}

// TLSConfig names the certificate and key files for HTTPS.
type TLSConfig struct {
	// Cert is a PEM file with the certificate chain, leaf first.
	Cert string `yaml:"cert"`
	// Key is the PEM file with the private key of Cert.
	Key string `yaml:"key"`
}

// UserConfig is one account.
type UserConfig struct {
	// Name is the login name and the user's URL segment. Allowed
	// characters: A-Z a-z 0-9 . _ -
	Name string `yaml:"name"`
	// PasswordHash is a bcrypt hash, as printed by `calgate hash-password`.
	PasswordHash string `yaml:"password_hash"`
	// Calendars are the user's calendars. A calendar without caldav, ics or
	// merge is a local calendar, stored only in the data file.
	Calendars []CalendarConfig `yaml:"calendars"`
	// Accounts are upstream CalDAV accounts whose calendars are all
	// mirrored, as "<account id>-<upstream collection name>".
	Accounts []AccountConfig `yaml:"accounts"`
}

// CalendarConfig is one calendar of a user. At most one of CalDAV, ICS and
// Merge is set; none means a local calendar.
type CalendarConfig struct {
	// ID is the calendar's URL segment, unique per user. Allowed
	// characters: A-Z a-z 0-9 . _ -
	ID string `yaml:"id"`
	// Name is the display name. Default: the ID.
	Name string `yaml:"name"`
	// Color is "#RRGGBB" or "#RRGGBBAA". Default: none (the client picks).
	Color string `yaml:"color"`
	// Description is free text shown by clients. Default: empty.
	Description string `yaml:"description"`
	// Components restricts the component types the calendar accepts.
	// Default: [VEVENT, VTODO, VJOURNAL].
	Components []string `yaml:"components"`
	// CalDAV mirrors one upstream CalDAV collection, two-way.
	CalDAV *CalDAVSourceConfig `yaml:"caldav"`
	// ICS mirrors a published .ics URL; clients may only read it.
	ICS *ICSSourceConfig `yaml:"ics"`
	// Merge is a read-only union of other calendars of the same user.
	// Not supported yet.
	Merge *MergeConfig `yaml:"merge"`
}

// CalDAVSourceConfig is an upstream CalDAV collection or account.
type CalDAVSourceConfig struct {
	// URL is the collection URL (for a calendar) or any URL of the server
	// (for an account, where discovery starts).
	URL string `yaml:"url"`
	// Username for HTTP Basic authentication upstream.
	Username string `yaml:"username"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile names a file holding the password (trailing newline
	// ignored). Exactly one of PasswordEnv and PasswordFile may be set.
	PasswordFile string `yaml:"password_file"`
	// Interval between polls. Default: 5m.
	Interval time.Duration `yaml:"interval"`
	// Conflict is the policy when both sides changed an object:
	// "upstream-wins" or "local-wins". Default: "upstream-wins".
	Conflict string `yaml:"conflict"`
}

// ICSSourceConfig is a published .ics feed that a calendar mirrors.
type ICSSourceConfig struct {
	// URL of the feed.
	URL string `yaml:"url"`
	// Interval between polls. Default: 1h.
	Interval time.Duration `yaml:"interval"`
}

// MergeConfig is a merged, read-only view over other calendars.
type MergeConfig struct {
	// Calendars are IDs of calendars of the same user.
	Calendars []string `yaml:"calendars"`
	// WriteTo, if set, is the ID of the member that receives writes into
	// the merged calendar. Default: none (the merged calendar is read-only).
	WriteTo string `yaml:"write_to"`
}

// AccountConfig is an upstream account whose calendars are discovered and
// mirrored as "<id>-<upstream collection name>".
type AccountConfig struct {
	// ID prefixes the IDs of the discovered calendars.
	ID string `yaml:"id"`
	// CalDAV is the upstream account: url is where discovery starts (the
	// server's root uses /.well-known/caldav), interval the poll interval
	// of each discovered calendar (default 5m; the account itself is
	// rediscovered every hour), conflict their policy.
	CalDAV *CalDAVSourceConfig `yaml:"caldav"`
}

// FeedConfig is a merged .ics feed published at /feeds/{name}.ics.
type FeedConfig struct {
	// Name is the feed's URL segment.
	Name string `yaml:"name"`
	// Calendars are members, as "user/calendar-id".
	Calendars []string `yaml:"calendars"`
	// Privacy is "full" or "busy". Default: "full".
	Privacy string `yaml:"privacy"`
	// BusySummary replaces SUMMARY in busy mode. Default: "Busy".
	BusySummary string `yaml:"busy_summary"`
	// Window bounds the events kept. Default: no bounds.
	Window FeedWindow `yaml:"window"`
	// Prefix maps a member ("user/calendar-id") to a SUMMARY prefix.
	Prefix map[string]string `yaml:"prefix"`
	// TokensEnv names an environment variable holding comma-separated
	// access tokens.
	TokensEnv string `yaml:"tokens_env"`
	// TokensFile names a file holding access tokens, one per line.
	TokensFile string `yaml:"tokens_file"`
	// Title is the feed's X-WR-CALNAME. Default: the name.
	Title string `yaml:"title"`
	// Refresh is the poll interval suggested to subscribers
	// (REFRESH-INTERVAL and X-PUBLISHED-TTL). Default: 1h.
	Refresh time.Duration `yaml:"refresh"`
}

// FeedWindow bounds a feed relative to now.
type FeedWindow struct {
	// Past keeps events that end after now-Past. Zero means unbounded.
	Past time.Duration `yaml:"past"`
	// Future keeps events that start before now+Future. Zero means unbounded.
	Future time.Duration `yaml:"future"`
}

// LoadConfig reads, decodes and fills in defaults for the config file at
// path. It does not validate; call Validate. The error names the file, and
// the line for a YAML error.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config file %s not found (copy gateway.yaml.example to %s, or pass -config)", path, path)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes one YAML document strictly (an unknown key is an
// error) and applies Defaults.
func ParseConfig(r io.Reader) (*Config, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	cfg := new(Config)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("config holds more than one YAML document (remove the extra '---')")
	}
	cfg.Defaults()
	return cfg, nil
}

// yamlFieldErr matches yaml.v3's message for an unknown key.
var yamlFieldErr = regexp.MustCompile(`^line (\d+): field (.+) not found in type main\.(\w+)$`)

// yamlContext says where in the file each struct sits, for error messages.
var yamlContext = map[string]string{
	"Config":             "at the top level",
	"TLSConfig":          "in tls",
	"UserConfig":         "in a user",
	"CalendarConfig":     "in a calendar",
	"CalDAVSourceConfig": "in caldav",
	"ICSSourceConfig":    "in ics",
	"MergeConfig":        "in merge",
	"AccountConfig":      "in an account",
	"FeedConfig":         "in a feed",
	"FeedWindow":         "in window",
	"MetricsConfig":      "in metrics",
}

// yamlError rewrites yaml.v3's type errors so that they speak of keys and
// lines instead of Go types.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if s := yamlFieldErr.FindStringSubmatch(m); s != nil {
			where := yamlContext[s[3]]
			if where == "" {
				where = "in " + s[3]
			}
			m = fmt.Sprintf("line %s: unknown key %q %s (check the spelling against gateway.yaml.example)", s[1], s[2], where)
		} else {
			m = strings.ReplaceAll(m, "main.", "")
			if strings.HasSuffix(m, "into time.Duration") {
				m += " (write a duration with its unit, e.g. 90s, 5m or 6h)"
			}
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// Defaults fills in every unset key with its default.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.Data == "" {
		c.Data = defaultData
	}
	if c.BaseURL == "" {
		scheme := "http"
		if c.TLS != nil {
			scheme = "https"
		}
		c.BaseURL = scheme + "://" + c.Listen
		c.baseURLDerived = true
	}
	if c.MaxResourceSize == 0 {
		c.MaxResourceSize = defaultMaxResourceSize
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = readHeaderTimeout
	}
	for i := range c.Feeds {
		f := &c.Feeds[i]
		if f.Privacy == "" {
			f.Privacy = "full"
		}
		if f.BusySummary == "" {
			f.BusySummary = "Busy"
		}
		if f.Refresh == 0 {
			f.Refresh = time.Hour
		}
	}
	for i := range c.Users {
		for j := range c.Users[i].Calendars {
			cal := &c.Users[i].Calendars[j]
			if cal.Name == "" {
				cal.Name = cal.ID
			}
			if len(cal.Components) == 0 {
				cal.Components = append([]string(nil), defaultComponents...)
			}
			for k, comp := range cal.Components {
				cal.Components[k] = strings.ToUpper(strings.TrimSpace(comp))
			}
			if cal.CalDAV != nil {
				if cal.CalDAV.Interval == 0 {
					cal.CalDAV.Interval = defaultCalDAVInterval
				}
				if cal.CalDAV.Conflict == "" {
					cal.CalDAV.Conflict = conflictUpstreamWins
				}
			}
			if cal.ICS != nil && cal.ICS.Interval == 0 {
				cal.ICS.Interval = defaultICSInterval
			}
		}
		for j := range c.Users[i].Accounts {
			if dav := c.Users[i].Accounts[j].CalDAV; dav != nil {
				// Interval is the poll interval of every discovered
				// calendar, as for a single one.
				if dav.Interval == 0 {
					dav.Interval = defaultCalDAVInterval
				}
				if dav.Conflict == "" {
					dav.Conflict = conflictUpstreamWins
				}
			}
		}
	}
}

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	colorPattern = regexp.MustCompile(`^#[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$`)
)

// checkID reports why s cannot be a user name or calendar id, or nil.
func checkID(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is missing", what)
	case s == "." || s == "..":
		return fmt.Errorf("%s %q is not allowed", what, s)
	case strings.Contains(s, "/"):
		return fmt.Errorf("%s %q must not contain '/'", what, s)
	case !idPattern.MatchString(s):
		return fmt.Errorf("%s %q may contain only letters, digits, '.', '_' and '-'", what, s)
	}
	return nil
}

// Validate checks the config after Defaults and returns every problem it
// finds, joined, each naming the item it is about. With TLS configured it
// also loads the certificate and key.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add(fmt.Errorf("listen %q: want host:port, e.g. 127.0.0.1:8080 (%v)", c.Listen, err))
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add(fmt.Errorf("base_url %q: want an absolute http or https URL, e.g. https://cal.example.com", c.BaseURL))
	}
	if c.MaxResourceSize < 0 {
		add(fmt.Errorf("max_resource_size %d: must be a positive number of bytes", c.MaxResourceSize))
	}
	if c.ReadHeaderTimeout < 0 {
		add(fmt.Errorf("read_header_timeout %s: must be a positive duration, e.g. 10s", c.ReadHeaderTimeout))
	}
	if _, err := c.trustedProxies(); err != nil {
		add(err)
	}
	if c.TLS != nil {
		switch {
		case c.TLS.Cert == "" || c.TLS.Key == "":
			add(errors.New("tls: both cert and key are required (or remove the tls key to serve plain HTTP)"))
		default:
			if _, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key); err != nil {
				add(fmt.Errorf("tls: cannot load cert %s and key %s: %w", c.TLS.Cert, c.TLS.Key, err))
			}
		}
	}
	if len(c.Users) == 0 {
		add(errors.New("users: at least one user is required (see gateway.yaml.example)"))
	}

	users := make(map[string]int, len(c.Users))
	for i, u := range c.Users {
		where := fmt.Sprintf("users[%d]", i)
		if u.Name != "" {
			where += fmt.Sprintf(" %q", u.Name)
		}
		if err := checkID("name", u.Name); err != nil {
			add(fmt.Errorf("%s: %w", where, err))
		} else if prev, dup := users[u.Name]; dup {
			add(fmt.Errorf("%s: duplicate user name (also users[%d])", where, prev))
		} else {
			users[u.Name] = i
		}
		switch {
		case u.PasswordHash == "":
			add(fmt.Errorf("%s: password_hash is missing (create one with `calgate hash-password`)", where))
		default:
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				add(fmt.Errorf("%s: password_hash is not a bcrypt hash (create one with `calgate hash-password`)", where))
			}
		}

		cals := make(map[string]int, len(u.Calendars))
		for j, cal := range u.Calendars {
			cwhere := fmt.Sprintf("%s: calendars[%d]", where, j)
			if err := checkID("id", cal.ID); err != nil {
				add(fmt.Errorf("%s: %w", cwhere, err))
			} else if prev, dup := cals[cal.ID]; dup {
				add(fmt.Errorf("%s: duplicate calendar id %q (also calendars[%d])", cwhere, cal.ID, prev))
			} else {
				cals[cal.ID] = j
				cwhere = fmt.Sprintf("%s: calendar %q", where, cal.ID)
			}
			if cal.Color != "" && !colorPattern.MatchString(cal.Color) {
				add(fmt.Errorf("%s: color %q: want #RRGGBB or #RRGGBBAA", cwhere, cal.Color))
			}
			seen := make(map[string]bool, len(cal.Components))
			for _, comp := range cal.Components {
				switch {
				case !knownComponents[comp]:
					add(fmt.Errorf("%s: components: unknown component %q (want VEVENT, VTODO or VJOURNAL)", cwhere, comp))
				case seen[comp]:
					add(fmt.Errorf("%s: components: %s listed twice", cwhere, comp))
				}
				seen[comp] = true
			}
			sources := 0
			if cal.CalDAV != nil {
				sources++
				for _, err := range cal.CalDAV.validate() {
					add(fmt.Errorf("%s: caldav: %w", cwhere, err))
				}
			}
			if cal.ICS != nil {
				sources++
				if err := checkURL(cal.ICS.URL); err != nil {
					add(fmt.Errorf("%s: ics: %w", cwhere, err))
				}
				if cal.ICS.Interval < minInterval {
					add(fmt.Errorf("%s: ics: interval %s is shorter than %s", cwhere, cal.ICS.Interval, minInterval))
				}
			}
			if cal.Merge != nil {
				sources++
			}
			if sources > 1 {
				add(fmt.Errorf("%s: a calendar has at most one of caldav, ics and merge", cwhere))
			}
		}
		for _, err := range validateAccounts(where, u.Accounts, cals) {
			add(err)
		}
		for _, cal := range u.Calendars {
			if cal.Merge != nil {
				for _, err := range validateMerge(u, cal) {
					add(fmt.Errorf("%s: calendar %q: merge: %w", where, cal.ID, err))
				}
			}
		}
	}
	for _, err := range c.validateFeeds() {
		add(err)
	}
	for _, err := range c.Metrics.validate() {
		add(err)
	}
	return errors.Join(errs...)
}

// knownCalendar reports whether id names a calendar of u: a configured
// one, or one an account of u may discover ("<account id>-<name>", where
// name is not empty and, like every id, made of the characters idPattern
// allows: upstream sanitizes the names it discovers to those).
func knownCalendar(u UserConfig, id string) (CalendarConfig, bool) {
	for _, c := range u.Calendars {
		if c.ID == id {
			return c, true
		}
	}
	for _, a := range u.Accounts {
		if a.ID != "" && strings.HasPrefix(id, a.ID+"-") && len(id) > len(a.ID)+1 && idPattern.MatchString(id) {
			return CalendarConfig{ID: id, CalDAV: a.CalDAV}, true
		}
	}
	return CalendarConfig{}, false
}

// validateMerge lists the problems of merged calendar cal of user u.
func validateMerge(u UserConfig, cal CalendarConfig) []error {
	var errs []error
	if len(cal.Merge.Calendars) == 0 {
		errs = append(errs, errors.New("calendars: name at least one member"))
	}
	seen := map[string]bool{}
	for _, m := range cal.Merge.Calendars {
		mc, ok := knownCalendar(u, m)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("unknown calendar %q (members are ids of this user's calendars)", m))
		case mc.Merge != nil:
			errs = append(errs, fmt.Errorf("member %q is itself merged", m))
		case seen[m]:
			errs = append(errs, fmt.Errorf("member %q listed twice", m))
		}
		seen[m] = true
	}
	if w := cal.Merge.WriteTo; w != "" {
		mc, _ := knownCalendar(u, w)
		switch {
		case !seen[w]:
			errs = append(errs, fmt.Errorf("write_to %q is not one of the members", w))
		case mc.ICS != nil:
			errs = append(errs, fmt.Errorf("write_to %q mirrors a read-only .ics feed", w))
		}
	}
	return errs
}

// minTokenLen is the shortest feed token accepted: a token is the only
// key to a feed.
const minTokenLen = 16

// validateFeeds lists the problems of the feeds, tokens included.
func (c *Config) validateFeeds() []error {
	var errs []error
	names := map[string]bool{}
	for i, f := range c.Feeds {
		where := fmt.Sprintf("feeds[%d]", i)
		if f.Name != "" {
			where += fmt.Sprintf(" %q", f.Name)
		}
		add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(where+": "+format, args...)) }
		if err := checkID("name", f.Name); err != nil {
			add("%v", err)
		} else if names[f.Name] {
			add("duplicate feed name")
		}
		names[f.Name] = true
		if len(f.Calendars) == 0 {
			add("calendars: name at least one member as user/calendar")
		}
		members := map[string]bool{}
		for _, m := range f.Calendars {
			user, cal, ok := strings.Cut(m, "/")
			var found bool
			for _, u := range c.Users {
				if u.Name == user {
					_, found = knownCalendar(u, cal)
				}
			}
			if !ok || !found {
				add("unknown calendar %q (write members as user/calendar-id)", m)
			}
			members[m] = true
		}
		for m := range f.Prefix {
			if !members[m] {
				add("prefix for %q, which is not a member", m)
			}
		}
		if f.Privacy != "full" && f.Privacy != "busy" {
			add("privacy %q: want full or busy", f.Privacy)
		}
		if f.Window.Past < 0 || f.Window.Future < 0 {
			add("window: past and future must not be negative")
		}
		tokens, err := f.tokens()
		if err != nil {
			add("%v", err)
		}
		for _, t := range tokens {
			if len(t) < minTokenLen {
				add("a token is shorter than %d characters (make one with: openssl rand -hex 16)", minTokenLen)
				break
			}
		}
	}
	return errs
}

// tokens reads the feed's access tokens from tokens_env (comma-separated)
// or tokens_file (one per line). They are never logged.
func (f *FeedConfig) tokens() ([]string, error) {
	var raw string
	switch {
	case f.TokensEnv != "" && f.TokensFile != "":
		return nil, errors.New("set only one of tokens_env and tokens_file")
	case f.TokensEnv != "":
		v, ok := os.LookupEnv(f.TokensEnv)
		if !ok {
			return nil, fmt.Errorf("tokens_env: environment variable %s is not set (export it before starting calgate)", f.TokensEnv)
		}
		raw = strings.ReplaceAll(v, ",", "\n")
	case f.TokensFile != "":
		b, err := os.ReadFile(f.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("tokens_file: %w", err)
		}
		raw = string(b)
	default:
		return nil, errors.New("no tokens: set tokens_env or tokens_file (a feed is only served with a token)")
	}
	var out []string
	for _, t := range strings.Split(raw, "\n") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the token list is empty")
	}
	return out, nil
}

// validateAccounts lists the problems of a user's accounts: where names
// the user, cals holds the ids of the user's calendars. An account's id is
// checked like a calendar id and must differ from them (the account's sync
// state is kept under "<user>/<id>", as a calendar's source is).
func validateAccounts(where string, accounts []AccountConfig, cals map[string]int) []error {
	var errs []error
	ids := make(map[string]int, len(accounts))
	for k, acc := range accounts {
		awhere := fmt.Sprintf("%s: accounts[%d]", where, k)
		if err := checkID("id", acc.ID); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", awhere, err))
		} else if prev, dup := ids[acc.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate account id %q (also accounts[%d])", awhere, acc.ID, prev))
		} else {
			ids[acc.ID] = k
			awhere = fmt.Sprintf("%s: account %q", where, acc.ID)
			if j, clash := cals[acc.ID]; clash {
				errs = append(errs, fmt.Errorf("%s: id is also the id of calendars[%d]; give the account another id", awhere, j))
			}
		}
		if acc.CalDAV == nil {
			errs = append(errs, fmt.Errorf("%s: caldav is missing (url, and username with password_env or password_file)", awhere))
			continue
		}
		for _, err := range acc.CalDAV.validate() {
			errs = append(errs, fmt.Errorf("%s: caldav: %w", awhere, err))
		}
	}
	return errs
}

// CountCalendars returns the number of calendars over all users.
func (c *Config) CountCalendars() int {
	n := 0
	for _, u := range c.Users {
		n += len(u.Calendars)
	}
	return n
}

// Source defaults and limits.
const (
	defaultCalDAVInterval = 5 * time.Minute
	defaultICSInterval    = time.Hour
	minInterval           = 10 * time.Second
	conflictUpstreamWins  = "upstream-wins"
	conflictLocalWins     = "local-wins"
)

// checkURL reports why s is not an absolute http(s) URL, or nil.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http or https URL", s)
	}
	return nil
}

// validate lists the problems of a CalDAV source, including a password
// that cannot be read (a missing secret is a start-up error).
func (c *CalDAVSourceConfig) validate() []error {
	var errs []error
	if err := checkURL(c.URL); err != nil {
		errs = append(errs, err)
	}
	if c.PasswordEnv != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("set only one of password_env and password_file"))
	}
	if c.Username != "" && c.PasswordEnv == "" && c.PasswordFile == "" {
		errs = append(errs, errors.New("username is set but neither password_env nor password_file"))
	}
	if c.Username != "" || c.PasswordEnv != "" || c.PasswordFile != "" {
		if _, err := c.password(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Conflict != conflictUpstreamWins && c.Conflict != conflictLocalWins {
		errs = append(errs, fmt.Errorf("conflict %q: want %s or %s", c.Conflict, conflictUpstreamWins, conflictLocalWins))
	}
	if c.Interval < minInterval {
		errs = append(errs, fmt.Errorf("interval %s is shorter than %s", c.Interval, minInterval))
	}
	return errs
}

// password reads the source's password from its environment variable or
// file. The value is never logged.
func (c *CalDAVSourceConfig) password() (string, error) {
	switch {
	case c.PasswordEnv != "":
		v, ok := os.LookupEnv(c.PasswordEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("password_env: environment variable %s is not set (export it before starting calgate)", c.PasswordEnv)
		}
		return v, nil
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

// trustedProxies parses TrustedProxies: a bare address is a prefix of
// its full length.
func (c *Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies[%d] %q: want an IP address or a CIDR prefix, e.g. 127.0.0.1 or 10.0.0.0/8", i, s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
