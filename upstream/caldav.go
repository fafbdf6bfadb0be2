package upstream

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// Conflict policies of a CalDAV source (CalDAVOptions.Conflict).
const (
	ConflictUpstreamWins = "upstream-wins"
	ConflictLocalWins    = "local-wins"
)

const (
	// multigetBatch is the most hrefs asked for in one calendar-multiget.
	multigetBatch = 100
	// maxSyncRounds bounds the sync-collection REPORTs of one sync (a
	// server truncating with 507 is asked again from its new token).
	maxSyncRounds = 1000
	// defaultCalDAVMaxBytes caps one response body. A multiget of 100
	// objects is the largest answer calgate asks for.
	defaultCalDAVMaxBytes = 64 << 20
)

// CalDAVOptions configure a CalDAV source.
type CalDAVOptions struct {
	// ID is the source id, the key of its stored state.
	ID string
	// User and Calendar name the local calendar (Kind "caldav") that
	// mirrors the upstream collection.
	User, Calendar string
	// URL is the upstream calendar collection.
	URL string
	// Username and Password are sent with Basic authentication when
	// Username is not empty.
	Username, Password string
	// Client sends every request. Default: a client with a 2m timeout
	// (main passes the one from NewHTTPClient).
	Client *http.Client
	// Store holds the mirrored calendar, the source state and the outbox.
	Store *cache.Store
	// Zones resolves time zones to compute object spans. Default: an
	// empty set (the system's tz database only).
	Zones *ical.Zones
	// Conflict decides a write changed on both sides: "upstream-wins"
	// (the default) or "local-wins". Either way the loser is recorded.
	Conflict string
	// MaxBytes caps one response body. Default: 64 MiB.
	MaxBytes int64
	// DisableSyncCollection makes the source ignore an advertised
	// sync-collection REPORT and use the ctag and etag diff instead (for
	// tests, and for servers whose sync-collection is broken).
	DisableSyncCollection bool
	// Logger receives sync summaries and upstream trouble. Nil: silent.
	Logger *slog.Logger
}

// CalDAVSource mirrors one upstream CalDAV calendar collection into a
// local calendar and pushes the local writes back (RFC 4791, RFC 6578).
type CalDAVSource struct {
	// read only after NewCalDAV - no locking needed
	opts  CalDAVOptions
	coll  *url.URL // the collection URL, with a trailing slash
	err   error    // a bad URL, reported by Sync and Push
	log   *slog.Logger
	store *cache.Store
	zones *ical.Zones

	mu     sync.Mutex        // protects pushed and sent
	pushed map[string]string // name -> upstream ETag of calgate's last write of it
	// sent holds, by name, the writes sent since the last one that was
	// answered: a write whose reply was lost may have been carried out.
	sent map[string]*sentWrites
}

var (
	_ Source = (*CalDAVSource)(nil)
	_ Writer = (*CalDAVSource)(nil)
)

// NewCalDAV returns a CalDAV source. A malformed URL is reported by every
// Sync and Push.
func NewCalDAV(opts CalDAVOptions) *CalDAVSource {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 2 * time.Minute}
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
	if opts.Zones == nil {
		opts.Zones = &ical.Zones{}
	}
	s := &CalDAVSource{
		opts:   opts,
		log:    opts.Logger.With("source", opts.ID),
		store:  opts.Store,
		zones:  opts.Zones,
		pushed: map[string]string{},
		sent:   map[string]*sentWrites{},
	}
	u, err := parseUpstreamURL("source "+opts.ID, opts.URL, opts.Conflict)
	if err != nil {
		s.err = err
	} else {
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
			u.RawPath = ""
		}
		s.coll = u
	}
	return s
}

// ID returns the source id.
func (s *CalDAVSource) ID() string { return s.opts.ID }

// collState is what a Depth 0 PROPFIND says about the collection.
type collState struct {
	CTag, SyncToken string
	SyncCollection  bool // sync-collection is in the supported-report-set
}

// member is one member resource of the upstream collection.
type member struct {
	Href string // as stored: see hrefOf
	Name string // local resource name
	ETag string // unquoted (see unquoteETag)
}

