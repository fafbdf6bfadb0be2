package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
	"github.com/calgate/calgate/upstream"
)

// Calendar kinds (cache.Calendar.Kind) of mirrored calendars.
const (
	calendarKindCalDAV = "caldav"
	calendarKindICS    = "ics"
	calendarKindMerged = "merged"
)

// maxFeedBytes caps an upstream body (a feed or a multiget answer).
const maxFeedBytes = 64 << 20

// sourceID names the source of calendar user/cal in the store and logs.
func sourceID(user, cal string) string { return user + "/" + cal }

// calendarKind is the kind a configured calendar is stored with.
func calendarKind(c CalendarConfig) string {
	switch {
	case c.CalDAV != nil:
		return calendarKindCalDAV
	case c.ICS != nil:
		return calendarKindICS
	case c.Merge != nil:
		return calendarKindMerged
	}
	return calendarKindLocal
}

// addSources builds a source for every mirrored calendar of cfg and adds
// it to the engine.
func addSources(engine *upstream.Engine, cfg *Config, store *cache.Store, client *http.Client, zones *ical.Zones, log *slog.Logger) error {
	for _, u := range cfg.Users {
		for _, c := range u.Calendars {
			id := sourceID(u.Name, c.ID)
			switch {
			case c.CalDAV != nil:
				pw, err := c.CalDAV.password()
				if err != nil {
					return fmt.Errorf("source %s: %w", id, err)
				}
				src := upstream.NewCalDAV(upstream.CalDAVOptions{
					ID: id, User: u.Name, Calendar: c.ID,
					URL: c.CalDAV.URL, Username: c.CalDAV.Username, Password: pw,
					Client: client, Store: store, Zones: zones, Conflict: c.CalDAV.Conflict,
					MaxBytes: maxFeedBytes, Logger: log.With("source", id),
				})
				engine.Add(src, u.Name, c.ID, c.CalDAV.Interval)
			case c.ICS != nil:
				src := upstream.NewICS(upstream.ICSOptions{
					ID: id, User: u.Name, Calendar: c.ID, URL: c.ICS.URL,
					Client: client, Store: store, Zones: zones, MaxBytes: maxFeedBytes, Logger: log.With("source", id),
				})
				engine.Add(src, u.Name, c.ID, c.ICS.Interval)
			}
		}
	}
	return nil
}

// accountInterval is how often an account is rediscovered.
const accountInterval = time.Hour

// newAccounts builds an upstream.Account for every account of cfg; they
// add the sources of the calendars they discover to engine.
func newAccounts(engine *upstream.Engine, cfg *Config, store *cache.Store, client *http.Client, zones *ical.Zones, log *slog.Logger) ([]*upstream.Account, error) {
	var out []*upstream.Account
	for _, u := range cfg.Users {
		for _, acc := range u.Accounts {
			id := sourceID(u.Name, acc.ID)
			pw, err := acc.CalDAV.password()
			if err != nil {
				return nil, fmt.Errorf("account %s: %w", id, err)
			}
			out = append(out, upstream.NewAccount(upstream.AccountOptions{
				ID: acc.ID, User: u.Name,
				URL: acc.CalDAV.URL, Username: acc.CalDAV.Username, Password: pw,
				Client: client, Store: store, Zones: zones, Engine: engine,
				Conflict: acc.CalDAV.Conflict, Interval: accountInterval, SyncInterval: acc.CalDAV.Interval,
				MaxBytes: maxFeedBytes, Logger: log,
			}))
		}
	}
	return out, nil
}

