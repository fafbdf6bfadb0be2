package upstream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/calgate/calgate/cache"
)

// EngineOptions configure an Engine.
type EngineOptions struct {
	Store *cache.Store
	// Logger receives sync summaries (info) and upstream trouble (warn).
	// Nil means silent.
	Logger *slog.Logger
	// MaxBackoff caps the wait after consecutive failures. Default: 30m.
	MaxBackoff time.Duration
	// OutboxRetry is how long a pending write waits after the upstream
	// was unreachable. Default: 1m.
	OutboxRetry time.Duration
	// OnSync, if set, is called after every sync of a source (the loop's
	// and SyncNow's) with its result, its error (nil on success) and how
	// long it took.
	OnSync func(id string, res Result, err error, took time.Duration)
}

// Engine runs every source in a goroutine of its own: a sync on the
// source's interval (with jitter), at once when kicked (after a local
// write), and after failures with capped exponential backoff (with jitter,
// or as the upstream's Retry-After says). Before each pull it pushes the
// calendar's pending outbox entries through the source's Writer, so a
// local write reaches the upstream before the upstream is read back.
type Engine struct {
	store       *cache.Store
	log         *slog.Logger
	maxBackoff  time.Duration
	outboxRetry time.Duration
	onSync      func(id string, res Result, err error, took time.Duration)

	mu      sync.Mutex         // protects runners and started
	runners map[string]*runner // by source id
	started bool

	// startCtx is the workers' lifetime context, set by Start (guarded
	// by mu); cancel ends it.
	startCtx context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// runner is one source and its loop's inputs.
type runner struct {
	src       Source
	user, cal string
	interval  time.Duration
	kick      chan struct{} // buffered 1: a kick while syncing is kept, extra ones merge
	stop      chan struct{} // closed by Remove

	mu sync.Mutex // serialises syncs (the loop's and SyncNow's)
}

// NewEngine returns an engine with no sources.
func NewEngine(opts EngineOptions) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Minute
	}
	if opts.OutboxRetry <= 0 {
		opts.OutboxRetry = time.Minute
	}
	return &Engine{store: opts.Store, log: opts.Logger, maxBackoff: opts.MaxBackoff, outboxRetry: opts.OutboxRetry,
		onSync: opts.OnSync, runners: make(map[string]*runner)}
}

// Add registers src, which mirrors calendar user/cal, to be synced every
// interval. Sources added after Start start at once.
func (e *Engine) Add(src Source, user, cal string, interval time.Duration) {
	r := &runner{src: src, user: user, cal: cal, interval: interval, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.runners[src.ID()] = r
	if e.started {
		e.startRunner(r)
	}
}

// Start starts the sources' loops; they run until ctx ends or Stop.
func (e *Engine) Start(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx, e.cancel = context.WithCancel(ctx)
	e.started = true
	e.startCtx = ctx
	for _, r := range e.runners {
		e.startRunner(r)
	}
}

// Started reports whether the engine runs its sources: true between
// Start and Stop (or the end of Start's context).
func (e *Engine) Started() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started && e.startCtx.Err() == nil
}

// startRunner starts r's loop; e.mu must be held.
func (e *Engine) startRunner(r *runner) {
	ctx := e.startCtx
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.loop(ctx, r)
	}()
}

// Stop stops every loop and waits for them; a sync in progress is
// cancelled through its context.
func (e *Engine) Stop() {
	e.mu.Lock()
	if e.cancel != nil {
		e.cancel()
	}
	e.started = false
	e.mu.Unlock()
	e.wg.Wait()
}

// Remove stops and forgets source id (its loop ends after a sync in
// progress); it reports whether there was one. Its stored state and
// calendar are left to the caller.
func (e *Engine) Remove(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.runners[id]
	if ok {
		close(r.stop)
		delete(e.runners, id)
	}
	return ok
}

// Kick asks the source of calendar user/cal to sync now (a local write is
// waiting). It never blocks; calendars without a source are ignored.
func (e *Engine) Kick(user, cal string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.runners {
		if r.user == user && r.cal == cal {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	}
}

// ErrUnknownSource is returned by SyncNow for an id no source has.
var ErrUnknownSource = errors.New("upstream: unknown source")

// SyncNow pushes the outbox and syncs source id once, now, in the
// caller's goroutine.
func (e *Engine) SyncNow(ctx context.Context, id string) (Result, error) {
	e.mu.Lock()
	r := e.runners[id]
	e.mu.Unlock()
	if r == nil {
		return Result{}, ErrUnknownSource
	}
	return e.syncOnce(ctx, r, true)
}

// Sources lists the ids of the registered sources.
func (e *Engine) Sources() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.runners))
	for id := range e.runners {
		out = append(out, id)
	}
	return out
}

