package cache

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Change is one entry of a calendar's change log, after de-duplication by
// name.
type Change struct {
	// Name is the resource name of the object that changed.
	Name string
	// Revision is the calendar revision of the object's latest change.
	Revision uint64
	// Deleted is true if the latest change deleted the object (a
	// tombstone).
	Deleted bool
}

// bump records a change (op on name) of calendar c at time now: it
// increments c.Revision, appends the change record, trims the log to
// s.maxChanges entries and writes c back. It returns the new revision.
//
// Every change gets its own revision, so the log's keys are consecutive:
// it holds revisions oldest..c.Revision with no gaps.
func (s *Store) bump(tx *bbolt.Tx, c *Calendar, op changeOp, name string, now time.Time) (uint64, error) {
	log, err := createCalBucket(tx, bucketChanges, c.User, c.ID)
	if err != nil {
		return 0, err
	}
	rev := c.Revision + 1
	if err := log.Put(revKey(rev), encodeChange(op, name)); err != nil {
		return 0, err
	}
	if err := trimChanges(log, rev, s.maxChanges); err != nil {
		return 0, err
	}
	c.Revision = rev
	c.Modified = now
	if _, err := putCalendar(tx, c); err != nil {
		return 0, err
	}
	return rev, nil
}

// trimChanges deletes the oldest entries of log until at most keep remain;
// rev is the newest revision in log.
func trimChanges(log *bbolt.Bucket, rev, keep uint64) error {
	cur := log.Cursor()
	for k, _ := cur.First(); k != nil; k, _ = cur.First() {
		if len(k) != 8 {
			return fmt.Errorf("cache: change log: %w: key %x", errCorrupt, k)
		}
		if rev-binary.BigEndian.Uint64(k)+1 <= keep {
			return nil
		}
		if err := cur.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Changes returns the current revision of calendar user/cal and the
// changes after revision since: at most one per name (its latest), sorted
// by Revision ascending. since == 0 is not special: it asks for every
// change since the calendar was created.
//
// It returns ErrTokenExpired if since is ahead of the current revision or
// if changes after since were trimmed from the log (see
// Options.MaxChanges), and ErrNotFound if the calendar does not exist.
func (s *Store) Changes(user, cal string, since uint64) (uint64, []Change, error) {
	var (
		rev uint64
		out []Change
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c, err := getCalendar(tx, user, cal)
		if err != nil {
			return err
		}
		rev, out = c.Revision, []Change{}
		if since > rev {
			return fmt.Errorf("%w: calendar %s/%s: revision %d is ahead of the current %d", ErrTokenExpired, user, cal, since, rev)
		}
		if since == rev {
			return nil
		}
		// The token is valid iff every change after since is still in the
		// log. The log holds consecutive revisions oldest..rev, so that is
		// oldest <= since+1.
		var oldest uint64
		var cur *bbolt.Cursor
		if log := calBucket(tx, bucketChanges, user, cal); log != nil {
			cur = log.Cursor()
			if k, _ := cur.First(); len(k) == 8 {
				oldest = binary.BigEndian.Uint64(k)
			}
		}
		if oldest == 0 || oldest > since+1 {
			return fmt.Errorf("%w: calendar %s/%s: changes after revision %d were trimmed (oldest kept %d)", ErrTokenExpired, user, cal, since, oldest)
		}
		var all []Change
		for k, v := cur.Seek(revKey(since + 1)); k != nil; k, v = cur.Next() {
			if len(k) != 8 || len(v) < 1 {
				return fmt.Errorf("cache: change log of %s/%s: %w: key %x", user, cal, errCorrupt, k)
			}
			all = append(all, Change{
				Name:     string(v[1:]),
				Revision: binary.BigEndian.Uint64(k),
				Deleted:  changeOp(v[0]) == opDelete,
			})
		}
		// Keep the latest change of each name, in revision order.
		seen := make(map[string]bool, len(all))
		for i := len(all) - 1; i >= 0; i-- {
			if !seen[all[i].Name] {
				seen[all[i].Name] = true
				out = append(out, all[i])
			}
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return nil
	})
	if err != nil {
		return 0, nil, wrap(err, "changes of %s/%s", user, cal)
	}
	return rev, out, nil
}
