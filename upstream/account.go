package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// Account defaults.
const (
	defaultAccountInterval     = time.Hour
	defaultAccountSyncInterval = 5 * time.Minute
	// missingConfirmations is how many consecutive discoveries must miss a
	// collection before its local calendar is removed.
	missingConfirmations = 2
	// maxDiscoveryHops bounds the redirects of the .well-known lookup.
	maxDiscoveryHops = 5
	// kindCalDAV is the cache.Calendar Kind of a mirrored CalDAV calendar.
	kindCalDAV = "caldav"
)

// accountKnownComponents are the component types a mirrored calendar may
// hold; others in an upstream's supported-calendar-component-set (e.g.
// Xandikos' VFREEBUSY) are dropped.
var accountKnownComponents = []string{"VEVENT", "VTODO", "VJOURNAL"}

// AccountOptions configure an Account.
type AccountOptions struct {
	// ID names the account; the local calendars it creates are called
	// "<ID>-<upstream collection name>".
	ID string
	// User owns the local calendars.
	User string
	// URL is where discovery starts: any URL of the server (an URL without
	// a path first tries /.well-known/caldav, RFC 6764), a principal, or
	// a calendar home.
	URL string
	// Username and Password are sent with Basic authentication when
	// Username is not empty, to discovery and to every calendar's source.
	Username, Password string
	// Client sends every request (main passes the one from NewHTTPClient).
	Client *http.Client
	// Store holds the calendars, their sources' state and the account's.
	Store *cache.Store
	// Zones resolves time zones for the calendars' sources.
	Zones *ical.Zones
	// Engine runs the calendars' sources; Reconcile adds and removes them.
	Engine *Engine
	// Conflict is the calendars' conflict policy (see CalDAVOptions).
	Conflict string
	// Interval between discoveries. Default: 1h.
	Interval time.Duration
	// SyncInterval is the poll interval of every discovered calendar.
	// Default: 5m.
	SyncInterval time.Duration
	// MaxBytes caps one response body. Default: 64 MiB.
	MaxBytes int64
	// Logger receives discovery summaries and trouble. Nil: silent.
	Logger *slog.Logger
}

// Discovered is one calendar collection of an upstream account.
type Discovered struct {
	// Href is the collection's absolute URL, with a trailing slash.
	Href string
	// Calendar is the id of the local calendar that mirrors it:
	// "<account id>-<last path segment of Href>", sanitised to
	// [A-Za-z0-9._-] (see calendarIDs).
	Calendar string
	// DisplayName, Color and Description are the collection's
	// displayname, calendar-color and calendar-description, as given.
	DisplayName, Color, Description string
	// Components is the supported-calendar-component-set, restricted to
	// VEVENT, VTODO and VJOURNAL (all three when the server names none).
	Components []string
}

// Account discovers the calendars of an upstream CalDAV account
// (current-user-principal, RFC 5397 → calendar-home-set, RFC 4791 §6.2.1 →
// Depth 1 PROPFIND of the home) and mirrors each in a local calendar of
// Kind "caldav" with a CalDAVSource in the Engine, following calendars
// added and removed upstream.
//
// The account keeps its state in the store as the SourceState with id
// "<User>/<ID>": LastSuccess, LastError and Failures of the discoveries,
// Quarantine lists what needs attention (a collection missing upstream, a
// calendar kept for its pending writes, an id taken), and SyncToken holds
// the account's own record as JSON (accountRecord): the calendars it
// created, with their collection URL and how many consecutive discoveries
// have missed them. A calendar is removed only after two consecutive
// discoveries miss it, and never while it has pending outbox entries or
// conflicts. Only calendars in that record are ever touched, so a
// configured calendar whose id happens to match is left alone.
type Account struct {
	// read only after NewAccount - no locking needed
	opts    AccountOptions
	stateID string
	base    *url.URL      // the discovery URL; nil if opts.URL is bad
	err     error         // a bad URL or option, reported by Discover
	dav     *CalDAVSource // sends requests with the account's credentials
	davNR   *CalDAVSource // the same, without following redirects
	log     *slog.Logger

	mu       sync.Mutex        // serialises Reconcile; protects the fields below
	sources  map[string]string // calendar id -> collection URL of the source this account added to the Engine
	restored bool              // the stored calendars' sources were added

	runMu  sync.Mutex // protects cancel
	cancel context.CancelFunc
	wg     sync.WaitGroup // the Run goroutine started by Start
}

