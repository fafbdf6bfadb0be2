package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/metrics"
	"github.com/calgate/calgate/upstream"
)

// Paths served before the gateway, without the gateway's authentication.
const (
	pathHealthz = "/healthz"
	pathReadyz  = "/readyz"
	pathMetrics = "/metrics"
)

// rootHandler is the handler of serve: /healthz (liveness: the process
// answers; no store access), /readyz (ready answers nil), /metrics (m's
// metrics, behind token if it is not empty; absent if m is nil), and
// everything else to gw, counted and timed by m. Health and metrics
// requests are not counted, so that probes and scrapes do not drown the
// clients' requests.
func rootHandler(gw http.Handler, m *metrics.Metrics, token string, ready func() error) http.Handler {
	app := gw
	var metricsHandler http.Handler
	if m != nil {
		app = m.Instrument(gw)
		metricsHandler = m.Handler()
		if token != "" {
			metricsHandler = requireBearer(token, metricsHandler)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == pathHealthz:
			if readOnly(w, r) {
				plain(w, r, http.StatusOK, "ok\n")
			}
		case r.URL.Path == pathReadyz:
			if readOnly(w, r) {
				if err := ready(); err != nil {
					plain(w, r, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
					return
				}
				plain(w, r, http.StatusOK, "ready\n")
			}
		case r.URL.Path == pathMetrics && metricsHandler != nil:
			if readOnly(w, r) {
				metricsHandler.ServeHTTP(w, r)
			}
		default:
			app.ServeHTTP(w, r)
		}
	})
}

// readOnly answers 405 to anything but GET and HEAD and reports whether
// the request may go on.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	plain(w, r, http.StatusMethodNotAllowed, r.URL.Path+" answers GET and HEAD only\n")
	return false
}

// plain answers status with a text body (none for HEAD), never cached.
func plain(w http.ResponseWriter, r *http.Request, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write([]byte(body))
	}
}

// requireBearer lets through only requests with "Authorization: Bearer
// token", compared in constant time; others get 401.
func requireBearer(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		ok := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
		if !strings.EqualFold(scheme, "Bearer") || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="calgate metrics"`)
			plain(w, r, http.StatusUnauthorized, "/metrics needs the header Authorization: Bearer TOKEN, with the token of the metrics section of the config\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newServeMetrics returns the metrics serve exports, or nil if the
// config disables them, and the token /metrics requires ("" for none).
func newServeMetrics(mc MetricsConfig, store *cache.Store, log *slog.Logger) (*metrics.Metrics, string, error) {
	if !mc.On() {
		return nil, "", nil
	}
	token, err := mc.token()
	if err != nil {
		return nil, "", fmt.Errorf("metrics: %w", err)
	}
	return metrics.New(metrics.Options{Store: store, Logger: log}), token, nil
}

// syncObserver is the engine's OnSync: it feeds m (nil: no metrics).
func syncObserver(m *metrics.Metrics) func(id string, res upstream.Result, err error, took time.Duration) {
	if m == nil {
		return nil
	}
	return func(id string, res upstream.Result, err error, took time.Duration) {
		m.ObserveSync(id, res.Put+res.Deleted, err, took)
	}
}

// feedObserver is the gateway's OnFeed: it feeds m (nil: no metrics).
func feedObserver(m *metrics.Metrics) func(feed string, status int, rendered bool) {
	if m == nil {
		return nil
	}
	return m.ObserveFeed
}

// errNotStarted is the readiness error before the sources run.
var errNotStarted = errors.New("the sync engine has not started (calgate is starting or stopping)")

// readiness is /readyz's check: the store answers a read, and the
// engine runs the sources.
func readiness(store *cache.Store, engine *upstream.Engine) func() error {
	return func() error {
		if _, err := store.ListSources(); err != nil {
			return fmt.Errorf("the data file cannot be read: %w", err)
		}
		if !engine.Started() {
			return errNotStarted
		}
		return nil
	}
}
