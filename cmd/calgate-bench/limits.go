package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// The limits are what calgate is compared with: the same bytes served
// from memory by a trivial Go handler in a process of its own, and plain
// bbolt commits on the same disk. They run on the load generator of a
// run (measure, measureRounds), with the same c, rounds and duration.

// limitsOptions are the settings of the limits subcommand.
type limitsOptions struct {
	Object     string // URL of one object on the measured server
	Collection string // URL of a whole calendar (its GET)
	Feed       string // URL of a merged feed, with its token
	User       string
	Password   string
	C          int
	Duration   time.Duration
	Requests   int
	Rounds     int
	Timeout    time.Duration
	Dir        string        // where the bbolt file is made; "" is the system temp dir
	NoBolt     bool          // skip the bbolt loops
	BatchDelay time.Duration // DB.MaxBatchDelay of bbolt_batch
}

// servedFile is one resource of the trivial server: the bytes fetched from
// the measured server and how they were sent.
type servedFile struct {
	Path        string `json:"path"`         // on the trivial server
	File        string `json:"file"`         // the body, uncompressed
	ContentType string `json:"content_type"` // as the measured server sent it
	Gzip        bool   `json:"gzip"`         // the measured server sent it gzip-compressed
}

// boltValueSize is the value written by each bbolt commit.
const boltValueSize = 1024

func limitsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o limitsOptions
	var jsonFile string
	fs := flag.NewFlagSet("calgate-bench limits", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: calgate-bench limits [flags]

Fetches the bytes of -object, -collection and -feed from the measured
server, serves them from memory with a trivial net/http handler in a
process of its own on 127.0.0.1 (gzip-compressed when the measured server
compressed them), and measures GETs of them with the load generator of a
run: limit_get, limit_collection, limit_feed. Then measures bbolt commits
of 1 KiB values in a fresh file in -dir, fsync on: one db.Update at a time
(bbolt_update) and c writers with db.Batch (bbolt_batch).

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Object, "object", "", "URL of one calendar object")
	fs.StringVar(&o.Collection, "collection", "", "URL of a calendar, whose GET is the whole collection")
	fs.StringVar(&o.Feed, "feed", "", "URL of a merged feed with its token (or set "+envFeed+")")
	fs.StringVar(&o.User, "user", "", "user name for HTTP Basic on the measured server")
	fs.StringVar(&o.Password, "password", "", "password for HTTP Basic (or set "+envPassword+")")
	fs.IntVar(&o.C, "c", 8, "concurrency")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "time bound of each round")
	fs.IntVar(&o.Requests, "requests", 0, "count bound of each round (0: 1,000,000)")
	fs.IntVar(&o.Rounds, "rounds", 3, "measured rounds of each limit; the table gives the median")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "timeout of each request")
	fs.StringVar(&o.Dir, "dir", "", "directory for the bbolt file (put it on the disk of the server's data file); default the temp dir")
	fs.BoolVar(&o.NoBolt, "no-bbolt", false, "skip the bbolt commit loops")
	fs.DurationVar(&o.BatchDelay, "batch-delay", 2*time.Millisecond, "MaxBatchDelay of bbolt_batch (calgate's group commit waits 2ms; bbolt's default is 10ms)")
	fs.StringVar(&jsonFile, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Password == "" {
		o.Password = os.Getenv(envPassword)
	}
	if o.Feed == "" {
		o.Feed = os.Getenv(envFeed)
	}
	rep, err := runLimits(ctx, o)
	if rep != nil {
		printTable(stdout, rep)
		if jsonFile != "" {
			if err := writeJSON(jsonFile, rep); err != nil {
				fmt.Fprintf(stderr, "calgate-bench limits: %v\n", err)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "calgate-bench limits: FAILED: %v\n", err)
		return 1
	}
	return 0
}

// runLimits measures every limit o names.
func runLimits(ctx context.Context, o limitsOptions) (*report, error) {
	ro := options{C: o.C, Duration: o.Duration, Requests: o.Requests, Rounds: o.Rounds, Timeout: o.Timeout}
	ro.defaults()
	rep := &report{C: ro.C, Rounds: ro.Rounds, DurationS: ro.Duration.Seconds()}
	fail := func(name string, err error) {
		rep.Ops = append(rep.Ops, opResult{Name: name, Error: err.Error()})
		rep.Failures = append(rep.Failures, name+": "+err.Error())
	}
	tmp, err := os.MkdirTemp(o.Dir, "calgate-bench-limits-")
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	defer os.RemoveAll(tmp)

	var files []servedFile
	names := map[string]string{}
	fetch := newClient(o.User, o.Password, 1, ro.Timeout)
	for _, s := range []struct{ op, path, url string }{
		{"limit_get", "/object.ics", o.Object},
		{"limit_collection", "/collection.ics", o.Collection},
		{"limit_feed", "/feed.ics", o.Feed},
	} {
		if s.url == "" {
			continue
		}
		f, err := fetchFile(ctx, fetch, s.url, filepath.Join(tmp, strings.TrimPrefix(s.path, "/")))
		if err != nil {
			fail(s.op, err)
			continue
		}
		f.Path = s.path
		files = append(files, f)
		names[s.path] = s.op
	}
	fetch.http.CloseIdleConnections()
	if len(files) > 0 {
		if err := measureServed(ctx, ro, tmp, files, names, rep); err != nil {
			rep.Failures = append(rep.Failures, "trivial server: "+err.Error())
		}
	}
	if !o.NoBolt {
		for _, batch := range []bool{false, true} {
			r, err := measureBolt(ctx, ro, tmp, batch, o.BatchDelay)
			if err != nil {
				fail(r.Name, err)
				continue
			}
			rep.Ops = append(rep.Ops, r)
			if !r.OK {
				rep.Failures = append(rep.Failures, r.Name+": "+r.Error)
			}
		}
	}
	if len(rep.Failures) > 0 {
		return rep, fmt.Errorf("limits: %s", strings.Join(rep.Failures, "; "))
	}
	return rep, nil
}

// fetchFile GETs u from the measured server into file and notes how it
// was sent.
func fetchFile(ctx context.Context, cl *client, u, file string) (servedFile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return servedFile{}, fmt.Errorf("GET %s: %w", redactURL(u), unwrapURLError(err))
	}
	if cl.user != "" {
		req.SetBasicAuth(cl.user, cl.password)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return servedFile{}, fmt.Errorf("GET %s: %w", redactURL(u), unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return servedFile{}, fmt.Errorf("GET %s: %w", redactURL(u), unwrapURLError(err))
	}
	if resp.StatusCode != http.StatusOK {
		return servedFile{}, fmt.Errorf("GET %s: status %d, want 200", redactURL(u), resp.StatusCode)
	}
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return servedFile{}, err
	}
	// Go's transport asked for gzip and undid it: Uncompressed says so.
	return servedFile{File: file, ContentType: resp.Header.Get("Content-Type"), Gzip: resp.Uncompressed}, nil
}