// Sync brings the local calendar up to date with the upstream collection
// once: sync-collection from the stored token if the server supports it
// (an invalid token restarts from scratch), otherwise a ctag short-cut
// and a Depth 1 getetag diff. Changed objects are fetched with
// calendar-multiget; objects that cannot be stored are quarantined in the
// source state. Changes and the new state are written in one
// transaction. Errors wrap ErrUnavailable when a later try may help.
func (s *CalDAVSource) Sync(ctx context.Context) (Result, error) {
	if s.err != nil {
		return Result{}, s.err
	}
	st, err := s.store.GetSource(s.opts.ID)
	if errors.Is(err, cache.ErrNotFound) {
		st, err = cache.SourceState{ID: s.opts.ID}, nil
	}
	if err != nil {
		return Result{}, err
	}
	// The local snapshot is taken before the upstream is listed: an
	// object pushed meanwhile still has no UpstreamHref in it, so it
	// cannot be mistaken for one deleted upstream.
	local, err := s.store.ListObjects(s.opts.User, s.opts.Calendar)
	if err != nil {
		return Result{}, err
	}
	byName := make(map[string]cache.Object, len(local))
	for _, o := range local {
		byName[o.Name] = o
	}

	cs, err := s.propfindCollection(ctx)
	if err != nil {
		return Result{}, err
	}
	useSync := cs.SyncCollection && !s.opts.DisableSyncCollection
	newState := st
	newState.CTag = cs.CTag
	if !useSync {
		newState.SyncToken = ""
	}
	if st.HeldDeletes == 0 && len(st.Quarantine) == 0 &&
		(useSync && cs.SyncToken != "" && cs.SyncToken == st.SyncToken ||
			!useSync && cs.CTag != "" && cs.CTag == st.CTag) {
		s.succeeded(&newState)
		if err := s.store.PutSource(newState); err != nil {
			return Result{}, err
		}
		s.log.Debug("caldav sync: not modified")
		return Result{NotModified: true}, nil
	}

	var (
		present []member
		gone    []string // names deleted upstream (incremental sync)
		full    bool     // present lists every member
		quar    []string
	)
	if useSync {
		var token string
		present, gone, token, full, quar, err = s.syncCollection(ctx, st.SyncToken)
		if err != nil {
			return Result{}, err
		}
		newState.SyncToken = token
	} else {
		present, quar, err = s.listMembers(ctx)
		if err != nil {
			return Result{}, err
		}
		full = true
	}

	if !full {
		// An incremental sync does not list the quarantined objects
		// again: fetch them anyway, so that an object refused for a
		// local reason (a UID in use) gets in once that is gone.
		seen := make(map[string]bool, len(present)+len(gone))
		for _, m := range present {
			seen[hrefKey(m.Href)] = true
		}
		for _, name := range gone {
			seen[hrefKey(s.hrefOf(name))] = true
		}
		for _, q := range quar {
			h, _, _ := strings.Cut(q, ": ")
			seen[hrefKey(h)] = true
		}
		for _, q := range st.Quarantine {
			h, _, _ := strings.Cut(q, ": ")
			if seen[hrefKey(h)] {
				continue
			}
			seen[hrefKey(h)] = true
			if name, href, err := s.memberName(h); err == nil {
				present = append(present, member{Href: href, Name: name})
			} else {
				quar = append(quar, q) // never a member: keep it visible
			}
		}
	}

	// Decide what to fetch and what to delete.
	var (
		res       Result
		fetch     []member
		deletes   []string
		listed    = make(map[string]bool, len(present))
		hrefNames = make(map[string]string)
	)
	for _, m := range present {
		listed[m.Name] = true
		hrefNames[m.Name] = m.Href
		o, ok := byName[m.Name]
		if ok && m.ETag != "" && hrefKey(o.UpstreamHref) == hrefKey(m.Href) && unquoteETag(o.UpstreamETag) == m.ETag {
			res.Unchanged++ // includes calgate's own pushes, which the server may have re-serialised
			continue
		}
		fetch = append(fetch, m)
	}
	if full {
		for _, o := range local {
			if o.UpstreamHref != "" && !listed[o.Name] {
				deletes = append(deletes, o.Name)
			}
		}
	} else {
		for _, name := range gone {
			if o, ok := byName[name]; ok && !listed[name] && o.UpstreamHref != "" {
				deletes = append(deletes, name)
			}
		}
	}

	changes, fq, err := s.fetch(ctx, fetch)
	if err != nil {
		return Result{}, err
	}
	quar = append(quar, fq...)

	// Mass-delete guard: more than max(10, half) of the calendar at once
	// is held until the next sync sees the same.
	if holdMassDelete(len(deletes), len(local), st, &newState, &res) {
		s.log.Warn("caldav sync: holding mass deletion until the next sync confirms it", "deletes", len(deletes), "objects", len(local))
		newState.SyncToken, newState.CTag = st.SyncToken, st.CTag
		deletes = nil
	}
	changes = append(changes, deleteChanges(deletes)...)

	// Every quarantined object was fetched again above: the list is
	// rebuilt by every sync.
	newState.Quarantine = quar
	s.succeeded(&newState)
	if res.HeldDeletes > 0 {
		newState.LastError = heldDeletesNote(res.HeldDeletes, len(local))
	}

	ar, err := s.store.ApplyUpstream(s.opts.User, s.opts.Calendar, changes, false, newState)
	if err != nil {
		return Result{}, err
	}
	if len(ar.UIDConflicts) > 0 {
		for _, name := range ar.UIDConflicts {
			newState.Quarantine = append(newState.Quarantine, fmt.Sprintf("%s: its UID is already used by another object of the calendar", hrefNames[name]))
		}
		if err := s.store.PutSource(newState); err != nil {
			return Result{}, err
		}
	}
	res.Put += ar.Put
	res.Deleted += ar.Deleted
	res.Unchanged += ar.Unchanged
	res.Quarantined = len(newState.Quarantine)
	for _, q := range newState.Quarantine {
		s.log.Warn("caldav sync: upstream object quarantined", "item", q)
	}
	s.log.Info("caldav sync", "put", res.Put, "deleted", res.Deleted, "unchanged", res.Unchanged,
		"skipped", len(ar.Skipped), "quarantined", res.Quarantined, "held_deletes", res.HeldDeletes, "full", full)
	return res, nil
}

