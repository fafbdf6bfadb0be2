package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"time"
)

// startupOptions are the settings of the startup subcommand.
type startupOptions struct {
	Readyz  string   // URL that answers 200 once the server is ready
	Command []string // the server and its arguments
	Rounds  int
	Timeout time.Duration // bound of one start-up
	Log     string        // file the server's output is appended to; "" discards it
}

// readyPoll is the interval between two /readyz requests.
const readyPoll = 5 * time.Millisecond

func startupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o startupOptions
	var jsonFile string
	fs := flag.NewFlagSet("calgate-bench startup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: calgate-bench startup -readyz URL [flags] -- COMMAND [ARGS...]

Starts COMMAND, polls -readyz every 5ms until it answers 200, and records
the time from exec to that answer; then stops the server (SIGINT, SIGKILL
after 60s) and starts it again, -rounds times. The server must listen on
the address of -readyz each time (a fixed port). The table gives the
median start-up in the p50 column and the slowest in the p99 column.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Readyz, "readyz", "", "readiness URL of the server, e.g. http://127.0.0.1:8080/readyz (required)")
	fs.IntVar(&o.Rounds, "rounds", 3, "start-ups to time")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "bound of one start-up")
	fs.StringVar(&o.Log, "log", "", "append the server's output to this file")
	fs.StringVar(&jsonFile, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Command = fs.Args()
	if o.Readyz == "" || len(o.Command) == 0 {
		fmt.Fprintln(stderr, "calgate-bench startup: -readyz and a command are required")
		fs.Usage()
		return 2
	}
	rep, err := runStartup(ctx, o)
	printTable(stdout, rep)
	if jsonFile != "" {
		if err := writeJSON(jsonFile, rep); err != nil {
			fmt.Fprintf(stderr, "calgate-bench startup: %v\n", err)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "calgate-bench startup: FAILED: %v\n", err)
		return 1
	}
	return 0
}

// runStartup times o.Rounds start-ups of the server.
func runStartup(ctx context.Context, o startupOptions) (*report, error) {
	if o.Rounds < 1 {
		o.Rounds = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	rep := &report{Rounds: o.Rounds}
	res := opResult{Name: "startup_ready"}
	var out io.Writer = io.Discard
	if o.Log != "" {
		f, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return rep, err
		}
		defer f.Close()
		out = f
	}
	var times []float64
	var err error
	for range o.Rounds {
		var d time.Duration
		d, err = startOnce(ctx, o, out)
		if err != nil {
			break
		}
		ms := float64(d) / float64(time.Millisecond)
		times = append(times, ms)
		res.Rounds = append(res.Rounds, round{Requests: 1, WallS: d.Seconds(), P50ms: ms, P99ms: ms})
	}
	res.Requests = len(times)
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
		rep.Failures = append(rep.Failures, "startup_ready: "+err.Error())
	}
	if len(times) > 0 {
		res.P50ms, res.P99ms = median(times), slices.Max(times)
	}
	rep.Ops = append(rep.Ops, res)
	return rep, err
}

// startOnce starts the server, waits for its /readyz 200, stops it and
// returns the time from exec to ready.
func startOnce(ctx context.Context, o startupOptions, out io.Writer) (time.Duration, error) {
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cl := &http.Client{Timeout: time.Second}
	defer cl.CloseIdleConnections()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := start.Add(o.Timeout)
	for {
		if ready(ctx, cl, o.Readyz) {
			return time.Since(start), nil
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred stop
			return 0, fmt.Errorf("%s exited before ready: %v", o.Command[0], err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(readyPoll):
		}
		if time.Now().After(deadline) {
			return 0, errors.New("not ready within " + o.Timeout.String())
		}
	}
}

// ready reports whether u answers 200.
func ready(ctx context.Context, cl *http.Client, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := cl.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