// cmdSync runs one sync of every source (or of the named ones) now, with
// a line of progress per source, against the data file of a calgate that
// is not running.
func cmdSync(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("sync", args, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	log := newLogger(stderr, fl.level)
	store, err := openStore(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "calgate sync:", err)
		return 1
	}
	defer store.Close()
	if err := ensureCalendars(store, cfg, log); err != nil {
		fmt.Fprintln(stderr, "calgate sync:", err)
		return 1
	}
	engine := upstream.NewEngine(upstream.EngineOptions{Store: store, Logger: log})
	client, zones := upstream.NewHTTPClient(upstream.HTTPOptions{}), new(ical.Zones)
	if err := addSources(engine, cfg, store, client, zones, log); err != nil {
		fmt.Fprintln(stderr, "calgate sync:", err)
		return 1
	}
	accounts, err := newAccounts(engine, cfg, store, client, zones, log)
	if err != nil {
		fmt.Fprintln(stderr, "calgate sync:", err)
		return 1
	}
	failed := 0
	// Discovery first, so that the calendars an account has (and had)
	// are synced below too.
	for i, acc := range accounts {
		fmt.Fprintf(stdout, "[account %d/%d] %s: discovering...", i+1, len(accounts), acc.ID())
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := acc.Reconcile(ctx)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(stdout, " failed after %s: %v\n", time.Since(start).Round(time.Millisecond), err)
			continue
		}
		fmt.Fprintf(stdout, " done (%s)\n", time.Since(start).Round(time.Millisecond))
	}
	ids := engine.Sources()
	slices.Sort(ids)
	if want := fl.args; len(want) > 0 {
		for _, id := range want {
			if !slices.Contains(ids, id) {
				fmt.Fprintf(stderr, "calgate sync: no source %q (sources: %s)\n", id, strings.Join(ids, ", "))
				return 1
			}
		}
		ids = want
	}
	if len(ids) == 0 {
		if failed > 0 {
			return 1
		}
		fmt.Fprintln(stdout, "no sources configured (add caldav or ics to a calendar, or an account, in the config)")
		return 0
	}
	for i, id := range ids {
		fmt.Fprintf(stdout, "[%d/%d] %s: syncing...", i+1, len(ids), id)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		res, err := engine.SyncNow(ctx, id)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(stdout, " failed after %s: %v\n", time.Since(start).Round(time.Millisecond), err)
			continue
		}
		if res.NotModified {
			fmt.Fprintf(stdout, " not modified (%s)\n", time.Since(start).Round(time.Millisecond))
			continue
		}
		fmt.Fprintf(stdout, " %d stored, %d deleted, %d unchanged, %d quarantined, %d deletions held (%s)\n",
			res.Put, res.Deleted, res.Unchanged, res.Quarantined, res.HeldDeletes, time.Since(start).Round(time.Millisecond))
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// cmdStatus prints every source's health from the data file.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("status", args, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	store, err := openStore(cfg, newLogger(stderr, fl.level))
	if err != nil {
		fmt.Fprintln(stderr, "calgate status:", err)
		return 1
	}
	defer store.Close()
	return printStatus(store, cfg, time.Now(), stdout, stderr)
}

// printStatus prints a row per mirrored calendar of every user (the
// configured ones, then the others of Kind caldav or ics in the store:
// those an account discovered) and a row per account (its discoveries).
func printStatus(store *cache.Store, cfg *Config, now time.Time, stdout, stderr io.Writer) int {
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tKIND\tLAST SUCCESS\tFAILURES\tOUTBOX\tCONFLICTS\tLAST ERROR")
	fail := func(err error) int {
		fmt.Fprintln(stderr, "calgate status:", err)
		return 1
	}
	for _, u := range cfg.Users {
		conflicts, err := store.ListConflicts(u.Name)
		if err != nil {
			return fail(err)
		}
		type row struct{ cal, kind, source string }
		var rows []row
		listed := map[string]bool{}
		for _, c := range u.Calendars {
			if kind := calendarKind(c); kind != calendarKindLocal {
				rows = append(rows, row{c.ID, kind, sourceID(u.Name, c.ID)})
				listed[c.ID] = true
			}
		}
		stored, err := store.ListCalendars(u.Name) // sorted by id
		if err != nil {
			return fail(err)
		}
		for _, c := range stored {
			if listed[c.ID] || (c.Kind != calendarKindCalDAV && c.Kind != calendarKindICS) {
				continue
			}
			src := c.Source
			if src == "" {
				src = sourceID(u.Name, c.ID)
			}
			rows = append(rows, row{c.ID, c.Kind, src})
		}
		for _, r := range rows {
			st, err := store.GetSource(r.source)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				return fail(err)
			}
			pending, err := store.PendingOutbox(u.Name, r.cal)
			if err != nil {
				return fail(err)
			}
			n := 0
			for _, cf := range conflicts {
				if cf.Cal == r.cal {
					n++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.source, r.kind, lastSuccess(st, now), st.Failures, len(pending), n, lastError(st))
		}
		for _, acc := range u.Accounts {
			id := sourceID(u.Name, acc.ID)
			st, err := store.GetSource(id)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				return fail(err)
			}
			// An account's notes (calendars missing upstream, kept, or
			// not mirrored) are its Quarantine.
			msg := lastError(st)
			if len(st.Quarantine) > 0 {
				notes := strings.Join(st.Quarantine, "; ")
				if msg == "-" {
					msg = notes
				} else {
					msg += "; " + notes
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t-\t-\t%s\n", id, "account", lastSuccess(st, now), st.Failures, msg)
		}
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

// lastSuccess says how long ago st last succeeded.
func lastSuccess(st cache.SourceState, now time.Time) string {
	if st.LastSuccess.IsZero() {
		return "never"
	}
	return now.Sub(st.LastSuccess).Round(time.Second).String() + " ago"
}

// lastError is st's last error, or "-", with control characters
// replaced so that text from an upstream cannot drive the terminal.
func lastError(st cache.SourceState) string {
	if st.LastError == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, st.LastError)
}