// succeeded marks st as synced now.
func (s *CalDAVSource) succeeded(st *cache.SourceState) {
	now := time.Now().UTC()
	st.ID = s.opts.ID
	st.LastAttempt, st.LastSuccess = now, now
	st.LastError, st.Failures = "", 0
}

// propfindCollection reads getctag, sync-token and supported-report-set
// of the collection.
func (s *CalDAVSource) propfindCollection(ctx context.Context) (collState, error) {
	const body = `<?xml version="1.0" encoding="utf-8"?>` +
		`<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">` +
		`<d:prop><cs:getctag/><d:sync-token/><d:supported-report-set/></d:prop></d:propfind>`
	ms, err := s.multistatus(ctx, "PROPFIND", s.coll.String(), "0", body)
	if err != nil {
		return collState{}, err
	}
	var cs collState
	for _, r := range ms.Responses {
		if hrefKey(r.Href) != hrefKey(s.coll.Path) && len(ms.Responses) > 1 {
			continue
		}
		cs.CTag = r.CTag
		cs.SyncToken = r.SyncToken
		for _, name := range r.Reports {
			if name == "sync-collection" {
				cs.SyncCollection = true
			}
		}
	}
	return cs, nil
}

// errBadToken is how syncCollection learns that the server refused the
// stored token.
var errBadToken = errors.New("caldav: sync token refused")

// syncCollection runs sync-collection REPORTs from token until the server
// stops truncating. It returns the members that changed, the names
// deleted, the new token, and full=true when it had to start from the
// empty token (so present lists every member).
func (s *CalDAVSource) syncCollection(ctx context.Context, token string) (present []member, gone []string, newToken string, full bool, quar []string, err error) {
	full = token == ""
	present, gone, newToken, quar, err = s.syncRounds(ctx, token)
	if errors.Is(err, errBadToken) && token != "" {
		s.log.Warn("caldav sync: upstream refused the sync token; full resync", "err", err)
		full = true
		present, gone, newToken, quar, err = s.syncRounds(ctx, "")
	}
	if errors.Is(err, errBadToken) {
		// Refused even from scratch: this is the server's real answer.
		err = errors.Unwrap(err)
	}
	return present, gone, newToken, full, quar, err
}

