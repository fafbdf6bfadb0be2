// Command calgate-bench is the load tool of calgate: it measures any
// CalDAV server (RFC 4791, with sync-collection of RFC 6578) through its
// calendar home URL and checks every answer it gets.
//
// It creates a fresh calendar with MKCALENDAR (or takes the empty calendar
// named by -calendar), PUTs N generated events (deterministic from -seed)
// with concurrency c, then measures GET, PROPFIND Depth 0 and 1, a
// one-month calendar-query, a one-week expanded calendar-query, a
// multiget of 100, sync-collection after one change, GET of the whole
// collection, a conditional replace and a mixed read load, and with -feed
// the merged .ics feed over the calendar: unconditional GET, 304, and the
// first GET after a change. Each operation runs a short untimed warm-up,
// then -rounds rounds; the table gives the median round of each figure.
// Item counts are checked against what the tool computes from its own
// events; any wrong answer makes it exit with status 1 and name the failed
// check. The calendar is deleted at the end unless -keep is given.
//
//	calgate-bench -home http://127.0.0.1:8080/dav/calendars/demo/ -user demo -password demo -n 1000
//	calgate-bench -url http://127.0.0.1:8080/ -user demo -password demo -calendar bench -feed 'http://127.0.0.1:8080/feeds/bench.ics?token=...'
//
// Subcommands measure the limits calgate is compared with (limits), time a
// server's start-up to ready (startup), and print the comparison of
// several runs (report); bench/run.sh runs them all.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

