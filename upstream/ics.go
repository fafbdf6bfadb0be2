package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// defaultICSMaxBytes caps a feed (after decompression). The largest public
// feeds seen are a few MiB.
const defaultICSMaxBytes = 32 << 20

// ICSOptions configure NewICS.
type ICSOptions struct {
	// ID is the source id, the key of its stored state.
	ID string
	// User and Calendar name the local calendar (Kind "ics") the feed is
	// mirrored into.
	User, Calendar string
	// URL is the feed's http(s) URL. It may carry a secret (private feed
	// URLs often do); it is redacted in messages but not otherwise hidden.
	URL string
	// Client makes the requests; main passes the one from NewHTTPClient.
	// Default: a client with a 2-minute timeout.
	Client *http.Client
	// Store is the cache the calendar lives in.
	Store *cache.Store
	// Zones resolves time zones while the feed is read. Default: a new one.
	Zones *ical.Zones
	// MaxBytes caps the feed body, after gzip decoding. Default: 32 MiB.
	MaxBytes int64
	// Logger receives sync summaries and feed trouble. Nil: silent.
	Logger *slog.Logger
}

// ICSSource mirrors a published iCalendar feed (RFC 5545) into a local,
// read-only calendar. Each poll is a conditional GET; a changed feed is cut
// into one object per UID by ical.Zones.SplitFeed, and only the objects
// whose content changed (ignoring DTSTAMP and LAST-MODIFIED) are written.
type ICSSource struct {
	// read only after NewICS - no locking needed
	opts  ICSOptions
	err   error // a bad URL, reported by Sync
	log   *slog.Logger
	store *cache.Store
	zones *ical.Zones
}

var _ Source = (*ICSSource)(nil)

// NewICS returns an ICS feed source. A malformed URL is reported by every
// Sync.
func NewICS(opts ICSOptions) *ICSSource {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 2 * time.Minute}
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultICSMaxBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Zones == nil {
		opts.Zones = &ical.Zones{}
	}
	s := &ICSSource{
		opts:  opts,
		log:   opts.Logger.With("source", opts.ID),
		store: opts.Store,
		zones: opts.Zones,
	}
	u, err := url.Parse(opts.URL)
	switch {
	case err != nil:
		s.err = fmt.Errorf("ics: source %s: bad url: %w", opts.ID, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		s.err = fmt.Errorf("ics: source %s: url %q is not an absolute http(s) URL", opts.ID, u.Redacted())
	}
	return s
}

// ID returns the source id.
func (s *ICSSource) ID() string { return s.opts.ID }

