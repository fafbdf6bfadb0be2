package gateway

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/ical"
)

// The status page (DESIGN.md §2): GET / shows a signed-in user their
// calendars, the health of each upstream, the conflicts with a way to
// resolve them, and the feed links. Everything comes from the store; the
// page makes no upstream call. POST /status/conflicts resolves one
// conflict.

//go:embed templates/status.html
var templateFS embed.FS

// statusTemplates holds the "page" and "message" templates; parsed once,
// read only afterwards.
var statusTemplates = template.Must(template.ParseFS(templateFS, "templates/status.html"))

// Paths of the status page.
const (
	statusPath    = "/"
	statusPrefix  = "/status/"
	resolvePath   = "/status/conflicts"
	rootAllow     = "OPTIONS, GET, HEAD, PROPFIND, REPORT" // "/" is the status page and the DAV root
	maxStatusForm = 64 << 10
)

// colorPattern is the only form of a calendar color used in a style:
// #rgb, #rrggbb or #rrggbbaa.
var colorPattern = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$`)

// isStatusRequest reports whether r is for the status page rather than
// the DAV tree. The bare URL "/" is both: GET and HEAD show the page,
// while PROPFIND, REPORT and OPTIONS answer as the DAV root does, so that
// clients given only the server's address find the principal.
func isStatusRequest(r *http.Request) bool {
	switch p := r.URL.Path; {
	case p == "/status" || strings.HasPrefix(p, statusPrefix):
		return true
	case p == statusPath:
		switch r.Method {
		case "PROPFIND", "REPORT", http.MethodOptions:
			return false
		}
		return true
	}
	return false
}

// statusFeed is a feed as the status page links it.
type statusFeed struct {
	name   string
	tokens []string        // raw, for the links; the feed server keeps hashes only
	users  map[string]bool // users one of whose calendars is a member
}

func newStatusFeeds(feeds []Feed) []statusFeed {
	out := make([]statusFeed, 0, len(feeds))
	for _, f := range feeds {
		sf := statusFeed{name: f.Spec.Name, tokens: slices.Clone(f.Tokens), users: make(map[string]bool)}
		for _, m := range f.Spec.Members {
			sf.users[m.User] = true
		}
		out = append(out, sf)
	}
	return out
}

// newCSRFKey returns the per-process key of the status page's CSRF tokens.
func newCSRFKey() []byte {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand.Read documents it)
	return key
}

// csrfToken is the CSRF token of user's status page forms:
// HMAC-SHA256(per-process key, user). It changes with every restart.
func (h *Handler) csrfToken(user string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte("calgate status form\x00"))
	m.Write([]byte(user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validCSRF compares got with user's token in constant time.
func (h *Handler) validCSRF(user, got string) bool {
	return hmac.Equal([]byte(got), []byte(h.csrfToken(user)))
}

// crossSite returns why r comes from another site, or "" if it does not
// as far as the browser says (requests without Sec-Fetch-Site and Origin
// pass, and the CSRF token decides).
func crossSite(r *http.Request) string {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return "the browser marked it " + s
	}
	// "null" carries no origin: the page's own forms send it, because its
	// Referrer-Policy is no-referrer; Sec-Fetch-Site and the token decide.
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return "it was sent from " + o
		}
	}
	return ""
}

// statusHeaders sets the security headers of every status response. The
// page's only style and script carry nonce.
func statusHeaders(hd http.Header, nonce string) {
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+
		"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
}

// serveStatus answers the status page's requests and returns the
// signed-in user ("" if none).
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) string {
	nonce := rand.Text()
	statusHeaders(w.Header(), nonce)
	if r.URL.Path == statusPath && r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", rootAllow)
		h.statusMessage(w, r, nonce, http.StatusMethodNotAllowed, "Method not allowed",
			fmt.Sprintf("%s is not supported on the status page; open it with GET.", r.Method))
		return ""
	}
	user, err := h.auth.authenticate(r)
	if err != nil {
		status, msg := http.StatusUnauthorized, "Sign in with your calgate user name and password."
		var de *davError
		if errors.As(err, &de) {
			status, msg = de.status, de.msg
		}
		setAuthHeaders(w, status)
		h.statusMessage(w, r, nonce, status, "Sign in", msg)
		return ""
	}
	switch r.URL.Path {
	case statusPath:
		h.statusPage(w, r, user, nonce, http.StatusOK, "")
	case resolvePath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			h.statusMessage(w, r, nonce, http.StatusMethodNotAllowed, "Method not allowed",
				"Conflicts are resolved with the buttons on the status page.")
			return user
		}
		h.resolveFromPage(w, r, user, nonce)
	default:
		h.statusMessage(w, r, nonce, http.StatusNotFound, "Not found", "There is no such page.")
	}
	return user
}

// resolveFromPage handles POST /status/conflicts (fields cal, name, seq,
// etag, keep=mine|upstream, csrf) and redirects to the page (303).
func (h *Handler) resolveFromPage(w http.ResponseWriter, r *http.Request, user, nonce string) {
	r.Body = http.MaxBytesReader(serverWriter(w), r.Body, maxStatusForm)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			status = http.StatusRequestEntityTooLarge
		}
		h.statusMessage(w, r, nonce, status, "Bad request", "The form could not be read; reload the status page and try again.")
		return
	}
	if why := crossSite(r); why != "" {
		h.statusMessage(w, r, nonce, http.StatusForbidden, "Refused",
			"This request was refused because "+why+"; resolve conflicts from calgate's own status page.")
		return
	}
	if !h.validCSRF(user, r.PostForm.Get("csrf")) {
		h.statusMessage(w, r, nonce, http.StatusForbidden, "Refused",
			"This form has expired or did not come from your status page (calgate may have restarted); reload the status page and try again.")
		return
	}
	cal, name := r.PostForm.Get("cal"), r.PostForm.Get("name")
	seq, err := strconv.ParseUint(r.PostForm.Get("seq"), 10, 64)
	_, hasETag := r.PostForm["etag"]
	keep := map[string]string{"mine": cache.KeptLocal, "upstream": cache.KeptUpstream}[r.PostForm.Get("keep")]
	if cal == "" || name == "" || err != nil || !hasETag || keep == "" {
		h.statusMessage(w, r, nonce, http.StatusBadRequest, "Bad request",
			"The form is incomplete (it needs cal, name, seq, etag and keep=mine or keep=upstream); reload the status page and try again.")
		return
	}
	c, err := h.store.GetConflict(user, cal, name, seq)
	if errors.Is(err, cache.ErrNotFound) {
		h.conflictGone(w, r, nonce)
		return
	}
	if err != nil {
		h.statusFailed(w, r, nonce, err)
		return
	}
	res := cache.Resolution{Keep: keep, CurrentETag: r.PostForm.Get("etag")}
	if keep != c.Kept && c.LoserData != nil {
		obj, err := h.indexLoser(name, c.LoserData)
		if err != nil {
			h.statusPage(w, r, user, nonce, http.StatusConflict, fmt.Sprintf(
				"Nothing was changed: the version you chose for %s cannot be stored (%v). Copy it from its full text below and fix it in your calendar client.", name, err))
			return
		}
		res.Loser = &obj
	}
	err = h.store.ResolveConflict(user, cal, name, seq, res)
	var uc *cache.UIDConflictError
	switch {
	case errors.Is(err, cache.ErrNotFound):
		h.conflictGone(w, r, nonce)
		return
	case errors.Is(err, cache.ErrPrecondition):
		h.statusPage(w, r, user, nonce, http.StatusConflict, fmt.Sprintf(
			"Nothing was changed: %s in calendar %s was changed after this page was loaded. Look at both versions below again and choose once more.", name, cal))
		return
	case errors.As(err, &uc):
		h.statusPage(w, r, user, nonce, http.StatusConflict, fmt.Sprintf(
			"Nothing was changed: the version you chose for %s has a UID that %s in calendar %s uses now. Delete or change %s in your calendar client, then choose again.", name, uc.Name, cal, uc.Name))
		return
	case err != nil:
		h.statusFailed(w, r, nonce, err)
		return
	}
	h.log.Info("conflict resolved", "user", user, "calendar", cal, "name", name, "seq", seq, "kept", keep)
	if keep != c.Kept {
		h.changed(user, cal)
	}
	http.Redirect(w, r, statusPath, http.StatusSeeOther)
}

// indexLoser parses the losing version of a conflict as the PUT path does
// and returns it as an object to store under name.
func (h *Handler) indexLoser(name string, data []byte) (cache.Object, error) {
	parsed, err := ical.Parse(data)
	if err != nil {
		return cache.Object{}, err
	}
	info, err := h.zones.Inspect(parsed)
	if err != nil {
		return cache.Object{}, err
	}
	return storedObject(name, data, info), nil
}

func (h *Handler) conflictGone(w http.ResponseWriter, r *http.Request, nonce string) {
	h.statusMessage(w, r, nonce, http.StatusNotFound, "Conflict not found",
		"This conflict does not exist (any more): it may have been resolved already. The status page shows the conflicts that are left.")
}

// statusFailed answers a storage failure; its detail goes to the log.
func (h *Handler) statusFailed(w http.ResponseWriter, r *http.Request, nonce string, err error) {
	h.log.Error("status page failed", "method", r.Method, "path", h.logPath(r.URL.Path), "err", err)
	h.statusMessage(w, r, nonce, http.StatusInternalServerError, "Internal error",
		"The status page could not be built; the server log has the details.")
}

// statusMessage sends a short HTML page with a link back to the status
// page.
func (h *Handler) statusMessage(w http.ResponseWriter, r *http.Request, nonce string, status int, title, text string) {
	h.render(w, r, status, "message", struct {
		Nonce, Title, Text string
		Swatches           []statusSwatch
	}{nonce, title, text, nil})
}

// statusPage renders the page for user, with message (if not "") shown
// at the top.
func (h *Handler) statusPage(w http.ResponseWriter, r *http.Request, user, nonce string, status int, message string) {
	p, err := h.statusData(r, user)
	if err != nil {
		h.statusFailed(w, r, nonce, err)
		return
	}
	p.Nonce, p.Message = nonce, message
	h.render(w, r, status, "page", p)
}

// render executes template name into a buffer, so that a failure sends
// an error rather than half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var b bytes.Buffer
	if err := statusTemplates.ExecuteTemplate(&b, name, data); err != nil {
		h.log.Error("status page template failed", "template", name, "err", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b.Bytes())
	}
}

// statusPageData is what the "page" template shows.
type statusPageData struct {
	Nonce, User, Now, Message, CSRF string

	Calendars []statusCalendar
	Sources   []statusSource
	Conflicts []statusConflict
	Feeds     []statusFeedLink
	// Swatches are the CSS classes of the calendars' colors, written
	// into the page's stylesheet (inline style attributes would need
	// 'unsafe-inline' in the Content-Security-Policy).
	Swatches []statusSwatch
}

type statusSwatch struct{ Class, Color string }

type statusCalendar struct {
	Index                            int
	ID, Name, Description, Kind, URL string
	Swatch                           string // CSS class, "" without a valid color
	Members                          []string
	Merged                           bool
	Items                            int
}

type statusSource struct {
	Cal, Name, Kind, Upstream  string
	State, StateClass          string
	LastSuccess, LastSuccessAt string
	Age                        string
	Stale                      bool
	Next, NextAt               string
	Failures, Outbox           int
	Conflicts                  int
	Error, ErrorAt             string
}

type statusConflict struct {
	Cal, CalName, Object string
	Seq                  uint64
	Reason               string
	Created, CreatedAt   string
	Kept, KeptLabel      string
	ETag                 string // of the calendar's object now, "" if there is none
	Sides                []conflictSide
}

// conflictSide is one version of a conflicting object.
type conflictSide struct {
	Key, Label     string // "mine" or "upstream"
	Kept, Deleted  bool
	Summary, Start string
	Data           string
}

type statusFeedLink struct {
	Index                    int
	Name, Label, URL, Webcal string
}

// Labels of the two sides of a conflict.
const (
	labelMine     = "Mine (written through calgate)"
	labelUpstream = "Upstream (on the server)"
)

// statusData reads everything the page shows for user from the store.
func (h *Handler) statusData(r *http.Request, user string) (*statusPageData, error) {
	now := h.now()
	cals, err := h.store.ListCalendars(user)
	if err != nil {
		return nil, err
	}
	stats, err := h.store.Stats(user)
	if err != nil {
		return nil, err
	}
	sources, err := h.store.ListSources()
	if err != nil {
		return nil, err
	}
	conflicts, err := h.store.ListConflicts(user)
	if err != nil {
		return nil, err
	}
	byCal := make(map[string]cache.CalendarStats, len(stats))
	for _, s := range stats {
		byCal[s.Cal] = s
	}
	bySource := make(map[string]*cache.SourceState, len(sources))
	for i := range sources {
		bySource[sources[i].ID] = &sources[i]
	}
	names := make(map[string]string, len(cals))
	for i := range cals {
		names[cals[i].ID] = CalendarTitle(&cals[i])
	}
	base := h.publicBase(r)
	p := &statusPageData{User: user, Now: absTime(now), CSRF: h.csrfToken(user)}

	for i := range cals {
		c := &cals[i]
		st := byCal[c.ID]
		kind := c.Kind
		if kind == "" {
			kind = "local"
		}
		sc := statusCalendar{Index: i, ID: c.ID, Name: CalendarTitle(c), Description: c.Description,
			Kind: kind, URL: base + calendarHref(user, c.ID), Merged: kind == kindMerged, Items: st.Objects}
		if colorPattern.MatchString(c.Color) {
			sc.Swatch = "sw" + strconv.Itoa(i)
			p.Swatches = append(p.Swatches, statusSwatch{Class: sc.Swatch, Color: c.Color})
		}
		for _, m := range c.Members {
			if n, ok := names[m]; ok && n != m {
				m = n + " (" + m + ")"
			}
			sc.Members = append(sc.Members, m)
		}
		p.Calendars = append(p.Calendars, sc)
		if c.Source != "" {
			p.Sources = append(p.Sources, sourceRow(c, kind, bySource[c.Source], st, now))
		}
	}

	for _, c := range conflicts {
		p.Conflicts = append(p.Conflicts, h.conflictRow(user, c, names, now))
	}

	for _, f := range h.statusFeeds {
		if !f.users[user] {
			continue
		}
		for i, tok := range f.tokens {
			u := base + feedsPrefix + url.PathEscape(tok) + "/" + url.PathEscape(f.name) + ".ics"
			l := statusFeedLink{Index: len(p.Feeds), Name: f.name, URL: u, Webcal: webcalURL(u)}
			if len(f.tokens) > 1 {
				l.Label = fmt.Sprintf("subscriber link %d of %d", i+1, len(f.tokens))
			}
			p.Feeds = append(p.Feeds, l)
		}
	}
	return p, nil
}

// sourceRow describes the sync health of calendar c, whose source state
// is st (nil if the source never stored one).
func sourceRow(c *cache.Calendar, kind string, st *cache.SourceState, stats cache.CalendarStats, now time.Time) statusSource {
	row := statusSource{Cal: c.ID, Name: CalendarTitle(c), Kind: kind, Upstream: c.Source,
		Outbox: stats.Pending, Conflicts: stats.Conflicts}
	if st == nil {
		st = &cache.SourceState{}
	}
	switch {
	case st.LastError != "" || st.Failures > 0:
		row.State, row.StateClass = "failing", "failing"
	case st.LastSuccess.IsZero():
		row.State, row.StateClass = "never synced", "never"
	default:
		row.State, row.StateClass = "ok", "ok"
	}
	row.LastSuccess = relTime(st.LastSuccess, now)
	if !st.LastSuccess.IsZero() {
		row.LastSuccessAt = absTime(st.LastSuccess)
		row.Age = "less than a second old"
		if age := now.Sub(st.LastSuccess); age >= time.Second {
			row.Age = durationWords(age) + " old"
		}
		row.Stale = row.State == "failing"
	} else {
		row.Age = "no data yet"
	}
	switch {
	case st.NextDue.IsZero():
		row.Next = "unknown" // the source has not recorded one
	case !st.NextDue.After(now):
		row.Next, row.NextAt = "due now", absTime(st.NextDue)
	default:
		row.Next, row.NextAt = relTime(st.NextDue, now), absTime(st.NextDue)
	}
	row.Failures = st.Failures
	row.Error = st.LastError
	if row.Error != "" && !st.LastAttempt.IsZero() {
		row.ErrorAt = relTime(st.LastAttempt, now)
	}
	return row
}

// conflictRow describes conflict c with both versions: the calendar's
// object now and the losing version.
func (h *Handler) conflictRow(user string, c cache.Conflict, names map[string]string, now time.Time) statusConflict {
	row := statusConflict{Cal: c.Cal, CalName: names[c.Cal], Object: c.Name, Seq: c.Seq, Reason: c.Reason,
		Created: relTime(c.Created, now), CreatedAt: absTime(c.Created), Kept: c.Kept}
	if row.CalName == "" {
		row.CalName = c.Cal
	}
	if row.Reason == "" {
		row.Reason = "changed on both sides"
	}
	cur := conflictSide{Deleted: true}
	if obj, err := h.store.GetObject(user, c.Cal, c.Name); err == nil {
		row.ETag = obj.ETag
		cur = versionSide(obj.Data)
	} else if !errors.Is(err, cache.ErrNotFound) {
		h.log.Warn("status page: reading a conflicting object", "calendar", c.Cal, "name", c.Name, "err", err)
	}
	loser := conflictSide{Deleted: true}
	if c.LoserData != nil {
		loser = versionSide(c.LoserData)
	}
	mine, up := cur, loser
	row.KeptLabel = "mine"
	if c.Kept != cache.KeptLocal {
		mine, up = loser, cur
		row.KeptLabel = "upstream"
	}
	mine.Kept, up.Kept = c.Kept == cache.KeptLocal, c.Kept != cache.KeptLocal
	mine.Key, mine.Label = "mine", labelMine
	up.Key, up.Label = "upstream", labelUpstream
	row.Sides = []conflictSide{mine, up}
	return row
}

// versionSide shows one version: its SUMMARY and DTSTART at a glance and
// its full text.
func versionSide(data []byte) conflictSide {
	s := conflictSide{Data: string(data), Summary: "(none)", Start: "(none)"}
	cal, err := ical.Parse(data)
	if err != nil {
		s.Summary = "(unreadable: " + err.Error() + ")"
		return s
	}
	for _, comp := range cal.Children {
		switch comp.Name {
		case goical.CompEvent, goical.CompToDo, goical.CompJournal:
		default:
			continue
		}
		if comp.Props.Get(goical.PropRecurrenceID) != nil {
			continue
		}
		if p := comp.Props.Get(goical.PropSummary); p != nil {
			if t, err := p.Text(); err == nil {
				s.Summary = t
			} else {
				s.Summary = p.Value
			}
		}
		if p := comp.Props.Get(goical.PropDateTimeStart); p != nil {
			s.Start = p.Value
			if tz := p.Params.Get(goical.ParamTimezoneID); tz != "" {
				s.Start += " (" + tz + ")"
			}
		}
		break
	}
	return s
}

// publicBase is the server's public URL without a trailing slash:
// Options.BaseURL, or else the request's scheme (as a trusted proxy
// reports it) and host.
func (h *Handler) publicBase(r *http.Request) string {
	if h.baseURL != "" {
		return strings.TrimSuffix(h.baseURL, "/")
	}
	return requestScheme(r, h.auth.trusted) + "://" + r.Host
}

// webcalURL is the webcal:// form of an http(s) URL.
func webcalURL(u string) string {
	for _, p := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(u, p); ok {
			return "webcal://" + rest
		}
	}
	return u
}

// absTime formats t for a tooltip.
func absTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relTime says when t is, seen from now: "3 minutes ago", "in 5 hours",
// "just now" within a second, and "never" for the zero time.
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	if d < time.Second {
		return "just now"
	}
	if future {
		return "in " + durationWords(d)
	}
	return durationWords(d) + " ago"
}

// durationWords says d in its largest whole unit: "45 seconds", "1
// minute", "3 hours", "12 days". A negative d counts as its absolute
// value.
func durationWords(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	n, unit := int64(d/time.Second), "second"
	switch {
	case d >= 24*time.Hour:
		n, unit = int64(d/(24*time.Hour)), "day"
	case d >= time.Hour:
		n, unit = int64(d/time.Hour), "hour"
	case d >= time.Minute:
		n, unit = int64(d/time.Minute), "minute"
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.FormatInt(n, 10) + " " + unit
}