func (s *CalDAVSource) syncRounds(ctx context.Context, token string) (present []member, gone []string, newToken string, quar []string, err error) {
	seen := map[string]int{} // name -> index in present, so a later round wins
	for round := 0; ; round++ {
		if round == maxSyncRounds {
			return nil, nil, "", nil, fmt.Errorf("caldav: sync-collection still truncated after %d rounds", maxSyncRounds)
		}
		body := `<?xml version="1.0" encoding="utf-8"?>` +
			`<d:sync-collection xmlns:d="DAV:"><d:sync-token>` + xmlEscape(token) + `</d:sync-token>` +
			`<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
		ms, err := s.multistatus(ctx, "REPORT", s.coll.String(), "1", body)
		if err != nil {
			var se *davStatusError
			// RFC 6578 §3.2 says 403 or 409 with DAV:valid-sync-token;
			// Radicale answers 403, Xandikos 0.2 a 500, others 400, 404
			// or 412. Any refusal of a non-empty token is retried once
			// from scratch, and that answer stands.
			if token != "" && errors.As(err, &se) && se.Code >= 400 {
				return nil, nil, "", nil, fmt.Errorf("%w: %w", errBadToken, err)
			}
			return nil, nil, "", nil, err
		}
		truncated := false
		for _, r := range ms.Responses {
			if r.Status == http.StatusInsufficientStorage {
				if hrefKey(r.Href) == hrefKey(s.coll.Path) {
					truncated = true
				}
				continue
			}
			if hrefKey(r.Href) == hrefKey(s.coll.Path) {
				continue
			}
			name, href, err := s.memberName(r.Href)
			if err != nil {
				quar = append(quar, fmt.Sprintf("%s: %v", r.Href, err))
				continue
			}
			if r.Status == http.StatusNotFound || r.Status == http.StatusGone {
				gone = append(gone, name)
				if i, ok := seen[name]; ok {
					present[i].Name = "" // deleted in a later round
				}
				continue
			}
			m := member{Href: href, Name: name, ETag: unquoteETag(r.ETag)}
			if i, ok := seen[name]; ok {
				present[i] = m
			} else {
				seen[name] = len(present)
				present = append(present, m)
			}
		}
		if ms.SyncToken == "" {
			return nil, nil, "", nil, errors.New("caldav: sync-collection answer without a sync-token")
		}
		token = ms.SyncToken
		if !truncated || len(ms.Responses) == 0 {
			break
		}
	}
	out := present[:0]
	for _, m := range present {
		if m.Name != "" {
			out = append(out, m)
		}
	}
	return out, gone, token, quar, nil
}

// listMembers lists the collection's members and their ETags with a
// Depth 1 PROPFIND.
func (s *CalDAVSource) listMembers(ctx context.Context) ([]member, []string, error) {
	const body = `<?xml version="1.0" encoding="utf-8"?>` +
		`<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>`
	ms, err := s.multistatus(ctx, "PROPFIND", s.coll.String(), "1", body)
	if err != nil {
		return nil, nil, err
	}
	var (
		out  []member
		quar []string
	)
	for _, r := range ms.Responses {
		if hrefKey(r.Href) == hrefKey(s.coll.Path) || r.Collection || r.Status >= 300 {
			continue
		}
		name, href, err := s.memberName(r.Href)
		if err != nil {
			quar = append(quar, fmt.Sprintf("%s: %v", r.Href, err))
			continue
		}
		out = append(out, member{Href: href, Name: name, ETag: unquoteETag(r.ETag)})
	}
	return out, quar, nil
}

// fetch downloads the members with calendar-multiget in batches (falling
// back to GET for what a multiget did not return) and turns them into
// changes. Objects that cannot be stored are returned as quarantine
// entries.
func (s *CalDAVSource) fetch(ctx context.Context, ms []member) ([]cache.UpstreamChange, []string, error) {
	var (
		changes []cache.UpstreamChange
		quar    []string
	)
	add := func(m member, etag string, data []byte) {
		if etag == "" {
			etag = m.ETag
		}
		obj, err := s.objectFrom(m.Name, m.Href, etag, data)
		if err != nil {
			quar = append(quar, fmt.Sprintf("%s: %v", m.Href, err))
			return
		}
		changes = append(changes, cache.UpstreamChange{Object: obj})
	}
	for len(ms) > 0 {
		batch := ms[:min(len(ms), multigetBatch)]
		ms = ms[len(batch):]
		got, err := s.multiget(ctx, batch)
		if err != nil {
			return nil, nil, err
		}
		for _, m := range batch {
			if r, ok := got[hrefKey(m.Href)]; ok {
				if r.Status == http.StatusNotFound {
					continue // deleted since it was listed; the next sync says so
				}
				if r.HasData {
					add(m, unquoteETag(r.ETag), r.Data)
					continue
				}
			}
			data, etag, found, err := s.get(ctx, s.resolve(m.Href))
			if err != nil {
				var se *davStatusError
				if errors.As(err, &se) && !errors.Is(err, ErrUnavailable) {
					quar = append(quar, fmt.Sprintf("%s: %v", m.Href, err))
					continue
				}
				return nil, nil, err
			}
			if found {
				add(m, etag, data)
			}
		}
	}
	return changes, quar, nil
}

// multiget fetches a batch of members with one calendar-multiget REPORT
// (RFC 4791 §7.9) and returns the answers by hrefKey. A server that
// refuses the REPORT gets an empty answer (the caller then uses GET).
func (s *CalDAVSource) multiget(ctx context.Context, batch []member) (map[string]davResponse, error) {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` +
		`<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">` +
		`<d:prop><d:getetag/><c:calendar-data/></d:prop>`)
	for _, m := range batch {
		b.WriteString("<d:href>" + xmlEscape(m.Href) + "</d:href>")
	}
	b.WriteString(`</c:calendar-multiget>`)
	ms, err := s.multistatus(ctx, "REPORT", s.coll.String(), "1", b.String())
	var se *davStatusError
	if errors.As(err, &se) && !errors.Is(err, ErrUnavailable) && se.Code != http.StatusUnauthorized {
		s.log.Warn("caldav sync: calendar-multiget refused; fetching one by one", "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]davResponse, len(ms.Responses))
	for _, r := range ms.Responses {
		out[hrefKey(r.Href)] = r
	}
	return out, nil
}

// objectFrom checks the bytes of an upstream object and describes them
// for the store.
func (s *CalDAVSource) objectFrom(name, href, etag string, data []byte) (cache.Object, error) {
	cal, err := ical.Parse(data)
	if err != nil {
		return cache.Object{}, err
	}
	info, err := s.zones.Inspect(cal)
	if err != nil {
		return cache.Object{}, err
	}
	return cache.Object{
		Name:         name,
		UID:          info.UID,
		Component:    info.Component,
		Start:        info.Start,
		End:          info.End,
		Exact:        info.Exact,
		Warnings:     info.Warnings,
		Data:         data,
		UpstreamHref: href,
		UpstreamETag: etag,
	}, nil
}

// memberName derives the local resource name of an upstream member from
// its href (the last path segment, unescaped) and returns the href in
// its stored form.
func (s *CalDAVSource) memberName(href string) (name, stored string, err error) {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil {
		return "", "", fmt.Errorf("bad href: %v", err)
	}
	abs := s.coll.ResolveReference(u)
	p := abs.Path
	if strings.HasSuffix(p, "/") {
		return "", "", errors.New("is a collection, not a calendar object")
	}
	if abs.Host != s.coll.Host || path.Dir(p)+"/" != s.coll.Path {
		return "", "", errors.New("is not a member of the collection")
	}
	name = path.Base(p)
	if err := checkName(name); err != nil {
		return "", "", err
	}
	return name, abs.EscapedPath(), nil
}

// checkName reports whether name can be a local resource name.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("resource name %q is not usable", name)
	case len(name) > 255:
		return errors.New("resource name longer than 255 bytes")
	case strings.ContainsAny(name, "/\\"):
		return fmt.Errorf("resource name %q contains a slash", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("resource name %q contains a control character", name)
	}
	return nil
}

// hrefOf returns the stored href of the member called name.
func (s *CalDAVSource) hrefOf(name string) string {
	return s.coll.EscapedPath() + url.PathEscape(name)
}

// resolve turns a stored href into an absolute URL.
func (s *CalDAVSource) resolve(href string) string {
	u, err := url.Parse(href)
	if err != nil {
		return href
	}
	return s.coll.ResolveReference(u).String()
}

// hrefKey is the form in which hrefs are compared: the unescaped path.
func hrefKey(href string) string {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil {
		return href
	}
	return strings.TrimSuffix(u.Path, "/")
}

// unquoteETag stores an ETag as the spec of cache.Object says: a strong
// "x" becomes x; a weak W/"x" is kept as given.
func unquoteETag(e string) string {
	e = strings.TrimSpace(e)
	if len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
		return e[1 : len(e)-1]
	}
	return e
}

