package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
	"github.com/calgate/calgate/gateway"
	"github.com/calgate/calgate/ical"
)

// feedSpec is the feed package's description of feed f.
func feedSpec(f FeedConfig) feed.Spec {
	spec := feed.Spec{
		Name: f.Name, Title: f.Title, Busy: f.Privacy == "busy", BusySummary: f.BusySummary,
		Past: f.Window.Past, Future: f.Window.Future, Refresh: f.Refresh,
	}
	for _, m := range f.Calendars {
		user, cal, _ := strings.Cut(m, "/")
		spec.Members = append(spec.Members, feed.Member{User: user, Cal: cal, Prefix: f.Prefix[m]})
	}
	return spec
}

// gatewayFeeds turns the configured feeds into the gateway's, tokens
// read from their environment variables or files.
func gatewayFeeds(cfg *Config) ([]gateway.Feed, error) {
	var out []gateway.Feed
	for _, f := range cfg.Feeds {
		tokens, err := f.tokens()
		if err != nil {
			return nil, fmt.Errorf("feed %s: %w", f.Name, err)
		}
		out = append(out, gateway.Feed{Spec: feedSpec(f), Tokens: tokens})
	}
	return out, nil
}

// targetError is an export target that is neither a feed of the config
// nor USER/CALENDAR.
type targetError struct{ target string }

func (e *targetError) Error() string {
	return fmt.Sprintf("%q is neither a feed of the config nor USER/CALENDAR", e.target)
}

// checkTarget returns a *targetError if target is neither a feed of cfg
// nor USER/CALENDAR.
func checkTarget(cfg *Config, target string) error {
	if slices.ContainsFunc(cfg.Feeds, func(f FeedConfig) bool { return f.Name == target }) {
		return nil
	}
	if user, cal, ok := strings.Cut(target, "/"); ok && user != "" && cal != "" && !strings.Contains(cal, "/") {
		return nil
	}
	return &targetError{target}
}

// renderExport renders target, a feed's name or USER/CALENDAR, as the
// .ics a subscriber gets. It returns a *targetError for a malformed
// target and an error wrapping cache.ErrNotFound for a missing calendar.
func renderExport(store *cache.Store, zones *ical.Zones, cfg *Config, target string, now time.Time) ([]byte, error) {
	if err := checkTarget(cfg, target); err != nil {
		return nil, err
	}
	var spec feed.Spec
	if i := slices.IndexFunc(cfg.Feeds, func(f FeedConfig) bool { return f.Name == target }); i >= 0 {
		spec = feedSpec(cfg.Feeds[i])
	} else {
		user, cal, _ := strings.Cut(target, "/")
		spec = gateway.CalendarSpec(user, cal)
		c, err := store.GetCalendar(user, cal)
		if errors.Is(err, cache.ErrNotFound) {
			return nil, fmt.Errorf("no calendar %s/%s: %w", user, cal, err)
		}
		if err != nil {
			return nil, err
		}
		spec.Title = gateway.CalendarTitle(&c)
	}
	return feed.Render(store, zones, spec, now)
}

// cmdExport writes a calendar (USER/CALENDAR) or a feed (its name) as the
// .ics a subscriber gets, to standard output or to the -o file, from the
// data file when it is free and through the admin socket of the calgate
// holding it otherwise.
func cmdExport(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("export", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	target := fl.args[0]
	if err := checkTarget(cfg, target); err != nil {
		fmt.Fprintln(stderr, "calgate export:", err)
		return 2
	}
	write := func(w io.Writer) error {
		return withStore(cfg, fl.logger(stderr), func(store *cache.Store) error {
			body, err := renderExport(store, new(ical.Zones), cfg, target, time.Now())
			if err != nil {
				return err
			}
			_, err = w.Write(body)
			return err
		}, func(c *adminClient) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			resp, err := c.get(ctx, "/export?target="+url.QueryEscape(target))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			n, err := io.Copy(w, resp.Body)
			if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
				err = fmt.Errorf("the running calgate sent %d of %d bytes", n, resp.ContentLength)
			}
			return err
		})
	}
	var err error
	if fl.output == "" || fl.output == "-" {
		err = write(stdout)
	} else {
		err = writeFileAtomic(fl.output, 0o644, write)
	}
	if err != nil {
		fmt.Fprintln(stderr, "calgate export:", err)
		return 1
	}
	return 0
}