func (e *Engine) loop(ctx context.Context, r *runner) {
	log := e.log.With("source", r.src.ID())
	// Start soon, spread out so that many sources do not sync at once.
	delay := jitter(min(r.interval, 5*time.Second), 1)
	failures := 0
	for {
		timer := time.NewTimer(delay)
		kicked := false
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.stop:
			timer.Stop()
			return
		case <-r.kick:
			timer.Stop()
			kicked = true
		case <-timer.C:
		}
		res, err := e.syncOnce(ctx, r, kicked)
		if ctx.Err() != nil {
			return // cancellation is not a failure
		}
		if err != nil {
			failures++
			delay = e.backoff(failures, err)
			log.Warn("sync failed", "err", err, "failures", failures, "retry_in", delay.Round(time.Second))
			e.recordNextDue(r, delay)
			continue
		}
		failures = 0
		delay = jitter(r.interval, 0.1)
		e.recordNextDue(r, delay)
		if !res.NotModified || res.Quarantined > 0 || res.HeldDeletes > 0 {
			log.Info("synced", "put", res.Put, "deleted", res.Deleted, "unchanged", res.Unchanged,
				"quarantined", res.Quarantined, "held_deletes", res.HeldDeletes)
		}
	}
}

// syncOnce pushes pending writes, then pulls, and records a failure in
// the source's stored state (a success is recorded by the source, in the
// same transaction as the data). With now set (a kick: a local write, or
// a sync asked for by hand) writes waiting for their retry time are tried
// at once too: the upstream may be back.
func (e *Engine) syncOnce(ctx context.Context, r *runner, now bool) (res Result, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.onSync != nil {
		start := time.Now()
		defer func() {
			if ctx.Err() == nil {
				e.onSync(r.src.ID(), res, err, time.Since(start))
			}
		}()
	}
	if w, ok := r.src.(Writer); ok {
		if err := e.drain(ctx, r, w, now); err != nil {
			e.recordFailure(r, err)
			return Result{}, err
		}
	}
	res, err = r.src.Sync(ctx)
	if err != nil && ctx.Err() == nil {
		e.recordFailure(r, err)
	}
	return res, err
}

// drain pushes the calendar's due outbox entries in order. It stops at
// the first entry the upstream could not take because it is unavailable,
// so that later writes are not sent before earlier ones.
func (e *Engine) drain(ctx context.Context, r *runner, w Writer, all bool) error {
	entries, err := e.store.PendingOutbox(r.user, r.cal)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, entry := range entries {
		if entry.NextTry.After(now) && !all {
			break // later entries wait too: writes go upstream in order
		}
		if err := w.Push(ctx, entry); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if errors.Is(err, ErrUnavailable) {
				if rerr := e.store.RetryOutbox(entry.Seq, now.Add(e.outboxRetry), err.Error()); rerr != nil {
					return rerr
				}
				return err
			}
			// A permanent refusal: the entry stays, visible, and the
			// next entries go on.
			if rerr := e.store.RetryOutbox(entry.Seq, now.Add(e.maxBackoff), err.Error()); rerr != nil {
				return rerr
			}
			e.log.Warn("upstream refused a write", "source", r.src.ID(), "name", entry.Name, "op", entry.Op, "err", err)
		}
	}
	return nil
}

func (e *Engine) recordFailure(r *runner, err error) {
	st, gerr := e.store.GetSource(r.src.ID())
	if gerr != nil && !errors.Is(gerr, cache.ErrNotFound) {
		e.log.Error("reading source state", "source", r.src.ID(), "err", gerr)
		return
	}
	st.ID = r.src.ID()
	st.LastAttempt = time.Now().UTC()
	st.LastError = err.Error()
	st.Failures++
	if perr := e.store.PutSource(st); perr != nil {
		e.log.Error("recording sync failure", "source", r.src.ID(), "err", perr)
	}
}

// recordNextDue stores when the loop will sync r next (the status page and
// `calgate status` show it). It holds the runner's lock so that it cannot
// interleave with a sync's own update of the state.
func (e *Engine) recordNextDue(r *runner, delay time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := e.store.GetSource(r.src.ID())
	if err != nil {
		if !errors.Is(err, cache.ErrNotFound) {
			e.log.Error("reading source state", "source", r.src.ID(), "err", err)
		}
		return
	}
	st.NextDue = time.Now().Add(delay).UTC()
	if err := e.store.PutSource(st); err != nil {
		e.log.Error("recording next sync", "source", r.src.ID(), "err", err)
	}
}

// backoff is the wait after the n-th consecutive failure: the upstream's
// Retry-After if it sent one, else 30s doubling per failure up to
// MaxBackoff, with ±20% jitter.
func (e *Engine) backoff(n int, err error) time.Duration {
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return min(ra.After, e.maxBackoff)
	}
	d := 30 * time.Second
	for i := 1; i < n && d < e.maxBackoff; i++ {
		d *= 2
	}
	return jitter(min(d, e.maxBackoff), 0.2)
}

// jitter returns d varied by up to ±frac of itself (frac 1: 0..2d,
// used once at start).
func jitter(d time.Duration, frac float64) time.Duration {
	if d <= 0 {
		return 0
	}
	f := 1 + frac*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
