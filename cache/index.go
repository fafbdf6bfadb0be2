package cache

import (
	"slices"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// spanIndexes holds, per calendar, the objects' stored time spans sorted
// by start, so that a time-range query picks its candidates without
// reading every object. An index is valid for the calendar revision (and
// epoch) it was built at; a query that finds the calendar at another
// revision rebuilds it from the object headers in one read transaction.
// Writes therefore never touch it, and it can never be stale.
type spanIndexes struct {
	mu sync.Mutex               // protects m
	m  map[[2]string]*spanIndex // (user, calendar) -> index
}

type spanIndex struct {
	epoch    string
	revision uint64
	entries  []spanEntry // sorted by start; zero start (unbounded) first
}

type spanEntry struct {
	start, end time.Time // zero = unbounded
	component  string
	name       string
}

// Candidates returns the names of the objects of calendar user/cal whose
// component is comp (any if empty) and whose stored span overlaps the
// range from start to end, both inclusive; a zero start or end is
// unbounded. The answer is a superset of what a time-range query can
// match, sorted by name.
//
// It returns ErrNotFound if the calendar does not exist.
func (s *Store) Candidates(user, cal, comp string, start, end time.Time) ([]string, error) {
	idx, err := s.spanIndex(user, cal)
	if err != nil {
		return nil, err
	}
	var out []string
	// Entries with start after end cannot overlap: stop at the first.
	n := len(idx.entries)
	if !end.IsZero() {
		n = sort.Search(len(idx.entries), func(i int) bool {
			st := idx.entries[i].start
			return !st.IsZero() && st.After(end)
		})
	}
	for _, e := range idx.entries[:n] {
		if comp != "" && e.component != comp {
			continue
		}
		if !e.end.IsZero() && !start.IsZero() && start.After(e.end) {
			continue
		}
		out = append(out, e.name)
	}
	slices.Sort(out)
	return out, nil
}

// spanIndex returns the current index of a calendar, rebuilding it if the
// calendar changed since it was built.
func (s *Store) spanIndex(user, cal string) (*spanIndex, error) {
	c, err := s.GetCalendar(user, cal)
	if err != nil {
		return nil, err
	}
	key := [2]string{user, cal}
	s.spans.mu.Lock()
	idx := s.spans.m[key]
	s.spans.mu.Unlock()
	if idx != nil && idx.epoch == c.Epoch && idx.revision == c.Revision {
		return idx, nil
	}
	idx = &spanIndex{}
	err = s.db.View(func(tx *bbolt.Tx) error {
		c, err := getCalendar(tx, user, cal)
		if err != nil {
			return err
		}
		idx.epoch, idx.revision = c.Epoch, c.Revision
		objs := calBucket(tx, bucketObjects, user, cal)
		if objs == nil {
			return nil
		}
		return objs.ForEach(func(k, v []byte) error {
			o, _, err := decodeHeader(string(k), v)
			if err != nil {
				return err
			}
			idx.entries = append(idx.entries, spanEntry{start: o.Start, end: o.End, component: o.Component, name: o.Name})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(idx.entries, func(i, j int) bool {
		a, b := idx.entries[i].start, idx.entries[j].start
		if a.IsZero() != b.IsZero() {
			return a.IsZero()
		}
		return a.Before(b)
	})
	s.spans.mu.Lock()
	if s.spans.m == nil {
		s.spans.m = make(map[[2]string]*spanIndex)
	}
	if cur := s.spans.m[key]; cur == nil || cur.epoch != idx.epoch || cur.revision <= idx.revision {
		s.spans.m[key] = idx
	}
	s.spans.mu.Unlock()
	return idx, nil
}
