// Package metrics exports calgate's Prometheus metrics: HTTP requests by
// method and status with latency histograms, upstream syncs, feed
// requests and renders, and, read from the store at scrape time, items
// per calendar, outbox depth, conflicts and the health of every source.
//
// The exposition format is Prometheus' text format
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Every
// metric lives in a registry of its own, never in the global one, so that
// each Metrics (one per server, one per test) starts from zero.
//
// Label values are user names, calendar ids, source ids ("user/calendar"),
// feed names, HTTP methods from a fixed list and status codes: never a
// URL (an upstream URL may hold credentials), a path or a token.
package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/calgate/calgate/cache"
)

// Options configure a Metrics.
type Options struct {
	// Store is read at every scrape for the per-calendar and per-source
	// gauges. Nil leaves them out.
	Store *cache.Store
	// Now returns the current time (the sources' sync age). Default:
	// time.Now.
	Now func() time.Time
	// Logger receives errors met while serving a scrape (a store that
	// cannot be read). Nil means silent.
	Logger *slog.Logger
}

// Metrics holds calgate's metrics in a registry of its own. Its methods
// are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	requests     *prometheus.CounterVec
	reqDuration  *prometheus.HistogramVec
	syncs        *prometheus.CounterVec
	syncDuration *prometheus.HistogramVec
	syncChanges  *prometheus.CounterVec
	feedRequests *prometheus.CounterVec
	feedRenders  *prometheus.CounterVec
}

// Histogram buckets, in seconds.
var (
	// requestBuckets span a cached GET (under a millisecond) to a large
	// REPORT or import (seconds).
	requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// syncBuckets span a 304 from a nearby feed to a full sync of a large
	// upstream calendar.
	syncBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// New returns a Metrics with every calgate metric, the Go runtime and
// process collectors, and the store collector (if opts.Store is set)
// registered.
func New(opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: opts.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calgate_http_requests_total",
			Help: "HTTP requests answered, by method (calgate's methods, else \"other\") and status code.",
		}, []string{"method", "code"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "calgate_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method.",
			Buckets: requestBuckets,
		}, []string{"method"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calgate_source_syncs_total",
			Help: "Syncs of an upstream source, by source id and result (ok or error).",
		}, []string{"source", "result"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "calgate_source_sync_duration_seconds",
			Help:    "Time a sync of an upstream source took (push of pending writes and pull).",
			Buckets: syncBuckets,
		}, []string{"source"}),
		syncChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calgate_source_changed_objects_total",
			Help: "Objects a sync of an upstream source put into or deleted from the store.",
		}, []string{"source"}),
		feedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calgate_feed_requests_total",
			Help: "Requests for a merged feed with a valid token, by feed and status code (304: the subscriber was up to date).",
		}, []string{"feed", "code"}),
		feedRenders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calgate_feed_renders_total",
			Help: "Renderings of a merged feed built (after a member calendar changed).",
		}, []string{"feed"}),
	}
	m.reg.MustRegister(
		m.requests, m.reqDuration, m.syncs, m.syncDuration, m.syncChanges, m.feedRequests, m.feedRenders,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if opts.Store != nil {
		m.reg.MustRegister(&storeCollector{store: opts.Store, now: opts.Now})
	}
	return m
}

// Handler serves the metrics in the Prometheus text format. A scrape
// that meets a store error still serves every other metric; the error is
// logged and counted in promhttp_metric_handler_errors_total.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

// ObserveSync records one sync of source (its id, "user/calendar") that
// took took and put or deleted changed objects; err nil is a success.
func (m *Metrics) ObserveSync(source string, changed int, err error, took time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.syncs.WithLabelValues(source, result).Inc()
	m.syncDuration.WithLabelValues(source).Observe(took.Seconds())
	// Touch the counter on every sync, so that it exists from the first.
	m.syncChanges.WithLabelValues(source).Add(float64(max(changed, 0)))
}

// ObserveFeed records one request for feed answered with status, and
// whether it rebuilt the feed's rendering.
func (m *Metrics) ObserveFeed(feed string, status int, rendered bool) {
	m.feedRequests.WithLabelValues(feed, strconv.Itoa(status)).Inc()
	if rendered {
		m.feedRenders.WithLabelValues(feed).Inc()
	}
}