// Sync fetches the feed once and brings the calendar up to date with it.
//
// The GET carries If-None-Match and If-Modified-Since from the stored
// state; a 304 only records the success. Otherwise the body (gzip is
// decoded by the transport; the cap applies to the decoded bytes) is split
// by UID, and only new objects, objects whose content changed, and objects
// gone from the feed are written, with the feed's new ETag and
// Last-Modified, in one transaction: an unchanged feed moves no revision.
// The feed-level warnings of the reader (skipped lines, dropped
// components, a truncated feed) are stored as the source's Quarantine.
//
// A deletion of more than max(10, half) of the calendar's objects is held
// (HeldDeletes) until the next sync, which refetches the feed in full,
// finds the same number.
//
// Errors: network trouble, 5xx, 408 and 429 wrap ErrUnavailable (a
// *RetryAfterError when the feed gave Retry-After); other statuses, a body
// over MaxBytes, and a body that is not iCalendar (wrapping
// ical.ErrInvalidData) are permanent. On any error the calendar keeps its
// previous copy of the feed.
func (s *ICSSource) Sync(ctx context.Context) (Result, error) {
	if s.err != nil {
		return Result{}, s.err
	}
	what := "ics: GET " + redact(s.opts.URL)
	st, err := s.store.GetSource(s.opts.ID)
	if errors.Is(err, cache.ErrNotFound) {
		st, err = cache.SourceState{ID: s.opts.ID}, nil
	}
	if err != nil {
		return Result{}, err
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.opts.URL, nil)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Accept", "text/calendar, text/plain;q=0.5, */*;q=0.1")
	req.Header.Set("User-Agent", "calgate")
	// While deletions are held the feed is fetched in full, so that the
	// next sync can confirm them.
	if st.HeldDeletes == 0 {
		if st.ETag != "" {
			req.Header.Set("If-None-Match", st.ETag)
		}
		if st.LastModified != "" {
			req.Header.Set("If-Modified-Since", st.LastModified)
		}
	}
	// Accept-Encoding is left to the transport: it asks for gzip and
	// decodes it transparently, so the cap below counts decoded bytes and
	// a gzip bomb stops at MaxBytes.
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return Result{}, networkError(err, what)
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusNotModified {
		newState := st
		s.succeeded(&newState)
		if err := s.store.PutSource(newState); err != nil {
			return Result{}, err
		}
		s.log.Debug("ics sync: not modified")
		return Result{NotModified: true, Quarantined: len(st.Quarantine)}, nil
	}
	if err := statusError(resp, what); err != nil {
		return Result{}, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Result{}, fmt.Errorf("upstream: %s: unexpected %s", what, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return Result{}, networkError(err, what+": reading the body")
	}
	if int64(len(body)) > s.opts.MaxBytes {
		return Result{}, fmt.Errorf("upstream: %s: the feed is larger than %d bytes (max_bytes)", what, s.opts.MaxBytes)
	}

	objs, warns, err := s.zones.SplitFeed(body)
	if err != nil {
		return Result{}, fmt.Errorf("upstream: %s: %w (%s)", what, err, snippet(body))
	}

	stored, err := s.store.SelectObjects(s.opts.User, s.opts.Calendar, func(cache.Object) bool { return true })
	if err != nil {
		return Result{}, err
	}
	byName := make(map[string]cache.Object, len(stored))
	for _, o := range stored {
		byName[o.Name] = o
	}
	var (
		res     Result
		changes []cache.UpstreamChange
		inFeed  = make(map[string]bool, len(objs))
		deletes []string
	)
	for _, o := range objs {
		inFeed[o.Name] = true
		if cur, ok := byName[o.Name]; ok && ical.FeedIdentity(cur.Data) == o.Identity {
			res.Unchanged++
			continue
		}
		changes = append(changes, cache.UpstreamChange{Object: cache.Object{
			Name:      o.Name,
			UID:       o.UID,
			Component: o.Component,
			Start:     o.Start,
			End:       o.End,
			Exact:     o.Exact,
			Warnings:  o.Warnings,
			Data:      o.Data,
		}})
	}
	for _, o := range stored {
		if !inFeed[o.Name] {
			deletes = append(deletes, o.Name)
		}
	}

	newState := st
	newState.ETag = resp.Header.Get("ETag")
	newState.LastModified = resp.Header.Get("Last-Modified")
	// Mass-delete guard: more than max(10, half) of the calendar at once
	// is held until the next sync sees the same.
	if holdMassDelete(len(deletes), len(stored), st, &newState, &res) {
		s.log.Warn("ics sync: holding mass deletion until the next sync confirms it", "deletes", len(deletes), "objects", len(stored))
		// Keep the old validators so that the next poll refetches.
		newState.ETag, newState.LastModified = st.ETag, st.LastModified
		deletes = nil
	}
	changes = append(changes, deleteChanges(deletes)...)
	newState.Quarantine = nil
	for _, w := range warns {
		newState.Quarantine = append(newState.Quarantine, redact(s.opts.URL)+": "+w)
	}
	s.succeeded(&newState)
	if res.HeldDeletes > 0 {
		newState.LastError = heldDeletesNote(res.HeldDeletes, len(stored))
	}

	ar, err := s.store.ApplyUpstream(s.opts.User, s.opts.Calendar, changes, false, newState)
	if err != nil {
		return Result{}, err
	}
	if len(ar.UIDConflicts) > 0 {
		for _, name := range ar.UIDConflicts {
			newState.Quarantine = append(newState.Quarantine, fmt.Sprintf("%s: object %s: its UID is already used by another object of the calendar", redact(s.opts.URL), name))
		}
		if err := s.store.PutSource(newState); err != nil {
			return Result{}, err
		}
	}
	res.Put += ar.Put
	res.Deleted += ar.Deleted
	res.Unchanged += ar.Unchanged
	res.Quarantined = len(newState.Quarantine)
	for i, w := range warns {
		if i == 10 {
			s.log.Warn("ics sync: more feed warnings in the source state", "count", len(warns)-i)
			break
		}
		s.log.Warn("ics sync: feed warning", "warning", w)
	}
	s.log.Info("ics sync", "objects", len(objs), "put", res.Put, "deleted", res.Deleted, "unchanged", res.Unchanged,
		"skipped", len(ar.Skipped), "held_deletes", res.HeldDeletes, "bytes", len(body))
	return res, nil
}

// succeeded marks st as synced now.
func (s *ICSSource) succeeded(st *cache.SourceState) {
	now := time.Now().UTC()
	st.ID = s.opts.ID
	st.LastAttempt, st.LastSuccess = now, now
	st.LastError, st.Failures = "", 0
}
