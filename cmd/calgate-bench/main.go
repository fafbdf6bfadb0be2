// Command calgate-bench is the load tool of calgate: it measures any
// CalDAV server (RFC 4791, with sync-collection of RFC 6578) through its
// calendar home URL and checks every answer it gets.
//
// It creates a fresh calendar with MKCALENDAR, PUTs N generated events
// (deterministic from -seed) with concurrency c, then measures GET,
// PROPFIND Depth 0 and 1, a one-month calendar-query, a one-week expanded
// calendar-query, a multiget of 100, sync-collection after one change, GET
// of the whole collection and a conditional replace. Item counts are
// checked against what the tool computes from its own events; any wrong
// answer makes it exit with status 1 and name the failed check. The
// calendar is deleted at the end unless -keep is given.
//
//	calgate-bench -home http://127.0.0.1:8080/dav/calendars/demo/ -user demo -password demo -n 1000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	var o options
	var jsonFile string
	fs := flag.NewFlagSet("calgate-bench", flag.ExitOnError)
	fs.StringVar(&o.Home, "home", "", "calendar home collection URL, e.g. http://127.0.0.1:8080/dav/calendars/alice/ (required)")
	fs.StringVar(&o.User, "user", "", "user name for HTTP Basic")
	fs.StringVar(&o.Password, "password", "", "password for HTTP Basic (or set CALGATE_BENCH_PASSWORD)")
	fs.IntVar(&o.N, "n", 1000, "events to load")
	fs.IntVar(&o.C, "c", 8, "concurrency of the load and the read measurements")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "time bound of each measurement")
	fs.IntVar(&o.Requests, "requests", 0, "count bound of each measurement (0: 1,000,000)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the generated events")
	fs.BoolVar(&o.Keep, "keep", false, "keep the calendar after the run")
	fs.IntVar(&o.PID, "pid", 0, "server process id, to report its peak RSS (VmHWM)")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "timeout of each request")
	fs.StringVar(&jsonFile, "json", "", "also write the results as JSON to this file")
	fs.Parse(os.Args[1:])
	if o.Home == "" {
		fmt.Fprintln(os.Stderr, "calgate-bench: -home is required")
		fs.Usage()
		os.Exit(2)
	}
	if o.Password == "" {
		o.Password = os.Getenv("CALGATE_BENCH_PASSWORD")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		printTable(os.Stdout, rep)
		if jsonFile != "" {
			data, jerr := json.MarshalIndent(rep, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(jsonFile, append(data, '\n'), 0o644)
			}
			if jerr != nil {
				fmt.Fprintf(os.Stderr, "calgate-bench: write %s: %v\n", jsonFile, jerr)
				os.Exit(1)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "calgate-bench: FAILED: %v\n", err)
		os.Exit(1)
	}
}

// printTable writes the report as an aligned table.
func printTable(w io.Writer, rep *report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "operation\tops/s\tp50 ms\tp99 ms\trequests\titems\tok\t\n")
	for _, r := range rep.Ops {
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t%d\t%d\t%v\t\n", r.Name, r.OpsPerSec, r.P50ms, r.P99ms, r.Requests, r.Items, r.OK)
	}
	tw.Flush()
	if rep.PeakRSSKB > 0 {
		fmt.Fprintf(w, "server peak RSS: %.1f MB\n", float64(rep.PeakRSSKB)/1024)
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "FAILED %s\n", f)
	}
}