// accountRecord is the account's own state, JSON in SourceState.SyncToken
// of the account's state (no other field of SourceState fits a map, and
// an account has no sync token of its own).
type accountRecord struct {
	// Calendars are the local calendars this account created, by id.
	Calendars map[string]*accountCalendar `json:"calendars"`
}

// accountCalendar is one calendar of an accountRecord.
type accountCalendar struct {
	Href    string `json:"href"`              // the collection URL
	Missing int    `json:"missing,omitempty"` // consecutive discoveries without it
}

// NewAccount returns an account. A malformed URL is reported by every
// Discover and Reconcile.
func NewAccount(opts AccountOptions) *Account {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 2 * time.Minute}
	}
	if opts.Interval <= 0 {
		opts.Interval = defaultAccountInterval
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = defaultAccountSyncInterval
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultCalDAVMaxBytes
	}
	if opts.Conflict == "" {
		opts.Conflict = ConflictUpstreamWins
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Account{
		opts:    opts,
		stateID: opts.User + "/" + opts.ID,
		log:     opts.Logger.With("account", opts.User+"/"+opts.ID),
		sources: map[string]string{},
	}
	u, err := parseUpstreamURL("account "+a.stateID, opts.URL, opts.Conflict)
	switch {
	case err != nil:
		a.err = err
	case opts.Store == nil || opts.Engine == nil:
		a.err = fmt.Errorf("caldav: account %s: a store and an engine are required", a.stateID)
	default:
		a.base = u
	}
	// The request helpers of a CalDAVSource (credentials, body cap, error
	// classification) serve discovery too; its collection URL is unused.
	davOpts := CalDAVOptions{
		ID: a.stateID, User: opts.User, URL: opts.URL,
		Username: opts.Username, Password: opts.Password,
		Client: opts.Client, Store: opts.Store, MaxBytes: opts.MaxBytes, Logger: a.log,
	}
	a.dav = NewCalDAV(davOpts)
	noFollow := *opts.Client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	davOpts.Client = &noFollow
	a.davNR = NewCalDAV(davOpts)
	return a
}

// ID returns the account's state id, "<User>/<ID>".
func (a *Account) ID() string { return a.stateID }

// Start runs Run in a goroutine until ctx ends or Stop is called. Call
// Stop before stopping the Engine: the account adds sources to it.
func (a *Account) Start(ctx context.Context) {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	if a.cancel != nil {
		return // already started
	}
	ctx, a.cancel = context.WithCancel(ctx)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.Run(ctx)
	}()
}

// Stop stops the goroutine started by Start and waits for it; a
// discovery in progress is cancelled through its context.
func (a *Account) Stop() {
	a.runMu.Lock()
	if a.cancel != nil {
		a.cancel()
	}
	a.runMu.Unlock()
	a.wg.Wait()
}

// Run reconciles at once and then every Interval (with jitter), after a
// failure with the Engine's capped exponential backoff, until ctx ends.
func (a *Account) Run(ctx context.Context) {
	delay := time.Duration(0)
	failures := 0
	for {
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		err := a.Reconcile(ctx)
		if ctx.Err() != nil {
			return // cancellation is not a failure
		}
		if err != nil {
			failures++
			delay = a.opts.Engine.backoff(failures, err)
			a.log.Warn("account discovery failed", "err", err, "failures", failures, "retry_in", delay.Round(time.Second))
			continue
		}
		failures = 0
		delay = jitter(a.opts.Interval, 0.1)
	}
}

