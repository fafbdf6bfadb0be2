package cache

import (
	"encoding/binary"
	"fmt"
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

// spanIndex returns the current index of a calendar. An index some
// revisions behind is brought up to date from the change log, re-reading
// only the objects that changed; a calendar that changed a lot (or whose
// log no longer reaches back, or whose epoch changed) is indexed again
// from all its object headers.
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
	var next *spanIndex
	if idx != nil && idx.epoch == c.Epoch && idx.revision < c.Revision && c.Revision-idx.revision <= uint64(max(64, len(idx.entries)/8)) {
		next, err = s.catchUp(user, cal, idx)
		if err != nil {
			return nil, err
		}
	}
	if next == nil {
		if next, err = s.buildSpanIndex(user, cal); err != nil {
			return nil, err
		}
	}
	s.spans.mu.Lock()
	if s.spans.m == nil {
		s.spans.m = make(map[[2]string]*spanIndex)
	}
	if cur := s.spans.m[key]; cur == nil || cur.epoch != next.epoch || cur.revision <= next.revision {
		s.spans.m[key] = next
	}
	s.spans.mu.Unlock()
	return next, nil
}

// buildSpanIndex indexes every object header of a calendar.
func (s *Store) buildSpanIndex(user, cal string) (*spanIndex, error) {
	idx := &spanIndex{}
	err := s.db.View(func(tx *bbolt.Tx) error {
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
			idx.entries = append(idx.entries, spanEntryOf(&o))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(idx.entries, cmpSpanStart)
	return idx, nil
}

// catchUp returns a new index: old with the changes after its revision
// applied, read in one transaction. It returns nil (and no error) when
// the change log no longer holds them all or the epoch changed; the
// caller then rebuilds. old itself is never modified: queries may be
// reading it.
func (s *Store) catchUp(user, cal string, old *spanIndex) (*spanIndex, error) {
	var next *spanIndex
	err := s.db.View(func(tx *bbolt.Tx) error {
		c, err := getCalendar(tx, user, cal)
		if err != nil {
			return err
		}
		if c.Epoch != old.epoch || c.Revision < old.revision {
			return nil
		}
		log := calBucket(tx, bucketChanges, user, cal)
		if log == nil {
			return nil
		}
		cur := log.Cursor()
		if k, _ := cur.First(); len(k) != 8 || binary.BigEndian.Uint64(k) > old.revision+1 {
			return nil // trimmed past the index's revision
		}
		changed := make(map[string]bool)
		for k, v := cur.Seek(revKey(old.revision + 1)); k != nil; k, v = cur.Next() {
			if len(k) != 8 || len(v) < 1 {
				return fmt.Errorf("cache: change log of %s/%s: %w: key %x", user, cal, errCorrupt, k)
			}
			changed[string(v[1:])] = true
		}
		var added []spanEntry
		if objs := calBucket(tx, bucketObjects, user, cal); objs != nil {
			for name := range changed {
				v := objs.Get([]byte(name))
				if v == nil {
					continue // deleted
				}
				o, _, err := decodeHeader(name, v)
				if err != nil {
					return err
				}
				added = append(added, spanEntryOf(&o))
			}
		}
		slices.SortStableFunc(added, cmpSpanStart)
		next = &spanIndex{epoch: c.Epoch, revision: c.Revision, entries: make([]spanEntry, 0, len(old.entries)+len(added))}
		// Merge the kept entries and the added ones, both sorted by start.
		i := 0
		for _, e := range old.entries {
			if changed[e.name] {
				continue
			}
			for i < len(added) && cmpSpanStart(added[i], e) < 0 {
				next.entries = append(next.entries, added[i])
				i++
			}
			next.entries = append(next.entries, e)
		}
		next.entries = append(next.entries, added[i:]...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

func spanEntryOf(o *Object) spanEntry {
	return spanEntry{start: o.Start, end: o.End, component: o.Component, name: o.Name}
}

// cmpSpanStart orders entries by start, the unbounded (zero) start first.
func cmpSpanStart(a, b spanEntry) int {
	switch {
	case a.start.IsZero() != b.start.IsZero():
		if a.start.IsZero() {
			return -1
		}
		return 1
	}
	return a.start.Compare(b.start)
}
