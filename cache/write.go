package cache

import (
	"errors"

	"go.etcd.io/bbolt"
)

// errRefused rolls back a solo write transaction whose function refused.
var errRefused = errors.New("cache: refused")

// write runs fn in a write transaction and returns fn's results from the
// run that committed.
//
// fn reports two kinds of failure. refused is a decision taken before fn
// wrote anything (missing calendar, failed precondition, UID conflict): it
// is returned to the caller and does not fail the transaction. err is a
// storage failure: it aborts the transaction.
//
// Concurrent writers are group-committed with bbolt's Batch, which shares
// one transaction and one fsync among them. A writer that is alone skips
// Batch, whose timer would add DB.MaxBatchDelay to its latency, and commits
// at once. fn may run more than once (Batch retries the others when one
// function fails), so it must set all its results on every run.
//
// A commit that fails for lack of space (see isNoSpace) is logged as a
// warning here, once per refused write; the caller's wrap turns the
// error into ErrNoSpace. The store stays usable after it: bbolt rolls the
// failed transaction back and reloads its freelist from the file, whose
// meta pages still name the last commit, so the write is simply not there,
// reads go on, and the next write that fits commits (TestMatrixStorage in
// cmd/calgate checks this with a file-size limit and a full tmpfs).
func (s *Store) write(fn func(tx *bbolt.Tx) (refused, err error)) (refused, err error) {
	defer s.writers.Add(-1)
	defer func() { s.warnNoSpace(err) }()
	if s.writers.Add(1) == 1 {
		err = s.db.Update(func(tx *bbolt.Tx) error {
			var err error
			refused, err = fn(tx)
			if err == nil && refused != nil {
				return errRefused // nothing was written; skip the commit and its fsync
			}
			return err
		})
		if errors.Is(err, errRefused) {
			err = nil
		}
		return refused, err
	}
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		refused = nil // reset: Batch may run this more than once
		var err error
		refused, err = fn(tx)
		return err
	})
	return refused, err
}

// update is db.Update for the writes that do not go through write
// (calendar changes), with write's disk-full warning.
func (s *Store) update(fn func(tx *bbolt.Tx) error) error {
	err := s.db.Update(fn)
	s.warnNoSpace(err)
	return err
}

// warnNoSpace logs a warning if err is a failure to write for lack of
// space.
func (s *Store) warnNoSpace(err error) {
	if err != nil && isNoSpace(err) {
		s.log.Warn("disk full: a write to the store was refused and nothing of it stored; reads go on, and writes succeed again once there is room (free disk space, or raise the quota or file size limit)",
			"path", s.path, "err", err)
	}
}