const usage = `Usage:
  calgate-bench [run] -home URL | -url URL  [flags]   load a calendar and measure a CalDAV server
  calgate-bench limits [flags]       measure a trivial server of the same bytes, and bbolt commits
  calgate-bench startup [flags] -- COMMAND [ARGS...]   time a server from exec to its /readyz 200
  calgate-bench report [flags]       compare the JSON of calgate, Radicale and the limits
  calgate-bench free-port            print a free TCP port of 127.0.0.1 (for scripts)

Run "calgate-bench SUBCOMMAND -h" for the flags of each.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(mainCmd(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// mainCmd runs the subcommand named by args[0] (run when it is a flag or
// missing) and returns the exit status.
func mainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "run":
			return runCmd(ctx, args[1:], stdout, stderr)
		case "limits":
			return limitsCmd(ctx, args[1:], stdout, stderr)
		case "startup":
			return startupCmd(ctx, args[1:], stdout, stderr)
		case "report":
			return reportCmd(args[1:], stdout, stderr)
		case "free-port":
			return freePortCmd(stdout, stderr)
		case serveBytesCmdName:
			return serveBytesCmd(ctx, args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		}
		if !strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "calgate-bench: unknown subcommand %q\n%s", args[0], usage)
			return 2
		}
	}
	return runCmd(ctx, args, stdout, stderr)
}

// freePortCmd prints a TCP port of 127.0.0.1 that was free a moment ago.
func freePortCmd(stdout, stderr io.Writer) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, "calgate-bench free-port:", err)
		return 1
	}
	defer l.Close()
	fmt.Fprintln(stdout, l.Addr().(*net.TCPAddr).Port)
	return 0
}

// Environment variables that may carry secrets instead of flags, which
// other users of the machine can read in the process list.
const (
	envPassword = "CALGATE_BENCH_PASSWORD"
	envFeed     = "CALGATE_BENCH_FEED"
)

// runCmd is the load run against one server.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	var jsonFile, ops string
	fs := flag.NewFlagSet("calgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Home, "home", "", "calendar home collection URL, e.g. http://127.0.0.1:8080/dav/calendars/alice/")
	fs.StringVar(&o.URL, "url", "", "server URL to discover the calendar home from, as a client does (instead of -home)")
	fs.StringVar(&o.Calendar, "calendar", "", "use this calendar under the home (made with MKCALENDAR if missing; must be empty) instead of a fresh one")
	fs.StringVar(&o.Feed, "feed", "", "URL of a merged .ics feed over -calendar, with its token (or set "+envFeed+"); measures feed_get, feed_304, feed_after_change")
	fs.StringVar(&o.User, "user", "", "user name for HTTP Basic")
	fs.StringVar(&o.Password, "password", "", "password for HTTP Basic (or set "+envPassword+")")
	fs.IntVar(&o.N, "n", 1000, "events to load")
	fs.IntVar(&o.C, "c", 8, "concurrency of the load, of the throughput measurements (GET, PROPFIND Depth 0, feeds) and of the mixed load")
	fs.IntVar(&o.LatencyC, "latency-c", 1, "concurrency of the latency measurements (PROPFIND Depth 1, queries, multiget, collection GET)")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "time bound of each round of a measurement (the warm-up is a fifth of it)")
	fs.IntVar(&o.Requests, "requests", 0, "count bound of each round of a measurement (0: 1,000,000)")
	fs.IntVar(&o.Rounds, "rounds", 3, "measured rounds of each operation; the table gives the median")
	fs.StringVar(&ops, "ops", "", "comma-separated operations to measure (default all): "+strings.Join(opNames, ","))
	fs.IntVar(&o.Bulk, "bulk", 0, "store the first BULK events with one PUT of the whole calendar to the collection (servers that split it by UID), the rest by PUT")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the generated events and of the mixed load")
	fs.BoolVar(&o.Keep, "keep", false, "keep the calendar after the run")
	fs.IntVar(&o.PID, "pid", 0, "server process id, to report its peak RSS (VmHWM)")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "timeout of each request")
	fs.StringVar(&jsonFile, "json", "", "also write the results as JSON to this file")
	var cpuProfile string
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write the tool's own CPU profile to this file (the checks cost CPU on the server's machine too)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "calgate-bench: -cpuprofile: %v\n", err)
			return 2
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if o.Home == "" && o.URL == "" {
		fmt.Fprintln(stderr, "calgate-bench: -home or -url is required")
		fs.Usage()
		return 2
	}
	if o.Password == "" {
		o.Password = os.Getenv(envPassword)
	}
	if o.Feed == "" {
		o.Feed = os.Getenv(envFeed)
	}
	if ops != "" {
		o.Ops = strings.Split(ops, ",")
	}
	rep, err := run(ctx, o)
	if rep != nil {
		printTable(stdout, rep)
		if jsonFile != "" {
			if err := writeJSON(jsonFile, rep); err != nil {
				fmt.Fprintf(stderr, "calgate-bench: %v\n", err)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "calgate-bench: FAILED: %v\n", err)
		return 1
	}
	return 0
}

// writeJSON writes v as indented JSON to file.
func writeJSON(file string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = os.WriteFile(file, append(data, '\n'), 0o644)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// readJSON reads a report written by writeJSON.
func readJSON(file string) (*report, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &r, nil
}

// printTable writes the report as an aligned table.
func printTable(w io.Writer, rep *report) {
	if rep.Calendar != "" {
		fmt.Fprintf(w, "calendar %s, N=%d, c=%d (latency figures: %d client), %d round(s) of %gs, load: %s\n", rep.Calendar, rep.N, rep.C, rep.LatencyC, rep.Rounds, rep.DurationS, rep.Load)
	}
	if rep.Feed != "" {
		fmt.Fprintf(w, "feed %s\n", rep.Feed)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "operation\tops/s\tp50 ms\tp99 ms\trequests\titems\tok\t\n")
	for _, r := range rep.Ops {
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t%d\t%d\t%v\t\n", r.Name, r.OpsPerSec, r.P50ms, r.P99ms, r.Requests, r.Items, r.OK)
	}
	tw.Flush()
	for _, r := range rep.Ops {
		if len(r.Mix) == 0 {
			continue
		}
		var parts []string
		for k, v := range r.Mix {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "%s requests: %s\n", r.Name, strings.Join(parts, ", "))
	}
	for _, r := range rep.Ops {
		if len(r.Tenths) > 0 {
			parts := make([]string, len(r.Tenths))
			for i, v := range r.Tenths {
				parts[i] = strconv.FormatFloat(v, 'f', 0, 64)
			}
			fmt.Fprintf(w, "%s by tenths, objects/s: %s\n", r.Name, strings.Join(parts, " "))
		}
	}
	if rep.PeakRSSKB > 0 {
		fmt.Fprintf(w, "server peak RSS: %.1f MB\n", float64(rep.PeakRSSKB)/1024)
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "FAILED %s\n", f)
	}
}
