// Command calgate is a CalDAV gateway: a CalDAV server (RFC 4791) for
// clients over a bbolt store, configured by one YAML file.
//
// Run `calgate -h` for the subcommands and flags.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // serve correct time zones on hosts without zoneinfo

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/gateway"
	"github.com/calgate/calgate/ical"
	"github.com/calgate/calgate/upstream"
)

// Server timeouts and the shutdown grace period. readHeaderTimeout is the
// default of the config's read_header_timeout.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 5 * time.Minute
	writeTimeout      = 5 * time.Minute
	idleTimeout       = 2 * time.Minute
	shutdownGrace     = 10 * time.Second
)

// bcryptCost is the cost of hashes made by hash-password.
const bcryptCost = 10

// calendarKindLocal is the cache.Calendar Kind of a calendar that lives
// only in the store.
const calendarKindLocal = "local"

// command is one subcommand: its one-line summary for `calgate --help`,
// its complete help for `calgate help NAME` and `calgate NAME -h`, and
// the flags and arguments it takes.
type command struct {
	name    string
	summary string
	help    string
	// config, json, output: whether the command takes -config, -json and
	// -o. Every command takes -log-level and -log-format.
	config, json, output bool
	// minArgs and maxArgs bound the positional arguments (-1: no bound).
	minArgs, maxArgs int
}