// quoteETag makes a stored ETag an entity-tag for If-Match again.
func quoteETag(e string) string {
	if strings.HasPrefix(e, "W/") || strings.HasPrefix(e, `"`) {
		return e
	}
	return `"` + e + `"`
}

// davStatusError is an upstream answer with an unexpected status.
type davStatusError struct {
	Code int
	Err  error // from statusError: wraps ErrUnavailable when transient
}

func (e *davStatusError) Error() string { return e.Err.Error() }
func (e *davStatusError) Unwrap() error { return e.Err }

// classify turns the outcome of one upstream request into calgate's
// errors, in one place: transport failures, 5xx, 408 and 429 wrap
// ErrUnavailable (a Retry-After gives a *RetryAfterError); 401 and 403
// say to check the credentials; other 4xx are permanent. A 2xx or 3xx
// answer is not an error. The error is a *davStatusError when the server
// answered.
func (s *CalDAVSource) classify(resp *http.Response, err error, what string) error {
	if err != nil {
		return networkError(err, "caldav: "+what)
	}
	if serr := statusError(resp, "caldav: "+what); serr != nil {
		return &davStatusError{Code: resp.StatusCode, Err: serr}
	}
	return nil
}

// request sends one request with the source's credentials and returns
// the response with its body read (up to MaxBytes). Errors are from
// classify, except that the statuses in ok are returned without error.
func (s *CalDAVSource) request(ctx context.Context, method, target string, hdr http.Header, body []byte, ok ...int) (*http.Response, []byte, error) {
	what := method + " " + redact(target)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("caldav: %s: %w", what, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "calgate")
	if s.opts.Username != "" {
		req.SetBasicAuth(s.opts.Username, s.opts.Password)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return nil, nil, s.classify(nil, err, what)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxBytes+1))
	if err != nil {
		return nil, nil, s.classify(nil, err, what)
	}
	if int64(len(data)) > s.opts.MaxBytes {
		return nil, nil, fmt.Errorf("caldav: %s: response larger than %d bytes", what, s.opts.MaxBytes)
	}
	for _, c := range ok {
		if resp.StatusCode == c {
			return resp, data, nil
		}
	}
	if err := s.classify(resp, nil, what); err != nil {
		s.log.Debug("caldav request failed", "method", method, "url", redact(target), "status", resp.StatusCode, "body", snippet(data))
		return resp, data, err
	}
	return resp, data, nil
}

