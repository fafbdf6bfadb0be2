package cache

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// benchData is a 1 KB object.
var benchData = bytes.Repeat([]byte("0123456789abcdef"), 64)

// fill stores n objects in calendar alice/work in one transaction, far
// faster than n PutObject calls.
func fill(b *testing.B, s *Store, n int) {
	b.Helper()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			name := fmt.Sprintf("obj-%06d.ics", i)
			o := Object{Name: name, UID: name, Component: "VEVENT", ETag: etagOf(benchData), Data: benchData}
			if _, _, refused, err := s.putObject(tx, "alice", "work", o, PutConditions{}, byClient); err != nil || refused != nil {
				return fmt.Errorf("%v %v", refused, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPutObject measures one durable (fsync'd) write at a time.
func BenchmarkPutObject(b *testing.B) {
	s := openTest(b, Options{})
	mustCalendar(b, s, "alice", "work")
	b.SetBytes(int64(len(benchData)))
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("obj-%d.ics", i%1000)
		i++
		if _, _, err := s.PutObject("alice", "work", Object{Name: name, UID: name, Data: benchData}, PutConditions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutObjectParallel measures durable writes from many goroutines,
// which share commits.
func BenchmarkPutObjectParallel(b *testing.B) {
	s := openTest(b, Options{})
	mustCalendar(b, s, "alice", "work")
	b.SetBytes(int64(len(benchData)))
	b.SetParallelism(16)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("obj-%d.ics", n.Add(1)%10000)
			if _, _, err := s.PutObject("alice", "work", Object{Name: name, UID: name, Data: benchData}, PutConditions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPutObjectNoSync is BenchmarkPutObject without fsync.
func BenchmarkPutObjectNoSync(b *testing.B) {
	s := openTest(b, Options{NoSync: true})
	mustCalendar(b, s, "alice", "work")
	b.SetBytes(int64(len(benchData)))
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("obj-%d.ics", i%1000)
		i++
		if _, _, err := s.PutObject("alice", "work", Object{Name: name, UID: name, Data: benchData}, PutConditions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetObject(b *testing.B) {
	s := openTest(b, Options{})
	mustCalendar(b, s, "alice", "work")
	fill(b, s, 1000)
	b.SetBytes(int64(len(benchData)))
	i := 0
	for b.Loop() {
		if _, err := s.GetObject("alice", "work", fmt.Sprintf("obj-%06d.ics", i%1000)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkListObjects lists the metadata of 10,000 objects.
func BenchmarkListObjects(b *testing.B) {
	s := openTest(b, Options{})
	mustCalendar(b, s, "alice", "work")
	fill(b, s, 10000)
	for b.Loop() {
		list, err := s.ListObjects("alice", "work")
		if err != nil || len(list) != 10000 {
			b.Fatal(len(list), err)
		}
	}
}

// BenchmarkChanges asks for the last 100 of 10,000 changes.
func BenchmarkChanges(b *testing.B) {
	s := openTest(b, Options{})
	mustCalendar(b, s, "alice", "work")
	fill(b, s, 10000)
	for b.Loop() {
		_, ch, err := s.Changes("alice", "work", 9900)
		if err != nil || len(ch) != 100 {
			b.Fatal(len(ch), err)
		}
	}
}

// BenchmarkCandidates is the span-index lookup of a one-month query over
// calendars of 10,000 and 100,000 objects spread over two years: "warm"
// with the index current, "after_write" with one object replaced before
// each lookup (the index is caught up from the change log), and "rebuild"
// with the index dropped (built from every header again).
func BenchmarkCandidates(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		s := openTest(b, Options{NoSync: true})
		mustCalendar(b, s, "alice", "work")
		base := time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i := range n {
				name := fmt.Sprintf("obj-%06d.ics", i)
				start := base.Add(time.Duration(i%730)*24*time.Hour + time.Duration(i%9)*time.Hour)
				o := Object{Name: name, UID: name, Component: "VEVENT", Start: start, End: start.Add(time.Hour), Exact: true, ETag: etagOf(benchData), Data: benchData}
				if _, _, refused, err := s.putObject(tx, "alice", "work", o, PutConditions{}, byClient); err != nil || refused != nil {
					return fmt.Errorf("%v %v", refused, err)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
		want := 0
		lookup := func(b *testing.B) {
			got, err := s.Candidates("alice", "work", "VEVENT", from, to)
			if err != nil {
				b.Fatal(err)
			}
			want = len(got)
		}
		b.Run(fmt.Sprintf("warm/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				lookup(b)
			}
			b.ReportMetric(float64(want), "names/op")
		})
		b.Run(fmt.Sprintf("after_write/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				start := from.Add(time.Duration(i%30) * 24 * time.Hour)
				name := fmt.Sprintf("obj-%06d.ics", i%n)
				if _, _, err := s.PutObject("alice", "work", Object{Name: name, UID: name, Component: "VEVENT", Start: start, End: start.Add(time.Hour), Data: benchData}, PutConditions{}); err != nil {
					b.Fatal(err)
				}
				i++
				b.StartTimer()
				lookup(b)
			}
		})
		b.Run(fmt.Sprintf("rebuild/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.spans.mu.Lock()
				s.spans.m = nil
				s.spans.mu.Unlock()
				lookup(b)
			}
		})
	}
}