// commands lists the subcommands in the order --help shows them.
var commands = []command{
	{name: "serve", config: true, summary: "serve CalDAV, feeds and the status page (the default subcommand)", help: `Usage: calgate [serve] [-config FILE] [-log-level LEVEL] [-log-format FORMAT]

Serve CalDAV to clients, the merged feeds and the status page on the
config's listen address, and sync the mirrored calendars with their
upstreams. serve is the default when no subcommand is given. It stops
gracefully on SIGINT or SIGTERM: it stops accepting, lets requests finish
(10s at most), stops the sync workers and closes the data file last.

While it runs, serve holds the data file (only one calgate can) and
answers the CLI on a unix socket next to it, DATA.sock (mode 0600): backup,
status and export go through the socket then; import and compact need
calgate stopped.

Flags:
` + commonFlagHelp + `
Examples:
  calgate serve -config /etc/calgate/gateway.yaml
  calgate -config gateway.yaml                     # same as serve
  calgate serve -log-level debug -log-format json  # one JSON line per request
`},
	{name: "check-config", config: true, summary: "validate the config file and print every problem found", help: `Usage: calgate check-config [-config FILE]

Load and validate the config file without starting: print every problem
found (unknown keys, duplicate ids, unknown merge members, missing
secrets), or "config OK: N users, M calendars". Exit status 1 on error.
Needs nothing else: neither the data file nor a running calgate.

Flags:
` + commonFlagHelp + `
Examples:
  calgate check-config
  calgate check-config -config /etc/calgate/gateway.yaml && systemctl restart calgate
`},
	{name: "hash-password", summary: "print the bcrypt hash of a password for password_hash", help: `Usage: calgate hash-password

Read a password and print its bcrypt hash for a user's password_hash key.
On a terminal it prompts twice without echo; otherwise it reads the first
line of standard input. Needs nothing else.

Flags:
  -log-level LEVEL    debug, info, warn or error (default "info")
  -log-format FORMAT  text or json (default "text")

Examples:
  calgate hash-password                              # prompts
  printf '%s\n' "$PASSWORD" | calgate hash-password
`},
	{name: "import", config: true, minArgs: 2, maxArgs: 2, summary: "store the events of an .ics file in a calendar", help: `Usage: calgate import [-config FILE] USER/CALENDAR FILE.ics

Read an iCalendar file (FILE "-" reads standard input), split it into one
calendar object per UID (a recurring event and its exceptions stay
together, with the time zones they use), and store each object in the
calendar USER/CALENDAR. An object whose UID the calendar already holds is
replaced, so importing the same file twice changes nothing. Items that
cannot be read are reported, one line each, and skipped; the rest is
stored. A caldav calendar queues the imported objects for its upstream
(they are pushed when calgate runs, or by calgate sync).

Shows a progress bar when standard error is a terminal, and always ends
with a summary: "imported N objects (R replaced, U unchanged), S skipped,
in T". Exit status 0 when objects were stored, 1 when the file held
nothing that could be stored.

Needs the data file to itself: stop calgate first.

Flags:
` + commonFlagHelp + `
Examples:
  calgate import alice/personal ~/Downloads/basic.ics
  curl -s https://example.com/team.ics | calgate import -config /etc/calgate/gateway.yaml alice/team -
`},
	{name: "export", config: true, output: true, minArgs: 1, maxArgs: 1, summary: "write a calendar or a feed as one .ics file", help: `Usage: calgate export [-config FILE] [-o FILE] USER/CALENDAR|FEED

Write the calendar USER/CALENDAR, or the feed FEED (a name from the
config's feeds), as the one .ics file a subscriber gets (a feed with its
window, privacy and prefixes applied), to standard output or, with -o, to
FILE (written to FILE.tmp first and renamed, so FILE is never half
written).

Works with calgate running (through its admin socket) or stopped (from
the data file).

Flags:
` + commonFlagHelp + `  -o FILE             write to FILE instead of standard output

Examples:
  calgate export alice/personal > personal.ics
  calgate export -o /var/backups/alice-busy.ics alice-busy
`},
	{name: "sync", config: true, minArgs: 0, maxArgs: -1, summary: "sync mirrored calendars once now, with a line per source", help: `Usage: calgate sync [-config FILE] [SOURCE ...]

Sync every mirrored calendar (or the SOURCEs named, as USER/CALENDAR)
once now, with a line of progress per source, then exit. Accounts
rediscover their calendars first. Pending local writes are pushed before
each pull. Exit status 1 if a source failed.

Needs the data file to itself: stop calgate first (a running calgate
syncs on its own).

Flags:
` + commonFlagHelp + `
Examples:
  calgate sync
  calgate sync alice/holidays alice/work
`},
	{name: "status", config: true, json: true, summary: "print each source's health as a table (-json for scripts)", help: `Usage: calgate status [-config FILE] [-json]

Print the health of every source (mirrored calendars and accounts): kind,
last success, consecutive failures, pending writes (outbox), conflicts,
next sync and last error. With -json, print a JSON array of objects with
the keys source, user, calendar, kind, last_success, last_attempt,
failures, outbox, conflicts, next_sync, last_error and notes (times in
RFC 3339, null when unknown).

Works with calgate running (through its admin socket) or stopped (from
the data file).

Flags:
` + commonFlagHelp + `  -json               print JSON instead of a table

Examples:
  calgate status
  calgate status -json | jq -r '.[] | select(.failures > 0) | .source'
`},
	{name: "backup", config: true, minArgs: 1, maxArgs: 1, summary: "write a consistent copy of the data file, even while serving", help: `Usage: calgate backup [-config FILE] FILE

Write a consistent copy of the data file to FILE: taken in one read
transaction, so it is consistent even while calgate serves and clients
write. It is written to FILE.tmp, synced, renamed to FILE, then verified
(page structure, schema, every record), and reported as
"backup: N calendars, M objects, X MB written to FILE". It refuses to
overwrite the data file itself. To restore, stop calgate and copy the
backup over the data file.

Works with calgate running (through its admin socket) or stopped (from
the data file).

Flags:
` + commonFlagHelp + `
Examples:
  calgate backup /var/backups/calgate-$(date +%F).db
  calgate backup -config /etc/calgate/gateway.yaml /var/backups/calgate.db
`},
	{name: "compact", config: true, summary: "shrink the data file (calgate stopped), reporting the sizes", help: `Usage: calgate compact [-config FILE]

Rewrite the data file without its free pages: copy it into DATA.compact
beside it, verify the copy, and rename it over the data file. Print the
size before and after. The data file only grows while calgate runs;
compact after deleting many calendars or objects.

Needs the data file to itself: stop calgate first.

Flags:
` + commonFlagHelp + `
Examples:
  calgate compact
  systemctl stop calgate && calgate compact -config /etc/calgate/gateway.yaml && systemctl start calgate
`},
	{name: "restore", config: true, minArgs: 1, maxArgs: 1, summary: "replace the data file with a backup (calgate stopped)", help: `Usage: calgate restore [-config FILE] BACKUP

Replace the data file with the backup BACKUP (made by calgate backup):
verify the backup, copy it beside the data file, give every calendar a
new sync epoch, verify the copy, and rename it over the data file. The
file it replaces is kept as DATA.before-restore.

The new epochs make the sync tokens and ctags that clients hold invalid,
so clients resync each calendar in full: without them, a client that saw
changes made after the backup would take the restored calendar's reused
revision numbers for changes it already has. Mirrored calendars keep
their upstream sync state and catch up at the next sync; writes that were
waiting for an upstream at backup time are pushed again (an upstream that
already has them is recognised, anything else is recorded as a conflict).

Needs the data file to itself: stop calgate first.

Flags:
` + commonFlagHelp + `
Examples:
  calgate restore /var/backups/calgate-2026-11-20.db
  systemctl stop calgate && calgate restore -config /etc/calgate/gateway.yaml /var/backups/calgate.db && systemctl start calgate
`},
	{name: "help", minArgs: 0, maxArgs: 1, summary: "print this help, or a subcommand's complete help", help: `Usage: calgate help [SUBCOMMAND]

Print the list of subcommands, or the complete help of one: its
synopsis, every flag, what it needs, and examples.

Examples:
  calgate help
  calgate help backup
`},
}

