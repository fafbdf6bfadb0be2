package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
// request was cancelled or a redirect was refused.
func networkError(err error, what string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrRedirect) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}
