package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/calgate/calgate/cache"
)

// Source is one mirrored calendar.
type Source interface {
	// ID is the source's id, the key of its stored state.
	ID() string
	// Sync brings the local calendar up to date with the upstream once.
	// Errors wrap ErrUnavailable when trying again later may help
	// (network, 5xx, 429; a *RetryAfterError carries the upstream's
	// Retry-After); other errors are permanent until something changes.
	Sync(ctx context.Context) (Result, error)
}

// Writer is implemented by sources that accept writes (CalDAV sources).
type Writer interface {
	// Push sends one outbox entry upstream and completes it in the store.
	// Errors as for Source.Sync.
	Push(ctx context.Context, e cache.OutboxEntry) error
}

// Result says what one sync did.
type Result struct {
	Put, Deleted, Unchanged int
	NotModified             bool // 304, or unchanged ctag or sync token
	Quarantined             int  // upstream items that could not be stored
	HeldDeletes             int  // deletions held back by the mass-delete guard
}

// ErrUnavailable is wrapped by errors after which a later try may succeed.
var ErrUnavailable = errors.New("upstream: unavailable")

// RetryAfterError is an ErrUnavailable with the upstream's Retry-After.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// Is makes a RetryAfterError match ErrUnavailable.
func (e *RetryAfterError) Is(target error) bool { return target == ErrUnavailable }

// statusError classifies an HTTP response status of an upstream request
// in one place: 5xx, 429 and 408 are unavailable (with Retry-After when
// given); 401 and 403 are permanent and say what to check; others are
// permanent. It returns nil for 2xx and 3xx statuses.
func statusError(resp *http.Response, what string) error {
	code := resp.StatusCode
	if code < 400 {
		return nil
	}
	base := fmt.Errorf("%s: %s", what, resp.Status)
	switch {
	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		err := fmt.Errorf("%w: %v", ErrUnavailable, base)
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &RetryAfterError{After: d, Err: err}
		}
		return err
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("upstream: %v: authentication failed; check the username and password_env/password_file of this source", base)
	}
	return fmt.Errorf("upstream: %v", base)
}

// retryAfter parses a Retry-After header: delta seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

// networkError wraps a transport error as unavailable, unless the
// request was cancelled, a redirect was refused or a dial to a local
// address was.
func networkError(err error, what string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrRedirect) || errors.Is(err, ErrLocalAddress) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// parseUpstreamURL checks the URL and conflict policy of a CalDAV source
// or account (what names it in errors) and returns the URL without
// credentials.
func parseUpstreamURL(what, rawURL, conflict string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("caldav: %s: bad url: %w", what, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("caldav: %s: url %q is not an absolute http(s) URL", what, u.Redacted())
	case conflict != ConflictUpstreamWins && conflict != ConflictLocalWins:
		return nil, fmt.Errorf("caldav: %s: conflict policy %q: want %q or %q", what, conflict, ConflictUpstreamWins, ConflictLocalWins)
	}
	u.User = nil
	return u, nil
}

// holdMassDelete is the mass-delete guard of every source: deleting more
// than max(10, half) of a calendar's stored objects in one sync is held
// (next.HeldDeletes, res.HeldDeletes) until a later sync asks for the same
// number of deletions again. When it holds, the caller applies no
// deletion and keeps its old sync position, so that the next sync sees
// the deletions again.
func holdMassDelete(deletes, stored int, prev cache.SourceState, next *cache.SourceState, res *Result) bool {
	if deletes > max(10, stored/2) && deletes != prev.HeldDeletes {
		next.HeldDeletes, res.HeldDeletes = deletes, deletes
		return true
	}
	next.HeldDeletes = 0
	return false
}

// heldDeletesNote is the status of a source whose mass deletion is held
// (stored as its LastError until a sync holds nothing): what happened and
// what to do.
func heldDeletesNote(deletes, stored int) string {
	return fmt.Sprintf("mass deletion held: the upstream no longer has %d of the %d objects of this calendar, "+
		"which keeps them for now; if they were lost upstream by mistake, restore them there before the next sync, "+
		"otherwise the next sync that finds them still gone deletes them here too", deletes, stored)
}

// deleteChanges turns names into upstream deletions.
func deleteChanges(names []string) []cache.UpstreamChange {
	out := make([]cache.UpstreamChange, len(names))
	for i, name := range names {
		out[i] = cache.UpstreamChange{Delete: true, Object: cache.Object{Name: name}}
	}
	return out
}