// multistatus sends a PROPFIND or REPORT and parses the 207 answer.
func (s *CalDAVSource) multistatus(ctx context.Context, method, target, depth, body string) (davMultistatus, error) {
	hdr := http.Header{"Content-Type": {"application/xml; charset=utf-8"}, "Depth": {depth}}
	resp, data, err := s.request(ctx, method, target, hdr, []byte(body))
	if err != nil {
		return davMultistatus{}, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return davMultistatus{}, fmt.Errorf("caldav: %s %s: want 207 Multi-Status, got %s", method, redact(target), resp.Status)
	}
	ms, err := parseMultistatus(data)
	if err != nil {
		return davMultistatus{}, fmt.Errorf("caldav: %s %s: %w", method, redact(target), err)
	}
	return ms, nil
}

// get fetches one object. found is false on 404 or 410. The ETag comes
// from the response, else from a PROPFIND.
func (s *CalDAVSource) get(ctx context.Context, target string) (data []byte, etag string, found bool, err error) {
	resp, data, err := s.request(ctx, http.MethodGet, target, http.Header{"Accept": {"text/calendar"}}, nil, http.StatusNotFound, http.StatusGone)
	if err != nil {
		return nil, "", false, err
	}
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		return nil, "", false, nil
	}
	etag = unquoteETag(resp.Header.Get("ETag"))
	if etag == "" {
		if etag, err = s.getETag(ctx, target); err != nil {
			return nil, "", false, err
		}
	}
	return data, etag, true, nil
}