// commonFlagHelp describes the flags most subcommands share.
const commonFlagHelp = `  -config FILE        config file (default "gateway.yaml")
  -log-level LEVEL    debug, info, warn or error (default "info")
  -log-format FORMAT  text or json (default "text"); logs go to standard error
`

// usageText is the help of `calgate --help`.
func usageText() string {
	var b strings.Builder
	b.WriteString(`calgate is a CalDAV gateway: a CalDAV server for calendar clients,
a sync engine towards upstream CalDAV servers and .ics feeds, and a
publisher of merged feeds, backed by one bbolt file and configured by one
YAML file.

Usage:
  calgate [SUBCOMMAND] [FLAGS] [ARGS]

Subcommands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Every subcommand takes -log-level (debug, info, warn, error) and
-log-format (text, json); all but hash-password and help take -config FILE
(default "gateway.yaml"). Run "calgate help SUBCOMMAND" for the complete
help of one.

Examples:
  cp gateway.yaml.example gateway.yaml
  calgate check-config
  calgate serve -config gateway.yaml
  calgate hash-password
  calgate import alice/personal calendar.ics
  calgate export alice-busy > busy.ics
  calgate sync alice/holidays
  calgate status -json
  calgate backup /var/backups/calgate.db
  calgate compact
  calgate restore /var/backups/calgate.db

Clients connect to base_url (e.g. http://127.0.0.1:8080/); discovery starts
at /.well-known/caldav. See gateway.yaml.example for every config key.
`)
	return b.String()
}

// lookupCommand returns the subcommand called name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the subcommand named in args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && isHelpFlag(args[0]) {
		io.WriteString(stdout, usageText())
		return 0
	}
	switch cmd {
	case "serve":
		return cmdServe(args, stdout, stderr)
	case "check-config":
		return cmdCheckConfig(args, stdout, stderr)
	case "hash-password":
		return cmdHashPassword(args, stdin, stdout, stderr)
	case "import":
		return cmdImport(args, stdin, stdout, stderr)
	case "export":
		return cmdExport(args, stdout, stderr)
	case "sync":
		return cmdSync(args, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "backup":
		return cmdBackup(args, stdout, stderr)
	case "compact":
		return cmdCompact(args, stdout, stderr)
	case "restore":
		return cmdRestore(args, stdout, stderr)
	case "help":
		return cmdHelp(args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "calgate: unknown subcommand %q\n\n%s", cmd, usageText())
		return 2
	}
}