// Reconcile discovers the account's calendars and makes the store and the
// Engine follow: a local calendar (created with the upstream's
// displayname, color and components) and a source for each collection,
// and the removal of the calendars whose collection has been missing from
// two consecutive discoveries, unless they hold pending writes or
// conflicts. The calendars known from earlier runs get their sources
// first, so they sync (and push) even when discovery fails. A failed
// discovery changes nothing but the account's error; errors wrap
// ErrUnavailable when a later try may help.
func (a *Account) Reconcile(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, rec, err := a.loadState()
	if err != nil {
		return err
	}
	if !a.restored {
		a.restore(rec)
		a.restored = true
	}
	st.LastAttempt = time.Now().UTC()
	found, err := a.Discover(ctx)
	if err != nil {
		if ctx.Err() == nil {
			st.LastError = err.Error()
			st.Failures++
			if perr := a.saveState(st, rec); perr != nil {
				a.log.Error("recording discovery failure", "err", perr)
			}
		}
		return err
	}

	var notes []string
	present := make(map[string]bool, len(found))
	added, removed := 0, 0
	for _, d := range found {
		ok, note, err := a.ensure(d, &st, rec)
		if err != nil {
			return err
		}
		if note != "" {
			notes = append(notes, note)
		}
		if !ok {
			continue
		}
		present[d.Calendar] = true
		if a.sources[d.Calendar] != d.Href {
			if a.sources[d.Calendar] != "" {
				a.opts.Engine.Remove(a.sourceID(d.Calendar))
			}
			a.addSource(d.Calendar, d.Href)
			added++
		}
	}

	ids := make([]string, 0, len(rec.Calendars))
	for id := range rec.Calendars {
		if !present[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		gone, note, err := a.missing(id, rec)
		if err != nil {
			return err
		}
		if note != "" {
			notes = append(notes, note)
		}
		if gone {
			removed++
		}
	}

	now := time.Now().UTC()
	st.LastSuccess, st.LastError, st.Failures = now, "", 0
	st.Quarantine = notes
	if err := a.saveState(st, rec); err != nil {
		return err
	}
	a.log.Info("account discovery", "calendars", len(found), "new_sources", added, "removed", removed, "notes", len(notes))
	return nil
}

// ensure makes sure the local calendar of d exists and belongs to the
// account. ok is false when it must not be mirrored (its id is taken);
// note then says why.
func (a *Account) ensure(d Discovered, st *cache.SourceState, rec *accountRecord) (ok bool, note string, err error) {
	srcID := a.sourceID(d.Calendar)
	own := rec.Calendars[d.Calendar]
	if _, mine := a.sources[d.Calendar]; !mine && slices.Contains(a.opts.Engine.Sources(), srcID) {
		// A configured calendar of the same id has this source: it is
		// not (or no longer) the account's.
		delete(rec.Calendars, d.Calendar)
		a.log.Warn("account: calendar id taken by a configured calendar; not mirrored", "calendar", d.Calendar, "href", redact(d.Href))
		return false, fmt.Sprintf("%s: not mirrored: calendar id %q is taken by another calendar", redact(d.Href), d.Calendar), nil
	}
	cal, err := a.opts.Store.GetCalendar(a.opts.User, d.Calendar)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		// Record the calendar as the account's before creating it, so
		// that a crash in between leaves a calendar to create, never one
		// the account does not know as its own.
		if own == nil {
			own = &accountCalendar{Href: d.Href}
			rec.Calendars[d.Calendar] = own
			if err := a.saveState(*st, rec); err != nil {
				return false, "", err
			}
		}
		// A calendar of the same id may have existed before: its
		// source's token must not be taken for the new one's.
		if err := a.opts.Store.PutSource(cache.SourceState{ID: srcID}); err != nil {
			return false, "", err
		}
		name := d.DisplayName
		if name == "" {
			name = path.Base(strings.TrimSuffix(mustPath(d.Href), "/"))
		}
		_, err := a.opts.Store.CreateCalendar(cache.Calendar{
			User: a.opts.User, ID: d.Calendar,
			DisplayName: name, Color: d.Color, Description: d.Description,
			Components: append([]string(nil), d.Components...),
			Kind:       kindCalDAV, Source: srcID,
		})
		if err != nil {
			return false, "", err
		}
		a.log.Info("account: created calendar", "calendar", d.Calendar, "href", redact(d.Href))
	case err != nil:
		return false, "", err
	case own == nil || cal.Kind != kindCalDAV || cal.Source != srcID:
		if own != nil {
			// The calendar was taken over (the config made it local or
			// gave it another source): it is no longer the account's.
			delete(rec.Calendars, d.Calendar)
			a.dropSource(d.Calendar)
		}
		a.log.Warn("account: calendar id taken by another calendar; not mirrored", "calendar", d.Calendar, "href", redact(d.Href))
		return false, fmt.Sprintf("%s: not mirrored: calendar id %q is taken by another calendar", redact(d.Href), d.Calendar), nil
	}
	own.Href, own.Missing = d.Href, 0
	return true, "", nil
}