// getETag reads the getetag of one resource with a Depth 0 PROPFIND.
func (s *CalDAVSource) getETag(ctx context.Context, target string) (string, error) {
	const body = `<?xml version="1.0" encoding="utf-8"?>` +
		`<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`
	ms, err := s.multistatus(ctx, "PROPFIND", target, "0", body)
	if err != nil {
		return "", err
	}
	for _, r := range ms.Responses {
		if r.ETag != "" {
			return unquoteETag(r.ETag), nil
		}
	}
	return "", nil
}

// redact drops credentials from a URL for messages.
func redact(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	return u.Redacted()
}

// snippet shortens a response body for a log line.
func snippet(b []byte) string {
	const n = 200
	if len(b) > n {
		b = b[:n]
	}
	// Upstream text ends up in logs and on terminals (calgate status):
	// keep it printable.
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, string(bytes.ToValidUTF8(b, []byte("?"))))
}

// xmlEscape escapes s for XML character data.
func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// davMultistatus is a parsed DAV:multistatus (RFC 4918 §14.16), reduced
// to what a CalDAV source reads.
type davMultistatus struct {
	Responses []davResponse
	SyncToken string // RFC 6578 §6.4: the top-level sync-token
}

// davResponse is one DAV:response; the properties are taken from its 2xx
// propstats.
type davResponse struct {
	Href       string
	Status     int // the response-level status; 0 if it has propstats
	ETag       string
	CTag       string
	SyncToken  string
	Collection bool     // resourcetype has DAV:collection
	Reports    []string // local names of the reports in supported-report-set
	Data       []byte   // calendar-data, byte for byte (CR kept)
	HasData    bool
}

// parseMultistatus parses a multistatus body. encoding/xml turns CRLF
// into LF in character data, so calendar-data is cut out of the raw body
// and unescaped here: calgate stores the bytes the server has.
func parseMultistatus(body []byte) (davMultistatus, error) {
	var (
		ms    davMultistatus
		stack []xml.Name
		text  strings.Builder
		resp  *davResponse
		ps    davResponse // the propstat being read
		psOK  bool
		start int64 // offset of the calendar-data content
	)
	dec := xml.NewDecoder(bytes.NewReader(body))
	parent := func(n int) xml.Name { // n=1: the parent of the current element
		if len(stack) > n {
			return stack[len(stack)-1-n]
		}
		return xml.Name{}
	}
	within := func(local string) bool {
		for _, n := range stack {
			if n.Space == "DAV:" && n.Local == local {
				return true
			}
		}
		return false
	}
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ms, fmt.Errorf("bad multistatus XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name)
			text.Reset()
			switch {
			case t.Name.Space == "DAV:" && t.Name.Local == "response":
				resp = &davResponse{}
			case t.Name.Space == "DAV:" && t.Name.Local == "propstat":
				ps, psOK = davResponse{}, true
			case t.Name.Local == "calendar-data":
				start = dec.InputOffset()
			case t.Name.Space == "DAV:" && t.Name.Local == "collection" && parent(1).Local == "resourcetype":
				ps.Collection = true
			case within("supported-report-set") && !(t.Name.Space == "DAV:" && (t.Name.Local == "supported-report" || t.Name.Local == "report")):
				// Radicale wraps each report in DAV:report as RFC 3253
				// says; Xandikos puts it straight in supported-report.
				ps.Reports = append(ps.Reports, t.Name.Local)
			}
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			name := t.Name
			stack = stack[:len(stack)-1]
			val := strings.TrimSpace(text.String())
			up := xml.Name{}
			if len(stack) > 0 {
				up = stack[len(stack)-1]
			}
			dav := name.Space == "DAV:"
			switch {
			case resp == nil:
				if dav && name.Local == "sync-token" && up.Local == "multistatus" {
					ms.SyncToken = val
				}
			case dav && name.Local == "href" && up.Local == "response":
				resp.Href = val
			case dav && name.Local == "status" && up.Local == "response":
				resp.Status = parseStatus(val)
			case dav && name.Local == "status" && up.Local == "propstat":
				code := parseStatus(val)
				psOK = code >= 200 && code < 300
			case dav && name.Local == "getetag":
				ps.ETag = val
			case name.Local == "getctag":
				ps.CTag = val
			case dav && name.Local == "sync-token":
				ps.SyncToken = val
			case name.Local == "calendar-data":
				data, err := unescapeXMLText(body[start:off])
				if err != nil {
					return ms, fmt.Errorf("calendar-data of %s: %w", resp.Href, err)
				}
				ps.Data, ps.HasData = data, true
			case dav && name.Local == "propstat":
				if psOK {
					mergeProps(resp, &ps)
				}
			case dav && name.Local == "response":
				ms.Responses = append(ms.Responses, *resp)
				resp = nil
			}
			text.Reset()
		}
	}
	return ms, nil
}

