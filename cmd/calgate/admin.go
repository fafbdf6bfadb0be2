package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// The admin socket is how the CLI reaches a running calgate: serve holds
// the data file's lock (one process at a time), so backup, status and
// export ask it over plain HTTP on a unix socket beside the data file.
// The socket's mode (0600) is the access control: only the user calgate
// runs as (and root) can connect.

// maxSocketPath is the longest unix socket path calgate uses: sun_path
// holds 108 bytes on Linux and 104 on the BSDs, with a terminating NUL.
const maxSocketPath = 103

// cliLockTimeout is how long a CLI command waits for the data file's
// lock before it concludes that a calgate is running on it.
const cliLockTimeout = 250 * time.Millisecond

// adminSocketPath is the admin socket of data file data.
func adminSocketPath(data string) string { return data + ".sock" }

// adminServer serves the admin socket of a running calgate.
type adminServer struct {
	path string
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
	log  *slog.Logger
}

// startAdmin listens on the admin socket of cfg.Data and serves h on it.
// A stale socket is replaced (the data file's lock, taken before, proves
// no other calgate uses it). If the socket cannot be created (a path
// too long for a unix socket, a read-only directory), it logs a warning
// and returns nil: calgate runs without it, and the CLI commands that need
// it say so.
func startAdmin(cfg *Config, h http.Handler, log *slog.Logger) *adminServer {
	path := adminSocketPath(cfg.Data)
	tmp := path + ".tmp"
	if len(tmp) > maxSocketPath {
		log.Warn("admin socket disabled: its path is too long for a unix socket; backup, status and export need calgate stopped (or a shorter `data` path)",
			"path", path, "max", maxSocketPath-len(".tmp"))
		return nil
	}
	for _, p := range []string{path, tmp} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("admin socket disabled: cannot remove the old socket", "path", p, "err", err)
			return nil
		}
	}
	// Bind under a temporary name, restrict it, then rename it into
	// place: the socket is never reachable with a looser mode.
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		log.Warn("admin socket disabled", "path", path, "err", err)
		return nil
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // stop removes the final name
	err = os.Chmod(tmp, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		log.Warn("admin socket disabled", "path", path, "err", err)
		return nil
	}
	a := &adminServer{
		path: path,
		done: make(chan struct{}),
		log:  log,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("admin socket", "path", path, "err", err)
		}
	}()
	log.Info("admin socket listening", "path", path)
	return a
}

// stop lets running requests (a backup) finish within the grace period,
// closes the socket and removes it. A nil a does nothing.
func (a *adminServer) stop() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
	}
	<-a.done
	if err := os.Remove(a.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove admin socket", "path", a.path, "err", err)
	}
}

// adminHandler serves the CLI's requests on the admin socket:
//
//	GET /backup            the store file, from one read transaction
//	GET /status            the sources' health, as status -json prints it
//	GET /export?target=T   what export T prints
//	GET /debug/pprof/...   the Go runtime's profiles (net/http/pprof), e.g.
//	                       curl --unix-socket DATA.sock http://calgate/debug/pprof/profile?seconds=20 >cpu.prof
func adminHandler(cfg *Config, store *cache.Store, zones *ical.Zones, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		start := time.Now()
		n, err := store.WriteBackup(w, func(size int64) {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		})
		if err != nil {
			log.Error("backup through the admin socket failed", "err", err, "bytes", n)
			if n == 0 { // nothing sent yet: say why; later, a short body tells the client
				http.Error(w, "backup failed: "+err.Error()+" (see calgate's log)", http.StatusInternalServerError)
			}
			return
		}
		log.Info("backup written through the admin socket", "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		rows, err := statusRows(store, cfg, time.Now())
		if err != nil {
			log.Error("status through the admin socket", "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rows)
	})
	mux.HandleFunc("GET /export", func(w http.ResponseWriter, r *http.Request) {
		body, err := renderExport(store, zones, cfg, r.URL.Query().Get("target"), time.Now())
		if err != nil {
			code := http.StatusInternalServerError
			var te *targetError
			switch {
			case errors.As(err, &te):
				code = http.StatusBadRequest
			case errors.Is(err, cache.ErrNotFound):
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	// Profiles for "go tool pprof", behind the socket's 0600 like the rest:
	// never on the public listener.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// adminClient talks to the admin socket of a running calgate.
type adminClient struct {
	path   string
	client *http.Client
}

// newAdminClient returns a client of the admin socket at path.
func newAdminClient(path string) *adminClient {
	var d net.Dialer
	return &adminClient{path: path, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return d.DialContext(ctx, "unix", path)
		},
		ResponseHeaderTimeout: 5 * time.Minute, // a big export renders first
		DisableCompression:    true,
	}}}
}

// get sends GET target and returns the response if its status is 200,
// else an error with the server's message. The caller closes the body.
func (c *adminClient) get(ctx context.Context, target string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://calgate"+target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("the running calgate answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// getJSON decodes the JSON answer to GET target into v.
func (c *adminClient) getJSON(target string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.get(ctx, target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("admin socket %s: read %s: %w", c.path, target, err)
	}
	return nil
}

// errRunning says that a command needs the data file to itself and a
// calgate holds it.
var errRunning = errors.New("calgate is running on the data file")

// openCLIStore opens the data file for a CLI command, waiting briefly for
// its lock. It returns an error wrapping errRunning and cache.ErrLocked if
// another process (a running calgate) holds it.
func openCLIStore(cfg *Config, log *slog.Logger) (*cache.Store, error) {
	// The store's open and close lines are noise around a command's
	// output; they show at debug.
	cacheLog := slog.New(slog.DiscardHandler)
	if log.Enabled(context.Background(), slog.LevelDebug) {
		cacheLog = log.With("component", "cache")
	}
	store, err := cache.Open(cfg.Data, cache.Options{Logger: cacheLog, Timeout: cliLockTimeout})
	if errors.Is(err, cache.ErrLocked) {
		return nil, fmt.Errorf("%w: %s is held by another process: %w", errRunning, cfg.Data, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open data file %s: %w (check `data` in the config, and that the file is readable and its directory writable)", cfg.Data, err)
	}
	return store, nil
}

// withStore runs offline on the data file when it is free, or online
// through the admin socket of the calgate that holds it.
func withStore(cfg *Config, log *slog.Logger, offline func(*cache.Store) error, online func(*adminClient) error) error {
	store, err := openCLIStore(cfg, log)
	if err == nil {
		err = offline(store)
		if cerr := store.Close(); err == nil {
			err = cerr
		}
		return err
	}
	if !errors.Is(err, errRunning) {
		return err
	}
	path := adminSocketPath(cfg.Data)
	if _, serr := os.Stat(path); serr != nil {
		return fmt.Errorf("%w, and it has no admin socket at %s (a calgate sync, import or compact running? a calgate with a data path too long for a socket? retry when it is done, or stop it)", err, path)
	}
	log.Debug("data file in use; asking the running calgate", "socket", path)
	return online(newAdminClient(path))
}