// cmdHelp prints the overview, or the complete help of one subcommand.
func cmdHelp(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		io.WriteString(stdout, usageText())
		return 0
	case len(args) > 1:
		fmt.Fprintln(stderr, "calgate help: name one subcommand, e.g. calgate help backup")
		return 2
	}
	c, ok := lookupCommand(args[0])
	if !ok {
		fmt.Fprintf(stderr, "calgate help: unknown subcommand %q\n\n%s", args[0], usageText())
		return 2
	}
	io.WriteString(stdout, c.help)
	return 0
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

// cliFlags are the parsed flags and arguments of a subcommand.
type cliFlags struct {
	config    string
	logLevel  string
	logFormat string
	json      bool   // status -json
	output    string // export -o
	level     slog.Level
	args      []string // positional arguments
}

// logger is the subcommand's logger on stderr, as its flags ask.
func (f *cliFlags) logger(stderr io.Writer) *slog.Logger {
	return newLogger(stderr, f.logFormat, f.level)
}

// flagSet returns the flag set of subcommand c, filling f. It prints c's
// complete help on -h (to stdout: the user asked for it) and a pointer
// to it after a bad flag.
func flagSet(c command, f *cliFlags, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("calgate "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed below, help by Usage
	fs.Usage = func() { io.WriteString(stdout, c.help) }
	if c.config {
		fs.StringVar(&f.config, "config", "gateway.yaml", "config file")
	}
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", logFormatText, "text or json")
	if c.json {
		fs.BoolVar(&f.json, "json", false, "print JSON")
	}
	if c.output {
		fs.StringVar(&f.output, "o", "", "output file")
	}
	return fs
}

// parseFlags parses the flags and arguments of subcommand name; flags may
// come before or after the arguments ("--" ends the flags). -h prints the
// subcommand's help to stdout. It returns the exit code to use and false
// if the command must not go on.
func parseFlags(name string, args []string, stdout, stderr io.Writer) (cliFlags, int, bool) {
	var f cliFlags
	c, ok := lookupCommand(name)
	if !ok {
		fmt.Fprintf(stderr, "calgate: unknown subcommand %q\n", name)
		return f, 2, false
	}
	fs := flagSet(c, &f, stdout, stderr)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return f, 0, false
			}
			fmt.Fprintf(stderr, "calgate %s: %v (see calgate help %s)\n", name, err, name)
			return f, 2, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			f.args = append(f.args, rest...)
			break
		}
		f.args, args = append(f.args, rest[0]), rest[1:]
	}
	switch {
	case len(f.args) < c.minArgs || (c.maxArgs >= 0 && len(f.args) > c.maxArgs):
		synopsis, _, _ := strings.Cut(c.help, "\n")
		if len(f.args) > c.maxArgs && c.maxArgs >= 0 {
			fmt.Fprintf(stderr, "calgate %s: unexpected argument %q\n%s\n", name, f.args[c.maxArgs], synopsis)
		} else {
			fmt.Fprintf(stderr, "calgate %s: missing arguments\n%s\n", name, synopsis)
		}
		return f, 2, false
	}
	level, err := parseLevel(f.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "calgate %s: %v\n", name, err)
		return f, 2, false
	}
	f.level = level
	if f.logFormat, err = parseFormat(f.logFormat); err != nil {
		fmt.Fprintf(stderr, "calgate %s: %v\n", name, err)
		return f, 2, false
	}
	return f, 0, true
}

// loadValidConfig loads and validates the config file, printing every
// problem to stderr. It returns nil if the config cannot be used.
func loadValidConfig(path string, stderr io.Writer) *Config {
	cfg, err := LoadConfig(path)
	if err != nil {
		printErrors(stderr, err)
		return nil
	}
	if err := cfg.Validate(); err != nil {
		printErrors(stderr, fmt.Errorf("%s: invalid config:\n%w", path, err))
		return nil
	}
	return cfg
}

