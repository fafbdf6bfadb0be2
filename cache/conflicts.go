package cache

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// Conflict is the losing side of a write conflict between the local copy
// and the upstream (DESIGN.md §6), kept for the user: calgate never drops
// either side silently. Conflicts are stored under
// conflicts/{User}/{Cal}/{Name}/{Seq}.
type Conflict struct {
	// Seq identifies the conflict; PutConflict assigns it.
	Seq uint64
	// User and Cal name the calendar, Name the object within it.
	User, Cal string
	Name      string
	// Kept is "upstream" or "local": which side is now the calendar's
	// object.
	Kept string
	// LoserData is the losing version's bytes, nil if the loser was a
	// deletion.
	LoserData []byte
	// LoserETag is the losing version's entity tag.
	LoserETag string
	// Reason says what happened, e.g. "412 on push: modified on both
	// sides" or "deleted upstream, modified locally".
	Reason string
	// Created is when the conflict was recorded (PutConflict sets it if
	// zero).
	Created time.Time
}

// PutConflict stores c under a new Seq and returns it as stored.
//
// Recording a loser is idempotent: if the object already has a conflict
// with the same Kept, LoserETag and LoserData (not nil), that one is
// returned and nothing is stored, so a push retried after a failure
// between recording the loser and replacing it records it once.
// Conflicts without loser data (a deletion lost) are separate events and
// are always stored.
//
// It returns ErrNotFound if calendar c.User/c.Cal does not exist and
// ErrInvalid if c.User, c.Cal or c.Name is empty.
func (s *Store) PutConflict(c Conflict) (Conflict, error) {
	if c.User == "" || c.Cal == "" || c.Name == "" {
		return Conflict{}, fmt.Errorf("%w: conflict needs user, calendar and name", ErrInvalid)
	}
	if c.Created.IsZero() {
		c.Created = time.Now()
	}
	c.Created = c.Created.UTC()
	var out Conflict
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		out = Conflict{} // reset: this may run more than once
		if _, err := getCalendar(tx, c.User, c.Cal); err != nil {
			return err, nil
		}
		root := tx.Bucket(bucketConflicts)
		if same, ok, err := sameConflict(tx, &c); err != nil || ok {
			out = same
			return nil, err
		}
		seq, err := root.NextSequence()
		if err != nil {
			return nil, err
		}
		b, err := createPath(root, c.User, c.Cal, c.Name)
		if err != nil {
			return nil, err
		}
		out = c
		out.Seq = seq
		v, err := json.Marshal(&out)
		if err != nil {
			return nil, fmt.Errorf("cache: encode conflict: %w", err)
		}
		return nil, b.Put(seqKey(seq), v)
	})
	if err != nil {
		return Conflict{}, wrap(err, "put conflict %s/%s/%s", c.User, c.Cal, c.Name)
	}
	if refused != nil {
		return Conflict{}, refused
	}
	return out, nil
}

// sameConflict returns the stored conflict of c's object that records the
// same loser as c (see PutConflict), if any.
func sameConflict(tx *bbolt.Tx, c *Conflict) (Conflict, bool, error) {
	if c.LoserData == nil {
		return Conflict{}, false, nil
	}
	cb := calBucket(tx, bucketConflicts, c.User, c.Cal)
	if cb != nil {
		cb = cb.Bucket([]byte(c.Name))
	}
	if cb == nil {
		return Conflict{}, false, nil
	}
	var found Conflict
	ok := false
	err := cb.ForEach(func(k, v []byte) error {
		var o Conflict
		if len(k) != 8 || json.Unmarshal(v, &o) != nil {
			return fmt.Errorf("cache: conflict %s/%s/%s/%x: %w", c.User, c.Cal, c.Name, k, errCorrupt)
		}
		if !ok && o.Kept == c.Kept && o.LoserETag == c.LoserETag && bytes.Equal(o.LoserData, c.LoserData) {
			o.User, o.Cal, o.Name, o.Seq = c.User, c.Cal, c.Name, binary.BigEndian.Uint64(k)
			found, ok = o, true
		}
		return nil
	})
	return found, ok, err
}

// ListConflicts returns the conflicts of every calendar of user (of every
// user if user is empty), sorted by Created, then Seq. An unknown user
// has an empty list.
func (s *Store) ListConflicts(user string) ([]Conflict, error) {
	out := []Conflict{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = out[:0]
		root := tx.Bucket(bucketConflicts)
		return eachBucket(root, func(u []byte, ub *bbolt.Bucket) error {
			if user != "" && string(u) != user {
				return nil
			}
			return eachBucket(ub, func(cal []byte, cb *bbolt.Bucket) error {
				return eachBucket(cb, func(name []byte, nb *bbolt.Bucket) error {
					return nb.ForEach(func(k, v []byte) error {
						var c Conflict
						if len(k) != 8 || json.Unmarshal(v, &c) != nil {
							return fmt.Errorf("cache: conflict %s/%s/%s/%x: %w", u, cal, name, k, errCorrupt)
						}
						c.User, c.Cal, c.Name, c.Seq = string(u), string(cal), string(name), binary.BigEndian.Uint64(k)
						out = append(out, c)
						return nil
					})
				})
			})
		})
	})
	if err != nil {
		return nil, wrap(err, "list conflicts of %s", user)
	}
	slices.SortFunc(out, func(a, b Conflict) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return compareUint(a.Seq, b.Seq)
	})
	return out, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// eachBucket calls fn with the name and bucket of every sub-bucket of b.
func eachBucket(b *bbolt.Bucket, fn func(name []byte, sub *bbolt.Bucket) error) error {
	return b.ForEachBucket(func(k []byte) error {
		return fn(k, b.Bucket(k))
	})
}

// DeleteConflict removes conflict seq of object name of calendar user/cal.
//
// It returns ErrNotFound if there is no such conflict.
func (s *Store) DeleteConflict(user, cal, name string, seq uint64) error {
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		return deleteConflict(tx, user, cal, name, seq)
	})
	if err != nil {
		return wrap(err, "delete conflict %s/%s/%s/%d", user, cal, name, seq)
	}
	return refused
}

// deleteConflict is DeleteConflict inside tx; refused and err as in
// putObject. It drops the buckets the conflict leaves empty.
func deleteConflict(tx *bbolt.Tx, user, cal, name string, seq uint64) (refused, err error) {
	notFound := fmt.Errorf("%w: conflict %s/%s/%s/%d", ErrNotFound, user, cal, name, seq)
	cb := calBucket(tx, bucketConflicts, user, cal)
	if cb == nil {
		return notFound, nil
	}
	nb := cb.Bucket([]byte(name))
	if nb == nil || nb.Get(seqKey(seq)) == nil {
		return notFound, nil
	}
	if err := nb.Delete(seqKey(seq)); err != nil {
		return nil, err
	}
	if k, _ := nb.Cursor().First(); k != nil {
		return nil, nil
	}
	if err := cb.DeleteBucket([]byte(name)); err != nil {
		return nil, err
	}
	if k, _ := cb.Cursor().First(); k != nil {
		return nil, nil
	}
	return nil, deleteCalBucket(tx, bucketConflicts, user, cal)
}
