package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calgate/calgate/cache"
)

// Descriptions of the gauges read from the store at scrape time.
var (
	descItems = prometheus.NewDesc("calgate_calendar_items",
		"Objects stored in a calendar, by user, calendar id and kind (local, caldav, ics, merged).",
		[]string{"user", "calendar", "kind"}, nil)
	descOutbox = prometheus.NewDesc("calgate_outbox_depth",
		"Local writes to a calendar waiting to be pushed upstream.",
		[]string{"user", "calendar"}, nil)
	descConflicts = prometheus.NewDesc("calgate_conflicts",
		"Conflicts kept for a calendar (both sides changed an object), waiting for the user.",
		[]string{"user", "calendar"}, nil)
	descLastSuccess = prometheus.NewDesc("calgate_source_last_success_timestamp_seconds",
		"Unix time of a source's last successful sync; absent if it never succeeded.",
		[]string{"source"}, nil)
	descSyncAge = prometheus.NewDesc("calgate_source_sync_age_seconds",
		"Seconds since a source's last successful sync (the age of its data); absent if it never succeeded.",
		[]string{"source"}, nil)
	descFailures = prometheus.NewDesc("calgate_source_consecutive_failures",
		"Syncs of a source that failed in a row since its last success.",
		[]string{"source"}, nil)
	descUp = prometheus.NewDesc("calgate_source_up",
		"1 if a source's last sync succeeded, else 0.",
		[]string{"source"}, nil)
)

// storeCollector reads the calendars' counts and the sources' states
// from the store at every scrape: one read transaction for the counts
// (keys only) and one for the sources.
type storeCollector struct {
	store *cache.Store
	now   func() time.Time
}

var _ prometheus.Collector = (*storeCollector)(nil)

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descItems, descOutbox, descConflicts, descLastSuccess, descSyncAge, descFailures, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A store error becomes an
// invalid metric, which the handler reports without failing the scrape.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.store.Stats("")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descItems, fmt.Errorf("metrics: read calendar counts: %w", err))
	}
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descItems, prometheus.GaugeValue, float64(s.Objects), s.User, s.Cal, s.Kind)
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(s.Pending), s.User, s.Cal)
		ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.GaugeValue, float64(s.Conflicts), s.User, s.Cal)
	}

	sources, err := c.store.ListSources()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descUp, fmt.Errorf("metrics: read source states: %w", err))
	}
	now := c.now()
	for _, st := range sources {
		// Only the id is a label: the state holds no URL, but keep it so.
		up := 0.0
		if st.Failures == 0 && !st.LastSuccess.IsZero() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.ID)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.GaugeValue, float64(st.Failures), st.ID)
		if !st.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue,
				float64(st.LastSuccess.UnixNano())/1e9, st.ID)
			ch <- prometheus.MustNewConstMetric(descSyncAge, prometheus.GaugeValue,
				max(now.Sub(st.LastSuccess).Seconds(), 0), st.ID)
		}
	}
}