// mergeProps copies the properties read in a propstat into r.
func mergeProps(r, ps *davResponse) {
	if ps.ETag != "" {
		r.ETag = ps.ETag
	}
	if ps.CTag != "" {
		r.CTag = ps.CTag
	}
	if ps.SyncToken != "" {
		r.SyncToken = ps.SyncToken
	}
	if ps.HasData {
		r.Data, r.HasData = ps.Data, true
	}
	r.Collection = r.Collection || ps.Collection
	r.Reports = append(r.Reports, ps.Reports...)
}

// parseStatus reads the code of a status line "HTTP/1.1 404 Not Found".
func parseStatus(line string) int {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	code := 0
	for _, c := range f[1] {
		if c < '0' || c > '9' {
			return 0
		}
		code = code*10 + int(c-'0')
	}
	return code
}

// unescapeXMLText decodes the raw character data of an element: entity
// and character references and CDATA sections. Line ends are kept as
// they are (no CRLF normalisation).
func unescapeXMLText(raw []byte) ([]byte, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		switch c := raw[i]; c {
		case '<':
			if !bytes.HasPrefix(raw[i:], []byte("<![CDATA[")) {
				if bytes.HasPrefix(raw[i:], []byte("<!--")) {
					end := bytes.Index(raw[i:], []byte("-->"))
					if end < 0 {
						return nil, errors.New("unterminated comment")
					}
					i += end + 3
					continue
				}
				return nil, errors.New("unexpected element inside calendar-data")
			}
			rest := raw[i+len("<![CDATA["):]
			end := bytes.Index(rest, []byte("]]>"))
			if end < 0 {
				return nil, errors.New("unterminated CDATA section")
			}
			out = append(out, rest[:end]...)
			i += len("<![CDATA[") + end + 3
		case '&':
			end := bytes.IndexByte(raw[i:], ';')
			if end < 0 {
				return nil, errors.New("unterminated character reference")
			}
			ref := string(raw[i+1 : i+end])
			switch {
			case ref == "lt":
				out = append(out, '<')
			case ref == "gt":
				out = append(out, '>')
			case ref == "amp":
				out = append(out, '&')
			case ref == "quot":
				out = append(out, '"')
			case ref == "apos":
				out = append(out, '\'')
			case strings.HasPrefix(ref, "#"):
				var r rune
				var err error
				if strings.HasPrefix(ref, "#x") || strings.HasPrefix(ref, "#X") {
					_, err = fmt.Sscanf(ref[2:], "%x", &r)
				} else {
					_, err = fmt.Sscanf(ref[1:], "%d", &r)
				}
				if err != nil || r < 0 || r > unicode.MaxRune {
					return nil, fmt.Errorf("bad character reference &%s;", ref)
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, fmt.Errorf("unknown entity &%s;", ref)
			}
			i += end + 1
		default:
			out = append(out, c)
			i++
		}
	}
	return out, nil
}