// missing handles a calendar of the account that the last discovery did
// not list. gone reports that it was removed.
func (a *Account) missing(id string, rec *accountRecord) (gone bool, note string, err error) {
	own := rec.Calendars[id]
	srcID := a.sourceID(id)
	cal, err := a.opts.Store.GetCalendar(a.opts.User, id)
	if errors.Is(err, cache.ErrNotFound) {
		// Deleted locally meanwhile (a client's DELETE): nothing to keep.
		delete(rec.Calendars, id)
		a.dropSource(id)
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	if cal.Kind != kindCalDAV || cal.Source != srcID {
		delete(rec.Calendars, id) // taken over by the config: not ours
		a.dropSource(id)
		return false, "", nil
	}
	own.Missing++
	if own.Missing < missingConfirmations {
		a.log.Warn("account: collection missing upstream; its calendar is removed if the next discovery confirms", "calendar", id, "href", redact(own.Href))
		return false, fmt.Sprintf("%s: missing upstream; calendar %q is removed if the next discovery confirms it", redact(own.Href), id), nil
	}
	pending, err := a.opts.Store.PendingOutbox(a.opts.User, id)
	if err != nil {
		return false, "", err
	}
	conflicts, err := a.conflicts(id)
	if err != nil {
		return false, "", err
	}
	if len(pending) > 0 || conflicts > 0 {
		a.log.Warn("account: collection gone upstream; calendar kept for its pending writes and conflicts", "calendar", id,
			"href", redact(own.Href), "pending", len(pending), "conflicts", conflicts)
		return false, fmt.Sprintf("%s: gone upstream; calendar %q kept: %d pending writes, %d conflicts (resolve them to let it go)",
			redact(own.Href), id, len(pending), conflicts), nil
	}
	// The engine's source goes first, so that no sync writes into the
	// calendar while it is deleted.
	a.dropSource(id)
	if err := a.opts.Store.DeleteCalendar(a.opts.User, id); err != nil && !errors.Is(err, cache.ErrNotFound) {
		return false, "", err
	}
	delete(rec.Calendars, id)
	a.log.Info("account: removed calendar gone upstream", "calendar", id, "href", redact(own.Href))
	return true, "", nil
}

// conflicts counts the stored conflicts of calendar id.
func (a *Account) conflicts(id string) (int, error) {
	all, err := a.opts.Store.ListConflicts(a.opts.User)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range all {
		if c.Cal == id {
			n++
		}
	}
	return n, nil
}

// restore adds a source for every calendar the account created in
// earlier runs, before any network I/O.
func (a *Account) restore(rec *accountRecord) {
	sources := a.opts.Engine.Sources()
	for id, own := range rec.Calendars {
		if own.Href == "" || slices.Contains(sources, a.sourceID(id)) {
			continue
		}
		cal, err := a.opts.Store.GetCalendar(a.opts.User, id)
		if err != nil || cal.Kind != kindCalDAV || cal.Source != a.sourceID(id) {
			continue // Reconcile sorts it out
		}
		a.addSource(id, own.Href)
	}
}

// addSource adds a CalDAVSource mirroring href into calendar id.
func (a *Account) addSource(id, href string) {
	src := NewCalDAV(CalDAVOptions{
		ID: a.sourceID(id), User: a.opts.User, Calendar: id,
		URL: href, Username: a.opts.Username, Password: a.opts.Password,
		Client: a.opts.Client, Store: a.opts.Store, Zones: a.opts.Zones,
		Conflict: a.opts.Conflict, MaxBytes: a.opts.MaxBytes, Logger: a.opts.Logger,
	})
	a.opts.Engine.Add(src, a.opts.User, id, a.opts.SyncInterval)
	a.sources[id] = href
}

// dropSource removes the Engine's source of calendar id if the account
// added it.
func (a *Account) dropSource(id string) {
	if _, ok := a.sources[id]; ok {
		a.opts.Engine.Remove(a.sourceID(id))
		delete(a.sources, id)
	}
}

// sourceID is the source id of calendar id: "<User>/<id>".
func (a *Account) sourceID(id string) string { return a.opts.User + "/" + id }

// loadState reads the account's state and record.
func (a *Account) loadState() (cache.SourceState, *accountRecord, error) {
	rec := &accountRecord{Calendars: map[string]*accountCalendar{}}
	st, err := a.opts.Store.GetSource(a.stateID)
	if errors.Is(err, cache.ErrNotFound) {
		return cache.SourceState{ID: a.stateID}, rec, nil
	}
	if err != nil {
		return cache.SourceState{}, nil, err
	}
	if st.SyncToken != "" {
		if err := json.Unmarshal([]byte(st.SyncToken), rec); err != nil {
			return cache.SourceState{}, nil, fmt.Errorf("caldav: account %s: corrupt stored state: %w", a.stateID, err)
		}
		if rec.Calendars == nil {
			rec.Calendars = map[string]*accountCalendar{}
		}
	}
	return st, rec, nil
}

// saveState stores st with rec encoded in its SyncToken.
func (a *Account) saveState(st cache.SourceState, rec *accountRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	st.ID = a.stateID
	st.SyncToken = string(b)
	return a.opts.Store.PutSource(st)
}

// Discover lists the calendar collections of the account: the
// current-user-principal of the URL (after /.well-known/caldav if the URL
// has no path, RFC 6764 §6), its calendar-home-set, and the calendar
// collections in each home (Depth 1). Other collections (address books,
// scheduling inboxes) are left out. Errors wrap ErrUnavailable when a
// later try may help.
func (a *Account) Discover(ctx context.Context) ([]Discovered, error) {
	if a.err != nil {
		return nil, a.err
	}
	start, err := a.contextURL(ctx)
	if err != nil {
		return nil, err
	}
	const body = `<?xml version="1.0" encoding="utf-8"?>` +
		`<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">` +
		`<d:prop><d:current-user-principal/><c:calendar-home-set/></d:prop></d:propfind>`
	r, err := a.propfind(ctx, a.dav, start, "0", body)
	if err != nil {
		return nil, err
	}
	homes, err := a.hrefs(ctx, start, r.props(start).Home)
	if err != nil {
		return nil, err
	}
	if len(homes) == 0 {
		principals, err := a.hrefs(ctx, start, r.props(start).Principal)
		if err != nil {
			return nil, err
		}
		if len(principals) == 0 {
			return nil, fmt.Errorf("caldav: account %s: %s names no current-user-principal (is it a CalDAV server, and are the credentials right?)", a.stateID, start.Redacted())
		}
		p := principals[0]
		r, err := a.propfind(ctx, a.dav, p, "0", body)
		if err != nil {
			return nil, err
		}
		if homes, err = a.hrefs(ctx, p, r.props(p).Home); err != nil {
			return nil, err
		}
		if len(homes) == 0 {
			return nil, fmt.Errorf("caldav: account %s: principal %s has no calendar-home-set", a.stateID, p.Redacted())
		}
	}

	const listBody = `<?xml version="1.0" encoding="utf-8"?>` +
		`<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:a="http://apple.com/ns/ical/">` +
		`<d:prop><d:resourcetype/><d:displayname/><a:calendar-color/><c:calendar-description/>` +
		`<c:supported-calendar-component-set/></d:prop></d:propfind>`
	var out []Discovered
	seen := map[string]bool{}
	for _, home := range homes {
		ms, err := a.propfind(ctx, a.dav, home, "1", listBody)
		if err != nil {
			return nil, err
		}
		for _, resp := range ms.Responses {
			if resp.Status != "" && parseStatus(resp.Status)/100 != 2 {
				continue
			}
			u, err := home.Parse(strings.TrimSpace(resp.Href))
			if err != nil {
				a.log.Warn("account: bad href in the calendar home", "href", resp.Href, "err", err)
				continue
			}
			if !strings.HasSuffix(u.Path, "/") {
				u.Path += "/"
				u.RawPath = ""
			}
			if hrefKey(u.Path) == hrefKey(home.Path) && u.Host == home.Host {
				continue // the home itself
			}
			p := resp.props()
			if !p.isCalendar() {
				continue
			}
			if err := a.checkHop(ctx, home, u); err != nil {
				a.log.Warn("account: calendar refused", "href", u.Redacted(), "err", err)
				continue
			}
			comps := p.components()
			if len(comps) == 0 {
				a.log.Debug("account: calendar without events, tasks or journals skipped", "href", u.Redacted())
				continue
			}
			if seen[u.String()] {
				continue
			}
			seen[u.String()] = true
			out = append(out, Discovered{
				Href:        u.String(),
				DisplayName: strings.TrimSpace(p.DisplayName),
				Color:       strings.TrimSpace(p.Color),
				Description: p.Description,
				Components:  comps,
			})
		}
	}
	calendarIDs(a.opts.ID, out)
	sort.Slice(out, func(i, j int) bool { return out[i].Calendar < out[j].Calendar })
	return out, nil
}

// contextURL returns the URL whose current-user-principal discovery
// reads: the account URL, or for a URL without a path the target of
// /.well-known/caldav (RFC 6764 §5), following its redirects by hand (a
// client turns a redirected PROPFIND into a GET) under the same rules as
// the HTTP client. A server without the well-known URI is asked at the
// URL itself.
func (a *Account) contextURL(ctx context.Context) (*url.URL, error) {
	if a.base.Path != "" && a.base.Path != "/" {
		return a.base, nil
	}
	root := *a.base
	root.Path, root.RawPath = "/", ""
	const body = `<?xml version="1.0" encoding="utf-8"?>` +
		`<d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/></d:prop></d:propfind>`
	cur, _ := a.base.Parse("/.well-known/caldav")
	hdr := http.Header{"Content-Type": {"application/xml; charset=utf-8"}, "Depth": {"0"}}
	for hop := 0; ; hop++ {
		resp, _, err := a.davNR.request(ctx, "PROPFIND", cur.String(), hdr, []byte(body))
		var se *davStatusError
		switch {
		case errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusUnauthorized && se.Code != http.StatusTooManyRequests && se.Code != http.StatusRequestTimeout:
			return &root, nil // no well-known URI: ask the server's root
		case err != nil:
			return nil, err
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc := resp.Header.Get("Location")
			if loc == "" || hop >= maxDiscoveryHops {
				return &root, nil
			}
			next, err := cur.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("caldav: account %s: bad redirect from %s: %v", a.stateID, cur.Redacted(), err)
			}
			if err := a.checkHop(ctx, cur, next); err != nil {
				return nil, err
			}
			cur = next
		default:
			return cur, nil // answered at the well-known URI itself
		}
	}
}

