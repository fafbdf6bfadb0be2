package upstream

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calgate/calgate/cache"
)

// fakeSource stands in for an upstream in the engine's loop tests, which
// run on synctest's fake clock: no network, no real time.
type fakeSource struct {
	id string

	mu    sync.Mutex
	syncs []time.Time   // when Sync ran
	fails int           // the next fails syncs fail
	err   error         // with this error
	block chan struct{} // if set, Sync waits for it (or ctx)
	pushd []cache.OutboxEntry
}

func (f *fakeSource) ID() string { return f.id }

func (f *fakeSource) Sync(ctx context.Context) (Result, error) {
	f.mu.Lock()
	f.syncs = append(f.syncs, time.Now())
	block := f.block
	fail := f.fails > 0
	if fail {
		f.fails--
	}
	err := f.err
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	if fail {
		return Result{}, err
	}
	return Result{NotModified: true}, nil
}

func (f *fakeSource) Push(ctx context.Context, e cache.OutboxEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pushd = append(f.pushd, e)
	return nil
}

func (f *fakeSource) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.syncs...)
}

func openStore(t *testing.T) *cache.Store {
	t.Helper()
	st, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestEngineInterval(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{id: "alice/work"}
		if err := st.PutSource(cache.SourceState{ID: "alice/work"}); err != nil {
			t.Fatal(err)
		}
		e := NewEngine(EngineOptions{Store: st})
		e.Add(src, "alice", "work", time.Hour)
		e.Start(context.Background())
		time.Sleep(3*time.Hour + 30*time.Minute)
		e.Stop()
		got := src.times()
		// The next sync is recorded for the status page: an interval
		// (±10%) after the last one.
		state, err := st.GetSource("alice/work")
		if err != nil {
			t.Fatal(err)
		}
		if d := state.NextDue.Sub(got[len(got)-1]); d < 54*time.Minute || d > 66*time.Minute {
			t.Errorf("NextDue %v is %v after the last sync, want about an hour", state.NextDue, d)
		}
		// A first sync within 5s (jittered start), then one per hour ±10%.
		if len(got) < 3 || len(got) > 5 {
			t.Fatalf("%d syncs in 3.5h with a 1h interval: %v", len(got), got)
		}
		for i := 1; i < len(got); i++ {
			if d := got[i].Sub(got[i-1]); d < 54*time.Minute || d > 66*time.Minute {
				t.Fatalf("interval %v between syncs %d and %d", d, i-1, i)
			}
		}
	})
}

func TestEngineKick(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{id: "alice/work"}
		e := NewEngine(EngineOptions{Store: st})
		e.Add(src, "alice", "work", 24*time.Hour)
		e.Start(context.Background())
		time.Sleep(time.Minute) // past the first sync
		before := len(src.times())
		e.Kick("alice", "work")
		e.Kick("alice", "other") // no source: ignored
		synctest.Wait()
		if after := len(src.times()); after != before+1 {
			t.Fatalf("kick: %d syncs, want %d", after, before+1)
		}
		e.Stop()
	})
}

func TestEngineBackoff(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{id: "alice/work", fails: 4, err: fmt.Errorf("%w: connection refused", ErrUnavailable)}
		e := NewEngine(EngineOptions{Store: st, MaxBackoff: 5 * time.Minute})
		e.Add(src, "alice", "work", time.Hour)
		e.Start(context.Background())
		time.Sleep(90 * time.Minute)
		e.Stop()
		got := src.times()
		if len(got) < 6 {
			t.Fatalf("only %d syncs", len(got))
		}
		// Waits after failures 1..4: 30s, 60s, 120s, 240s (±20%, capped at 5m).
		for i, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute} {
			d := got[i+1].Sub(got[i])
			if d < want*8/10 || d > want*12/10 {
				t.Fatalf("wait after failure %d: %v, want about %v", i+1, d, want)
			}
		}
		// Then healthy again: back to the interval.
		if d := got[5].Sub(got[4]); d < 54*time.Minute {
			t.Fatalf("after recovery the next sync came after %v", d)
		}
		state, err := st.GetSource("alice/work")
		if err != nil || state.Failures != 4 || state.LastError == "" {
			t.Fatalf("recorded state %+v, %v", state, err)
		}
		if d := state.NextDue.Sub(got[len(got)-1]); d < 54*time.Minute || d > 66*time.Minute {
			t.Errorf("NextDue %v is %v after the last sync, want about an hour", state.NextDue, d)
		}
	})
}