// measureServed starts the trivial server on files and measures a GET of
// each, checking every answer as a run checks the original.
func measureServed(ctx context.Context, ro options, dir string, files []servedFile, names map[string]string, rep *report) error {
	manifest := filepath.Join(dir, "manifest.json")
	data, err := json.Marshal(files)
	if err != nil {
		return err
	}
	if err := os.WriteFile(manifest, data, 0o600); err != nil {
		return err
	}
	srv, err := startServeBytes(ctx, manifest)
	if err != nil {
		return err
	}
	defer srv.stop()

	b := &bench{opts: ro, cl: newClient("", "", ro.C, ro.Timeout)}
	defer b.cl.http.CloseIdleConnections()
	for _, f := range files {
		body, err := os.ReadFile(f.File)
		if err != nil {
			return err
		}
		wantVEvents, wantUIDs := icsStats(body)
		u := "http://" + srv.addr + f.Path
		name := names[f.Path]
		r := b.measureRounds(ctx, measurement{name: name, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
			status, hdr, got, d, err := b.cl.do(ctx, http.MethodGet, u, nil, nil)
			if err != nil {
				return 0, 0, err
			}
			if status != http.StatusOK || hdr.Get("Content-Type") != f.ContentType {
				return d, 0, fmt.Errorf("GET %s: status %d, Content-Type %q", f.Path, status, hdr.Get("Content-Type"))
			}
			vevents, uids := icsStats(got)
			if vevents != wantVEvents || len(uids) != len(wantUIDs) {
				return d, 0, fmt.Errorf("GET %s: %d VEVENTs of %d UIDs, want %d of %d", f.Path, vevents, len(uids), wantVEvents, len(wantUIDs))
			}
			return d, len(uids), nil
		}})
		rep.Ops = append(rep.Ops, r)
		if !r.OK {
			rep.Failures = append(rep.Failures, r.Name+": "+r.Error)
		}
	}
	if kb, err := peakRSS(srv.cmd.Process.Pid); err == nil {
		rep.PeakRSSKB = kb
	}
	return nil
}