// checkHop applies the HTTP client's redirect rules (never from https to
// http, never from a public address to a local one) to a step of
// discovery from one URL to another: hrefs come from the server as
// redirects do.
func (a *Account) checkHop(ctx context.Context, from, to *url.URL) error {
	if from.Host == to.Host && from.Scheme == to.Scheme {
		return nil
	}
	prev, err := http.NewRequestWithContext(ctx, "PROPFIND", from.String(), nil)
	if err != nil {
		return err
	}
	next, err := http.NewRequestWithContext(ctx, "PROPFIND", to.String(), nil)
	if err != nil {
		return err
	}
	return checkRedirect(next, []*http.Request{prev}, maxDiscoveryHops+1)
}

// hrefs resolves the hrefs of a property against base, applying
// checkHop to each.
func (a *Account) hrefs(ctx context.Context, base *url.URL, h *davHrefs) ([]*url.URL, error) {
	if h == nil {
		return nil, nil
	}
	var out []*url.URL
	for _, s := range h.Hrefs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := base.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("caldav: account %s: bad href %q: %v", a.stateID, s, err)
		}
		if err := a.checkHop(ctx, base, u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// propfind sends a PROPFIND and parses the 207 answer.
func (a *Account) propfind(ctx context.Context, via *CalDAVSource, target *url.URL, depth, body string) (discoveryMultistatus, error) {
	hdr := http.Header{"Content-Type": {"application/xml; charset=utf-8"}, "Depth": {depth}}
	resp, data, err := via.request(ctx, "PROPFIND", target.String(), hdr, []byte(body))
	if err != nil {
		return discoveryMultistatus{}, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return discoveryMultistatus{}, fmt.Errorf("caldav: PROPFIND %s: want 207 Multi-Status, got %s", target.Redacted(), resp.Status)
	}
	var ms discoveryMultistatus
	if err := xml.Unmarshal(data, &ms); err != nil {
		return discoveryMultistatus{}, fmt.Errorf("caldav: PROPFIND %s: bad multistatus XML: %w", target.Redacted(), err)
	}
	return ms, nil
}

// calendarIDs sets the Calendar of each discovered collection to
// "<account>-<name>", where name is the last segment of its path with
// every character outside [A-Za-z0-9._-] replaced by '_'. When two
// collections come to the same id, the one whose name needed no change
// (else the first by URL) keeps it and the others get "-" and 8 hex
// digits of the SHA-256 of their URL appended, so that ids stay stable
// across discoveries.
func calendarIDs(account string, ds []Discovered) {
	type cand struct {
		i     int
		clean bool
	}
	groups := map[string][]cand{}
	for i := range ds {
		raw := path.Base(strings.TrimSuffix(mustPath(ds[i].Href), "/"))
		name := sanitizeName(raw)
		ds[i].Calendar = account + "-" + name
		groups[ds[i].Calendar] = append(groups[ds[i].Calendar], cand{i, name == raw})
	}
	for _, g := range groups {
		if len(g) < 2 {
			continue
		}
		sort.Slice(g, func(x, y int) bool {
			if g[x].clean != g[y].clean {
				return g[x].clean
			}
			return ds[g[x].i].Href < ds[g[y].i].Href
		})
		for _, c := range g[1:] {
			sum := sha256.Sum256([]byte(ds[c.i].Href))
			ds[c.i].Calendar += "-" + hex.EncodeToString(sum[:4])
		}
	}
}

// sanitizeName replaces every character of s outside [A-Za-z0-9._-] by
// '_' (one per character, not per byte).
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// mustPath returns the unescaped path of an absolute URL ("" if bad).
func mustPath(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Path
}

// discoveryMultistatus is a DAV:multistatus (RFC 4918 §14.16) reduced to
// the properties discovery reads.
type discoveryMultistatus struct {
	XMLName   xml.Name            `xml:"DAV: multistatus"`
	Responses []discoveryResponse `xml:"DAV: response"`
}

// discoveryResponse is one DAV:response (RFC 4918 §14.24).
type discoveryResponse struct {
	Href      string              `xml:"DAV: href"`
	Status    string              `xml:"DAV: status"`
	Propstats []discoveryPropstat `xml:"DAV: propstat"`
}

// discoveryPropstat is one DAV:propstat (RFC 4918 §14.22).
type discoveryPropstat struct {
	Status string        `xml:"DAV: status"`
	Prop   discoveryProp `xml:"DAV: prop"`
}

// discoveryProp holds the properties of discovery: current-user-principal
// (RFC 5397 §3), calendar-home-set (RFC 4791 §6.2.1), resourcetype (RFC
// 4918 §15.9), displayname (§15.2), calendar-description (RFC 4791
// §5.2.1), supported-calendar-component-set (§5.2.3) and Apple's
// calendar-color.
type discoveryProp struct {
	Principal    *davHrefs     `xml:"DAV: current-user-principal"`
	Home         *davHrefs     `xml:"urn:ietf:params:xml:ns:caldav calendar-home-set"`
	ResourceType *davAnyChilds `xml:"DAV: resourcetype"`
	DisplayName  string        `xml:"DAV: displayname"`
	Description  string        `xml:"urn:ietf:params:xml:ns:caldav calendar-description"`
	Color        string        `xml:"http://apple.com/ns/ical/ calendar-color"`
	Components   *davComps     `xml:"urn:ietf:params:xml:ns:caldav supported-calendar-component-set"`
}

// davHrefs is a property whose value is DAV:href elements.
type davHrefs struct {
	Hrefs []string `xml:"DAV: href"`
}

// davAnyChilds records the names of an element's children.
type davAnyChilds struct {
	Children []struct {
		XMLName xml.Name
	} `xml:",any"`
}

// davComps is a supported-calendar-component-set.
type davComps struct {
	Comps []struct {
		Name string `xml:"name,attr"`
	} `xml:"urn:ietf:params:xml:ns:caldav comp"`
}

// props merges the properties of the 2xx propstats of the response for
// target (or of the only response).
func (ms discoveryMultistatus) props(target *url.URL) discoveryProp {
	for _, r := range ms.Responses {
		if len(ms.Responses) == 1 || hrefKey(r.Href) == hrefKey(target.Path) {
			return r.props()
		}
	}
	return discoveryProp{}
}

// props merges the properties of the response's 2xx propstats.
func (r discoveryResponse) props() discoveryProp {
	var out discoveryProp
	for _, ps := range r.Propstats {
		if code := parseStatus(ps.Status); code != 0 && code/100 != 2 {
			continue
		}
		p := ps.Prop
		if p.Principal != nil {
			out.Principal = p.Principal
		}
		if p.Home != nil {
			out.Home = p.Home
		}
		if p.ResourceType != nil {
			out.ResourceType = p.ResourceType
		}
		if p.DisplayName != "" {
			out.DisplayName = p.DisplayName
		}
		if p.Description != "" {
			out.Description = p.Description
		}
		if p.Color != "" {
			out.Color = p.Color
		}
		if p.Components != nil {
			out.Components = p.Components
		}
	}
	return out
}

// isCalendar reports whether resourcetype has CALDAV:calendar.
func (p discoveryProp) isCalendar() bool {
	if p.ResourceType == nil {
		return false
	}
	for _, c := range p.ResourceType.Children {
		if c.XMLName.Space == "urn:ietf:params:xml:ns:caldav" && c.XMLName.Local == "calendar" {
			return true
		}
	}
	return false
}

// components returns the supported component types calgate can hold, in
// a fixed order; all of them when the server names none (RFC 4791 §5.2.3:
// absent means any).
func (p discoveryProp) components() []string {
	if p.Components == nil || len(p.Components.Comps) == 0 {
		return append([]string(nil), accountKnownComponents...)
	}
	var out []string
	for _, k := range accountKnownComponents {
		for _, c := range p.Components.Comps {
			if strings.EqualFold(strings.TrimSpace(c.Name), k) {
				out = append(out, k)
				break
			}
		}
	}
	return out
}