func TestEngineRetryAfter(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{id: "alice/work", fails: 1, err: &RetryAfterError{After: 17 * time.Minute, Err: ErrUnavailable}}
		e := NewEngine(EngineOptions{Store: st})
		e.Add(src, "alice", "work", time.Hour)
		e.Start(context.Background())
		time.Sleep(20 * time.Minute)
		e.Stop()
		got := src.times()
		if len(got) != 2 || got[1].Sub(got[0]) != 17*time.Minute {
			t.Fatalf("Retry-After not honoured: %v", got)
		}
	})
}

func TestEngineStopCancelsSync(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{id: "alice/work", block: make(chan struct{})}
		e := NewEngine(EngineOptions{Store: st})
		e.Add(src, "alice", "work", time.Hour)
		e.Start(context.Background())
		time.Sleep(10 * time.Second) // the first sync is now blocked in Sync
		e.Stop()                     // returns only when the loop has ended
		if n := len(src.times()); n != 1 {
			t.Fatalf("%d syncs", n)
		}
		state, err := st.GetSource("alice/work")
		if err == nil && state.Failures != 0 {
			t.Fatal("a cancelled sync was recorded as a failure")
		}
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			t.Fatal(err)
		}
	})
}

func TestEngineRemove(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{id: "alice/gone"}
		e := NewEngine(EngineOptions{Store: st})
		e.Add(src, "alice", "gone", time.Hour)
		e.Start(context.Background())
		time.Sleep(time.Minute)
		if !e.Remove("alice/gone") || e.Remove("alice/gone") {
			t.Fatal("Remove should report the source once")
		}
		n := len(src.times())
		time.Sleep(3 * time.Hour)
		if len(src.times()) != n {
			t.Fatal("a removed source kept syncing")
		}
		e.Stop()
	})
}

// TestEngineDrainsInOrder checks that a write waiting for its retry time
// holds back the writes after it on a timed sync, and that a kick sends
// them all, in order.
func TestEngineDrainsInOrder(t *testing.T) {
	st := openStore(t)
	synctest.Test(t, func(t *testing.T) {
		if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: "work", Kind: "caldav", Components: []string{"VEVENT"}}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"a.ics", "b.ics"} {
			if _, _, err := st.PutObject("alice", "work", cache.Object{Name: n, UID: n, Component: "VEVENT", Data: []byte(n)}, cache.PutConditions{}); err != nil {
				t.Fatal(err)
			}
		}
		pending, err := st.PendingOutbox("alice", "work")
		if err != nil || len(pending) != 2 {
			t.Fatalf("outbox: %v %v", pending, err)
		}
		if err := st.RetryOutbox(pending[0].Seq, time.Now().Add(time.Hour), "unavailable"); err != nil {
			t.Fatal(err)
		}
		src := &fakeSource{id: "alice/work"}
		e := NewEngine(EngineOptions{Store: st})
		e.Add(src, "alice", "work", 10*time.Minute)
		e.Start(context.Background())
		time.Sleep(25 * time.Minute) // timed syncs only
		src.mu.Lock()
		early := len(src.pushd)
		src.mu.Unlock()
		if early != 0 {
			t.Fatalf("%d writes pushed past an earlier one that was not due", early)
		}
		e.Kick("alice", "work")
		synctest.Wait()
		e.Stop()
		src.mu.Lock()
		defer src.mu.Unlock()
		if len(src.pushd) != 2 || src.pushd[0].Name != "a.ics" || src.pushd[1].Name != "b.ics" {
			t.Fatalf("after a kick pushed %+v, want a.ics then b.ics", src.pushd)
		}
	})
}