// measureBolt measures fsync'd bbolt commits of 1 KiB values in a fresh
// file under dir: sequential db.Update calls, or with batch c writers
// through db.Batch with DB.MaxBatchDelay set to delay.
func measureBolt(ctx context.Context, ro options, dir string, batch bool, delay time.Duration) (opResult, error) {
	name := "bbolt_update"
	if batch {
		name = "bbolt_batch"
	}
	path := filepath.Join(dir, name+".db")
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return opResult{Name: name}, fmt.Errorf("bbolt: %w", err)
	}
	defer os.Remove(path)
	defer db.Close()
	if delay > 0 {
		db.MaxBatchDelay = delay
	}
	bucket := []byte("bench")
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(bucket)
		return err
	}); err != nil {
		return opResult{Name: name}, fmt.Errorf("bbolt: %w", err)
	}
	value := bytes.Repeat([]byte("calgate-"), boltValueSize/8)
	var seq atomic.Uint64
	put := func(tx *bbolt.Tx) error {
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], seq.Add(1))
		return tx.Bucket(bucket).Put(key[:], value)
	}
	b := &bench{opts: ro}
	m := measurement{name: name, sequential: !batch, op: func(ctx context.Context, w, k int) (time.Duration, int, error) {
		start := time.Now()
		var err error
		if batch {
			err = db.Batch(put)
		} else {
			err = db.Update(put)
		}
		return time.Since(start), 1, err
	}}
	return b.measureRounds(ctx, m), nil
}

// serveBytesCmdName is the hidden subcommand that runs the trivial server.
const serveBytesCmdName = "serve-bytes"

// servedProcess is a running trivial server.
type servedProcess struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.Closer
	done  chan struct{}
}

// startServeBytes runs this program's serve-bytes subcommand on the
// manifest and waits for its address. It stops when stop is called or
// when this process ends (its stdin closes).
func startServeBytes(ctx context.Context, manifest string) (*servedProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, serveBytesCmdName, manifest)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &servedProcess{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				addr <- a
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	select {
	case p.addr = <-addr:
		return p, nil
	case <-p.done:
		return nil, errors.New("the trivial server exited before listening")
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	p.stop()
	return nil, errors.New("the trivial server did not listen within 10s")
}

// stop ends the trivial server and waits for it.
func (p *servedProcess) stop() {
	p.stdin.Close()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// serveBytesCmd is the trivial server: the files of a manifest, from
// memory, on a free port of 127.0.0.1, until stdin closes or a signal.
func serveBytesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: calgate-bench serve-bytes MANIFEST.json")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "calgate-bench serve-bytes:", err)
		return 1
	}
	var files []servedFile
	if err := json.Unmarshal(data, &files); err != nil {
		fmt.Fprintln(stderr, "calgate-bench serve-bytes:", err)
		return 1
	}
	mux := http.NewServeMux()
	for _, f := range files {
		h, err := bytesHandler(f)
		if err != nil {
			fmt.Fprintln(stderr, "calgate-bench serve-bytes:", err)
			return 1
		}
		mux.Handle("GET "+f.Path, h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, "calgate-bench serve-bytes:", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		io.Copy(io.Discard, os.Stdin) // returns when the parent ends
		cancel()
	}()
	go func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "calgate-bench serve-bytes:", err)
		return 1
	}
	return 0
}

// bytesHandler serves f from memory: its bytes, or their gzip when f was
// sent compressed and the client accepts gzip.
func bytesHandler(f servedFile) (http.Handler, error) {
	body, err := os.ReadFile(f.File)
	if err != nil {
		return nil, err
	}
	var gz []byte
	if f.Gzip {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		gz = buf.Bytes()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", f.ContentType)
		out := body
		if gz != nil && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			out = gz
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("Content-Length", fmt.Sprint(len(out)))
		w.Write(out)
	}), nil
}