// printErrors prints err, indenting every line after the first.
func printErrors(w io.Writer, err error) {
	lines := strings.Split(err.Error(), "\n")
	fmt.Fprintf(w, "calgate: %s\n", lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	f, code, ok := parseFlags("check-config", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(f.config, stderr)
	if cfg == nil {
		return 1
	}
	fmt.Fprintf(stdout, "config OK: %d users, %d calendars\n", len(cfg.Users), cfg.CountCalendars())
	return 0
}

func cmdServe(args []string, stdout, stderr io.Writer) int {
	f, code, ok := parseFlags("serve", args, stdout, stderr)
	if !ok {
		return code
	}
	log := f.logger(stderr)
	cfg := loadValidConfig(f.config, stderr)
	if cfg == nil {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("calgate failed", "err", err)
		return 1
	}
	return 0
}

// serve runs the gateway described by cfg (validated) until ctx is done,
// then shuts down: stop accepting, let requests finish within the grace
// period, close the store last.
func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	var tlsConfig *tls.Config
	if cfg.TLS != nil {
		certs, err := newCertReloader(cfg.TLS.Cert, cfg.TLS.Key, log.With("component", "tls"))
		if err != nil {
			return err
		}
		tlsConfig = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	trusted, err := cfg.trustedProxies()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another process using the port? change `listen` in the config)", cfg.Listen, err)
	}
	defer ln.Close() // Serve closes it too; this covers the early returns below

	store, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close data file", "path", cfg.Data, "err", err)
		}
	}()

	if err := ensureCalendars(store, cfg, log); err != nil {
		return err
	}
	// While calgate runs, the CLI's backup, status and export reach the
	// store through the admin socket.
	adminLog := log.With("component", "admin")
	admin := startAdmin(cfg, adminHandler(cfg, store, new(ical.Zones), adminLog), adminLog)
	defer admin.stop() // before the store closes

	users := make([]gateway.User, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		users = append(users, gateway.User{Name: u.Name, PasswordHash: u.PasswordHash})
	}
	// Metrics (nil if disabled) observe the engine, the feeds and every
	// request.
	m, metricsToken, err := newServeMetrics(cfg.Metrics, store, log.With("component", "metrics"))
	if err != nil {
		return err
	}
	// One HTTP client for every upstream; one engine runs the sources.
	engine := upstream.NewEngine(upstream.EngineOptions{Store: store, Logger: log.With("component", "upstream"),
		OnSync: syncObserver(m)})
	zones := new(ical.Zones)
	client := upstream.NewHTTPClient(upstream.HTTPOptions{})
	if err := addSources(engine, cfg, store, client, zones, log.With("component", "upstream")); err != nil {
		return err
	}
	// Accounts discover their calendars and add their sources to the engine.
	accounts, err := newAccounts(engine, cfg, store, client, zones, log.With("component", "upstream"))
	if err != nil {
		return err
	}
	feeds, err := gatewayFeeds(cfg)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	baseURL := cfg.BaseURL
	if cfg.baseURLDerived {
		scheme := "http"
		if tlsConfig != nil {
			scheme = "https"
		}
		baseURL = scheme + "://" + addr
	}

	h, err := gateway.New(gateway.Options{
		BaseURL:         baseURL,
		TrustedProxies:  trusted,
		Feeds:           feeds,
		Store:           store,
		Users:           users,
		Logger:          log.With("component", "gateway"),
		MaxResourceSize: cfg.MaxResourceSize,
		OnChange:        engine.Kick,
		OnFeed:          feedObserver(m),
	})
	if err != nil {
		return fmt.Errorf("set up gateway: %w", err)
	}

	srv := &http.Server{
		Handler:           rootHandler(h, m, metricsToken, readiness(store, engine)),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("calgate listening", "addr", addr, "base_url", baseURL, "tls", tlsConfig != nil,
		"data", cfg.Data, "users", len(cfg.Users), "sources", len(engine.Sources()))
	engine.Start(ctx)
	defer engine.Stop() // after the server has stopped, before the store closes
	for _, acc := range accounts {
		acc.Start(ctx)
		defer acc.Stop() // before engine.Stop: an account adds sources to the engine
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", shutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("grace period over, closing remaining connections", "err", err)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("serve", "err", err)
	}
	log.Info("calgate stopped")
	return nil
}

