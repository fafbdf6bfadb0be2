package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

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

// cmdExport writes a calendar (USER/CALENDAR) or a feed (its name) to
// standard output as the .ics a subscriber gets.
func cmdExport(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("export", args, stderr)
	if !ok {
		return code
	}
	if len(fl.args) != 1 {
		fmt.Fprintln(stderr, "calgate export: name one calendar (USER/CALENDAR) or one feed")
		return 2
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	target := fl.args[0]
	var spec feed.Spec
	calendar := false
	if i := slices.IndexFunc(cfg.Feeds, func(f FeedConfig) bool { return f.Name == target }); i >= 0 {
		spec = feedSpec(cfg.Feeds[i])
	} else if user, cal, ok := strings.Cut(target, "/"); ok {
		spec, calendar = gateway.CalendarSpec(user, cal), true
	} else {
		fmt.Fprintf(stderr, "calgate export: %q is neither a feed of the config nor USER/CALENDAR\n", target)
		return 2
	}
	store, err := openStore(cfg, newLogger(stderr, fl.level))
	if err != nil {
		fmt.Fprintln(stderr, "calgate export:", err)
		return 1
	}
	defer store.Close()
	if calendar {
		c, err := store.GetCalendar(spec.Members[0].User, spec.Members[0].Cal)
		if err != nil {
			fmt.Fprintln(stderr, "calgate export:", err)
			return 1
		}
		spec.Title = gateway.CalendarTitle(&c)
	}
	body, err := feed.Render(store, new(ical.Zones), spec, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "calgate export:", err)
		return 1
	}
	if _, err := stdout.Write(body); err != nil {
		fmt.Fprintln(stderr, "calgate export:", err)
		return 1
	}
	return 0
}
