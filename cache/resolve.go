package cache

import (
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
)

// Sides of a conflict: the values of Conflict.Kept and Resolution.Keep.
const (
	// KeptLocal is the version calgate's clients wrote.
	KeptLocal = "local"
	// KeptUpstream is the version the upstream server has.
	KeptUpstream = "upstream"
)

// GetConflict returns conflict seq of object name of calendar user/cal.
//
// It returns ErrNotFound if there is no such conflict.
func (s *Store) GetConflict(user, cal, name string, seq uint64) (Conflict, error) {
	var c Conflict
	err := s.db.View(func(tx *bbolt.Tx) error {
		var ok bool
		var err error
		c, ok, err = getConflict(tx, user, cal, name, seq)
		if err == nil && !ok {
			err = fmt.Errorf("%w: conflict %s/%s/%s/%d", ErrNotFound, user, cal, name, seq)
		}
		return err
	})
	if err != nil {
		return Conflict{}, wrap(err, "get conflict %s/%s/%s/%d", user, cal, name, seq)
	}
	return c, nil
}

// getConflict reads conflict seq of object name of calendar user/cal; ok
// is false if there is none. The result holds no memory of the mmap.
func getConflict(tx *bbolt.Tx, user, cal, name string, seq uint64) (c Conflict, ok bool, err error) {
	cb := calBucket(tx, bucketConflicts, user, cal)
	if cb == nil {
		return Conflict{}, false, nil
	}
	nb := cb.Bucket([]byte(name))
	if nb == nil {
		return Conflict{}, false, nil
	}
	v := nb.Get(seqKey(seq))
	if v == nil {
		return Conflict{}, false, nil
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return Conflict{}, false, fmt.Errorf("cache: conflict %s/%s/%s/%d: %w", user, cal, name, seq, errCorrupt)
	}
	c.User, c.Cal, c.Name, c.Seq = user, cal, name, seq
	return c, true, nil
}

// Resolution is a user's decision about one conflict (see ResolveConflict).
type Resolution struct {
	// Keep is the side that stays: KeptLocal or KeptUpstream.
	Keep string
	// Loser is the conflict's losing version, indexed by the caller: UID,
	// Component, Start, End and Warnings of Data, which must be the
	// conflict's LoserData (Name is taken from the conflict). It is needed
	// only when Keep is the losing side and the loser is not a deletion.
	Loser *Object
	// CurrentETag is the ETag of the calendar's object that the decision
	// was taken on, "" if the object did not exist. When the loser is to
	// replace the object, the object must still be that one.
	CurrentETag string
}

// ResolveConflict carries out r for conflict seq of object name of
// calendar user/cal, in one transaction.
//
// If r.Keep is the side the conflict kept (Conflict.Kept), the calendar
// stays as it is and the conflict record is removed. Otherwise the losing
// version becomes the calendar's object as a client write would make it
// (PutObject, or DeleteObject if the loser was a deletion): with a revision
// bump, a change record and, in a "caldav" calendar, an outbox entry, so
// that the engine pushes the decision upstream; and the conflict record is
// removed in the same transaction.
//
// Errors: ErrNotFound if the conflict does not exist (any more);
// ErrPrecondition if the object is no longer the one r.CurrentETag names
// (a write came in after the decision was shown); *UIDConflictError if
// another object of the calendar has the loser's UID; ErrInvalid if
// r.Keep is not a side, or r.Loser is missing or does not hold the
// conflict's LoserData.
func (s *Store) ResolveConflict(user, cal, name string, seq uint64, r Resolution) error {
	if r.Keep != KeptLocal && r.Keep != KeptUpstream {
		return fmt.Errorf("%w: keep %q: want %q or %q", ErrInvalid, r.Keep, KeptLocal, KeptUpstream)
	}
	var loser *Object
	if r.Loser != nil {
		o := *r.Loser
		o.Name = name
		if err := validObject(&o); err != nil {
			return err
		}
		loser = &o
	}
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		c, ok, err := getConflict(tx, user, cal, name, seq)
		if err != nil {
			return nil, err
		}
		if !ok {
			return fmt.Errorf("%w: conflict %s/%s/%s/%d", ErrNotFound, user, cal, name, seq), nil
		}
		if r.Keep != c.Kept {
			if refused, err := s.applyLoser(tx, &c, loser, r.CurrentETag); refused != nil || err != nil {
				return refused, err
			}
		}
		// Nothing was refused before this point that wrote: the object
		// write above refuses before writing, so a refusal leaves the
		// conflict and the object as they were.
		return deleteConflict(tx, user, cal, name, seq)
	})
	if err != nil {
		return wrap(err, "resolve conflict %s/%s/%s/%d", user, cal, name, seq)
	}
	return refused
}

// applyLoser makes the losing version of conflict c the calendar's object
// as a client write, if the object is still the one whose ETag is
// current ("" for none); refused and err as in putObject.
func (s *Store) applyLoser(tx *bbolt.Tx, c *Conflict, loser *Object, current string) (refused, err error) {
	var cur *Object
	if objs := calBucket(tx, bucketObjects, c.User, c.Cal); objs != nil {
		if v := objs.Get([]byte(c.Name)); v != nil {
			o, err := decodeObject(c.Name, v, false)
			if err != nil {
				return nil, err
			}
			cur = &o
		}
	}
	switch {
	case cur == nil && current != "":
		return fmt.Errorf("%w: object %s was deleted since", ErrPrecondition, c.Name), nil
	case cur != nil && cur.ETag != current:
		return fmt.Errorf("%w: object %s changed since (etag %q, decided on %q)", ErrPrecondition, c.Name, cur.ETag, current), nil
	}
	if c.LoserData == nil {
		if cur == nil {
			return nil, nil // the deletion already happened
		}
		return s.deleteObject(tx, c.User, c.Cal, c.Name, cur.ETag, byClient)
	}
	if loser == nil || loser.ETag != etagOf(c.LoserData) {
		return fmt.Errorf("%w: resolution of conflict %d: the losing version is missing or not the conflict's", ErrInvalid, c.Seq), nil
	}
	cond := PutConditions{IfNoneMatch: true}
	if cur != nil {
		cond = PutConditions{IfMatch: cur.ETag}
	}
	_, _, refused, err = s.putObject(tx, c.User, c.Cal, *loser, cond, byClient)
	return refused, err
}
