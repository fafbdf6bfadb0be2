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

// Server timeouts and the shutdown grace period.
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

const usageText = `calgate is a CalDAV gateway: a CalDAV server for calendar clients,
backed by one bbolt file and configured by one YAML file.

Usage:
  calgate [serve] [-config FILE] [-log-level LEVEL]
  calgate check-config [-config FILE]
  calgate hash-password
  calgate sync [-config FILE] [SOURCE ...]
  calgate status [-config FILE]
  calgate export [-config FILE] USER/CALENDAR|FEED
  calgate help [SUBCOMMAND]

Subcommands:
  serve          Serve CalDAV (the default when no subcommand is given).
                 Stops gracefully on SIGINT or SIGTERM.
  check-config   Load and validate the config file, print every problem
                 found or "config OK: N users, M calendars"; exit 1 on error.
  hash-password  Read a password and print its bcrypt hash for the
                 password_hash key. Reads one line from standard input when
                 it is not a terminal, else prompts twice without echo.
  sync           Sync every mirrored calendar (or the SOURCEs named, as
                 USER/CALENDAR) once now, with a line per source, then exit.
                 Pushes pending local writes first. Needs the data file,
                 so stop a running calgate first.
  export         Write a calendar (USER/CALENDAR) or a feed (its name) to
                 standard output as the .ics a subscriber would get.
  status         Print each source's health as a table: last success,
                 consecutive failures, pending writes, conflicts, last error.

Flags (serve, check-config):
  -config FILE       config file (default "gateway.yaml")
  -log-level LEVEL   debug, info, warn or error (default "info"); logs go
                     to standard error

Examples:
  cp gateway.yaml.example gateway.yaml
  calgate check-config
  calgate -config gateway.yaml               # same as: calgate serve -config gateway.yaml
  calgate serve -config /etc/calgate/gateway.yaml -log-level debug
  calgate hash-password                      # prompts
  printf '%s\n' "$PASSWORD" | calgate hash-password
  calgate sync alice/holidays                # one source, now
  calgate status
  calgate export alice-busy > busy.ics       # a feed, as subscribers get it

Clients connect to base_url (e.g. http://127.0.0.1:8080/); discovery starts
at /.well-known/caldav. See gateway.yaml.example for every config key.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the subcommand named in args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && isHelpFlag(args[0]) {
		io.WriteString(stdout, usageText)
		return 0
	}
	switch cmd {
	case "serve":
		return cmdServe(args, stderr)
	case "check-config":
		return cmdCheckConfig(args, stdout, stderr)
	case "hash-password":
		return cmdHashPassword(args, stdin, stdout, stderr)
	case "sync":
		return cmdSync(args, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "export":
		return cmdExport(args, stdout, stderr)
	case "help":
		io.WriteString(stdout, usageText)
		return 0
	default:
		fmt.Fprintf(stderr, "calgate: unknown subcommand %q\n\n%s", cmd, usageText)
		return 2
	}
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--help", "--h":
		return true
	}
	return false
}

// commonFlags are the flags of serve and check-config.
type commonFlags struct {
	config   string
	logLevel string
	level    slog.Level
	args     []string // positional arguments (only sync takes any)
}

// newFlagSet returns a flag set for subcommand name that prints the full
// usage on -h and on a bad flag.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("calgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { io.WriteString(stderr, usageText) }
	return fs
}

// parseFlags parses args into a commonFlags. It returns the exit code to use
// and false if the command must not go on.
func parseFlags(name string, args []string, stderr io.Writer) (commonFlags, int, bool) {
	var f commonFlags
	fs := newFlagSet(name, stderr)
	fs.StringVar(&f.config, "config", "gateway.yaml", "config file")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, 0, false
		}
		return f, 2, false
	}
	if fs.NArg() > 0 && name != "sync" && name != "export" {
		fmt.Fprintf(stderr, "calgate %s: unexpected argument %q\n", name, fs.Arg(0))
		return f, 2, false
	}
	f.args = fs.Args()
	level, err := parseLevel(f.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "calgate: %v\n", err)
		return f, 2, false
	}
	f.level = level
	return f, 0, true
}

// parseLevel turns a -log-level value into a slog level.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
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
	f, code, ok := parseFlags("check-config", args, stderr)
	if !ok {
		return code
	}
	if _, err := parseLevel(f.logLevel); err != nil {
		fmt.Fprintf(stderr, "calgate: %v\n", err)
		return 2
	}
	cfg := loadValidConfig(f.config, stderr)
	if cfg == nil {
		return 1
	}
	fmt.Fprintf(stdout, "config OK: %d users, %d calendars\n", len(cfg.Users), cfg.CountCalendars())
	return 0
}

func cmdServe(args []string, stderr io.Writer) int {
	f, code, ok := parseFlags("serve", args, stderr)
	if !ok {
		return code
	}
	log := newLogger(stderr, f.level)
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
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("load tls cert %s and key %s: %w (fix the tls paths or remove the tls key)", cfg.TLS.Cert, cfg.TLS.Key, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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

	users := make([]gateway.User, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		users = append(users, gateway.User{Name: u.Name, PasswordHash: u.PasswordHash})
	}
	// One HTTP client for every upstream; one engine runs the sources.
	engine := upstream.NewEngine(upstream.EngineOptions{Store: store, Logger: log.With("component", "upstream")})
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
		Feeds:           feeds,
		Store:           store,
		Users:           users,
		Logger:          log.With("component", "gateway"),
		MaxResourceSize: cfg.MaxResourceSize,
		OnChange:        engine.Kick,
	})
	if err != nil {
		return fmt.Errorf("set up gateway: %w", err)
	}

	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: readHeaderTimeout,
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

// newLogger is the text logger on stderr all subcommands use.
func newLogger(stderr io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
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
	fs := newFlagSet("hash-password", stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "calgate hash-password: unexpected argument %q (the password is read from standard input)\n", fs.Arg(0))
		return 2
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
