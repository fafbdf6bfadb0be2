package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
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
	fl, code, ok := parseFlags("sync", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	log := fl.logger(stderr)
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

// cmdStatus prints every source's health, from the data file when it is
// free and through the admin socket of the calgate holding it otherwise.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("status", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	var rows []statusRow
	err := withStore(cfg, fl.logger(stderr), func(store *cache.Store) error {
		var err error
		rows, err = statusRows(store, cfg, time.Now())
		return err
	}, func(c *adminClient) error {
		return c.getJSON("/status", &rows)
	})
	if err != nil {
		fmt.Fprintln(stderr, "calgate status:", err)
		return 1
	}
	if fl.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintln(stderr, "calgate status:", err)
			return 1
		}
		return 0
	}
	if err := printStatus(rows, time.Now(), stdout); err != nil {
		fmt.Fprintln(stderr, "calgate status:", err)
		return 1
	}
	return 0
}

// statusRow is the health of one source: a row of calgate status, an
// element of status -json and of the admin socket's GET /status. The JSON
// keys are a stable interface for scripts.
type statusRow struct {
	// Source is the source id, USER/CALENDAR (or USER/ACCOUNT).
	Source string `json:"source"`
	User   string `json:"user"`
	// Calendar is the mirrored calendar's id, "" for an account.
	Calendar string `json:"calendar"`
	// Kind is caldav, ics or account.
	Kind        string     `json:"kind"`
	LastSuccess *time.Time `json:"last_success"`
	LastAttempt *time.Time `json:"last_attempt"`
	// Failures counts the consecutive failed syncs.
	Failures int `json:"failures"`
	// Outbox counts the local writes waiting for the upstream.
	Outbox int `json:"outbox"`
	// Conflicts counts the stored conflicts of the calendar.
	Conflicts int `json:"conflicts"`
	// NextSync is when the next sync is due: the source's interval (or
	// its backoff after failures) after its last attempt; nil before the
	// first sync.
	NextSync  *time.Time `json:"next_sync"`
	LastError string     `json:"last_error"`
	// Notes are the items a sync could not store, or an account's notes
	// (calendars missing upstream, kept, or not mirrored).
	Notes []string `json:"notes"`
}

// statusRows returns a row per mirrored calendar of every user (the
// configured ones, then the others of Kind caldav or ics in the store:
// those an account discovered) and a row per account (its discoveries).
func statusRows(store *cache.Store, cfg *Config, now time.Time) ([]statusRow, error) {
	rows := []statusRow{}
	for _, u := range cfg.Users {
		conflicts, err := store.ListConflicts(u.Name)
		if err != nil {
			return nil, err
		}
		type cal struct {
			id, kind, source string
			interval         time.Duration
		}
		var cals []cal
		listed := map[string]bool{}
		for _, c := range u.Calendars {
			switch kind := calendarKind(c); kind {
			case calendarKindCalDAV:
				cals = append(cals, cal{c.ID, kind, sourceID(u.Name, c.ID), c.CalDAV.Interval})
			case calendarKindICS:
				cals = append(cals, cal{c.ID, kind, sourceID(u.Name, c.ID), c.ICS.Interval})
			default:
				continue
			}
			listed[c.ID] = true
		}
		stored, err := store.ListCalendars(u.Name) // sorted by id
		if err != nil {
			return nil, err
		}
		for _, c := range stored {
			if listed[c.ID] || (c.Kind != calendarKindCalDAV && c.Kind != calendarKindICS) {
				continue
			}
			src := c.Source
			if src == "" {
				src = sourceID(u.Name, c.ID)
			}
			interval := defaultCalDAVInterval
			for _, acc := range u.Accounts {
				if strings.HasPrefix(c.ID, acc.ID+"-") {
					interval = acc.CalDAV.Interval
				}
			}
			cals = append(cals, cal{c.ID, c.Kind, src, interval})
		}
		for _, c := range cals {
			st, err := store.GetSource(c.source)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				return nil, err
			}
			pending, err := store.PendingOutbox(u.Name, c.id)
			if err != nil {
				return nil, err
			}
			r := newStatusRow(st, c.source, u.Name, c.id, c.kind, c.interval)
			r.Outbox = len(pending)
			for _, cf := range conflicts {
				if cf.Cal == c.id {
					r.Conflicts++
				}
			}
			rows = append(rows, r)
		}
		for _, acc := range u.Accounts {
			id := sourceID(u.Name, acc.ID)
			st, err := store.GetSource(id)
			if err != nil && !errors.Is(err, cache.ErrNotFound) {
				return nil, err
			}
			rows = append(rows, newStatusRow(st, id, u.Name, "", "account", accountInterval))
		}
	}
	return rows, nil
}

// newStatusRow fills a row from a source's stored state.
func newStatusRow(st cache.SourceState, id, user, cal, kind string, interval time.Duration) statusRow {
	r := statusRow{Source: id, User: user, Calendar: cal, Kind: kind, Failures: st.Failures,
		LastError: st.LastError, Notes: append([]string{}, st.Quarantine...)}
	if !st.LastSuccess.IsZero() {
		t := st.LastSuccess.UTC()
		r.LastSuccess = &t
	}
	if !st.LastAttempt.IsZero() {
		t := st.LastAttempt.UTC()
		r.LastAttempt = &t
	}
	switch last := st.LastAttempt; {
	case !st.NextDue.IsZero():
		t := st.NextDue.UTC()
		r.NextSync = &t
	case !last.IsZero() || !st.LastSuccess.IsZero():
		if st.LastSuccess.After(last) {
			last = st.LastSuccess
		}
		wait := interval
		if st.Failures > 0 { // the engine's backoff: 30s doubling, at most 30m
			wait = 30 * time.Second
			for i := 1; i < st.Failures && wait < 30*time.Minute; i++ {
				wait *= 2
			}
			wait = min(wait, 30*time.Minute)
		}
		t := last.Add(wait).UTC()
		r.NextSync = &t
	}
	return r
}

// printStatus prints rows as a table.
func printStatus(rows []statusRow, now time.Time, stdout io.Writer) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(stdout, "no sources: every calendar is local (add caldav, ics or accounts to the config to mirror upstreams)")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tKIND\tLAST SUCCESS\tFAILURES\tOUTBOX\tCONFLICTS\tNEXT SYNC\tLAST ERROR")
	for _, r := range rows {
		outbox, conflicts := strconv.Itoa(r.Outbox), strconv.Itoa(r.Conflicts)
		if r.Kind == "account" {
			outbox, conflicts = "-", "-"
		}
		msg := printable(r.LastError)
		if r.Kind == "account" && len(r.Notes) > 0 {
			notes := printable(strings.Join(r.Notes, "; "))
			if msg == "" {
				msg = notes
			} else {
				msg += "; " + notes
			}
		}
		if msg == "" {
			msg = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", printable(r.Source), r.Kind, lastSuccess(r.LastSuccess, now),
			r.Failures, outbox, conflicts, nextSync(r.NextSync, now), msg)
	}
	return tw.Flush()
}

// lastSuccess says how long ago t was.
func lastSuccess(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	return now.Sub(*t).Round(time.Second).String() + " ago"
}

// nextSync says when t is.
func nextSync(t *time.Time, now time.Time) string {
	switch {
	case t == nil:
		return "-"
	case !t.After(now):
		return "due"
	}
	return "in " + t.Sub(now).Round(time.Second).String()
}

// printable is s with control characters replaced, so that text from
// an upstream cannot drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}