// openStore opens the data file, with errors that say what to do.
func openStore(cfg *Config, log *slog.Logger) (*cache.Store, error) {
	store, err := cache.Open(cfg.Data, cache.Options{Logger: log.With("component", "cache")})
	if err != nil {
		if errors.Is(err, cache.ErrLocked) {
			return nil, fmt.Errorf("data file %s is in use by another process (stop the other calgate, or change `data` in the config): %w", cfg.Data, err)
		}
		return nil, fmt.Errorf("open data file %s: %w (check that its directory exists and is writable, or change `data` in the config)", cfg.Data, err)
	}
	return store, nil
}

// ensureCalendars creates each configured calendar that the store does
// not hold yet, with the kind its config gives (local, caldav, ics).
// Existing calendars keep their properties (after the first start,
// clients own them through PROPPATCH), but follow a change of kind.
func ensureCalendars(store *cache.Store, cfg *Config, log *slog.Logger) error {
	for _, u := range cfg.Users {
		for _, c := range u.Calendars {
			kind, source := calendarKind(c), ""
			if kind == calendarKindCalDAV || kind == calendarKindICS {
				source = sourceID(u.Name, c.ID)
			}
			var members []string
			writeTo := ""
			if c.Merge != nil {
				members, writeTo = c.Merge.Calendars, c.Merge.WriteTo
			}
			cur, err := store.GetCalendar(u.Name, c.ID)
			if err == nil {
				if cur.Kind != kind || cur.Source != source || !slices.Equal(cur.Members, members) || cur.WriteTo != writeTo {
					if _, err := store.UpdateCalendar(u.Name, c.ID, func(cal *cache.Calendar) error {
						cal.Kind, cal.Source, cal.Members, cal.WriteTo = kind, source, members, writeTo
						return nil
					}); err != nil {
						return fmt.Errorf("update calendar %s/%s: %w", u.Name, c.ID, err)
					}
					log.Info("calendar definition changed in the config", "user", u.Name, "calendar", c.ID, "kind", kind)
				}
				continue
			}
			if !errors.Is(err, cache.ErrNotFound) {
				return fmt.Errorf("read calendar %s/%s: %w", u.Name, c.ID, err)
			}
			_, err = store.CreateCalendar(cache.Calendar{
				User:        u.Name,
				ID:          c.ID,
				DisplayName: c.Name,
				Description: c.Description,
				Color:       c.Color,
				Components:  append([]string(nil), c.Components...),
				Kind:        kind,
				Source:      source,
				Members:     members,
				WriteTo:     writeTo,
			})
			if err != nil && !errors.Is(err, cache.ErrExists) {
				return fmt.Errorf("create calendar %s/%s: %w", u.Name, c.ID, err)
			}
			log.Info("created calendar", "user", u.Name, "calendar", c.ID)
		}
	}
	return nil
}

func cmdHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if _, code, ok := parseFlags("hash-password", args, stdout, stderr); !ok {
		if code == 2 {
			fmt.Fprintln(stderr, "calgate hash-password: the password is read from standard input")
		}
		return code
	}
	var pw []byte
	var err error
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pw, err = promptPassword(int(f.Fd()), stderr)
	} else {
		pw, err = readPassword(stdin)
	}
	if err != nil {
		fmt.Fprintf(stderr, "calgate hash-password: %v\n", err)
		return 1
	}
	hash, err := hashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "calgate hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, hash)
	return 0
}

// promptPassword asks for the password twice on the terminal fd, without
// echo, and returns it if both entries match.
func promptPassword(fd int, prompts io.Writer) ([]byte, error) {
	fmt.Fprint(prompts, "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(prompts)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(prompts, "Repeat password: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompts)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if string(pw) != string(again) {
		return nil, errors.New("the passwords do not match")
	}
	return pw, nil
}

// readPassword returns the first line of r, without its line ending.
func readPassword(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read password: %w", err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

// hashPassword returns the bcrypt hash of pw for the password_hash key.
func hashPassword(pw []byte) (string, error) {
	if len(pw) == 0 {
		return "", errors.New("the password is empty")
	}
	if len(pw) > 72 {
		return "", errors.New("the password is longer than 72 bytes, which bcrypt cannot hash")
	}
	h, err := bcrypt.GenerateFromPassword(pw, bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
