package cache

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// OutboxEntry is a client write to a mirrored CalDAV calendar that is
// still to be pushed upstream (DESIGN.md §6).
//
// Client writes (PutObject, DeleteObject, MoveObject) to a calendar whose
// Kind is "caldav" append an entry in the same transaction as the write.
// There is at most one pending entry per (User, Cal, Name): a later write
// replaces the pending entry by a new one (with a new Seq, a fresh
// Attempts, NextTry and LastError, and the Created of the first) that
// keeps the original BaseETag and Href, so a replay sends one request
// against the version the upstream still has. A delete of an object whose
// pending put was never pushed (BaseETag and Href empty, Sent false)
// removes the entry altogether: the upstream never saw the object. If
// Sent is set, the delete stays (with BaseETag and Href empty): the
// upstream may hold the object.
type OutboxEntry struct {
	// Seq orders the entries (write order) and identifies one.
	Seq uint64
	// User and Cal name the calendar, Name the object within it.
	User, Cal string
	Name      string
	// Op is "put" or "delete".
	Op string
	// BaseETag is the object's UpstreamETag when the client wrote, for
	// If-Match; "" is a new object (If-None-Match: *).
	BaseETag string
	// Href is the object's UpstreamHref at that time; "" is a new object,
	// whose href the pusher derives from the calendar URL and Name.
	Href string
	// Attempts counts the failed pushes (see RetryOutbox).
	Attempts int
	// NextTry is when the entry is due (see DueOutbox).
	NextTry time.Time
	// LastError is the error of the last failed push.
	LastError string
	// Created is when the first write of the pending change was made.
	Created time.Time
	// Sent is set (MarkOutboxSent) when a push of a new object (BaseETag
	// and Href empty) was sent and got no reply: the upstream may have
	// created the object. A later write of the same object keeps it.
	Sent bool `json:",omitempty"`
}

// Values of OutboxEntry.Op.
const (
	outboxPut    = "put"
	outboxDelete = "delete"
	// outboxProps is a change of the calendar's own properties; its
	// entries carry PropsName as their name, which no object can have.
	outboxProps = "proppatch"
)

// seqKey returns the key of sequence number seq.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// pendingBucket returns the pending index of calendar user/cal (name →
// seq key of the object's pending entry), or nil if it has none.
func pendingBucket(tx *bbolt.Tx, user, cal string) *bbolt.Bucket {
	p := tx.Bucket(bucketOutbox).Bucket(keyPending)
	if p == nil {
		return nil
	}
	u := p.Bucket([]byte(user))
	if u == nil {
		return nil
	}
	return u.Bucket([]byte(cal))
}

// hasPending reports whether object name of calendar user/cal has a
// pending outbox entry.
func hasPending(tx *bbolt.Tx, user, cal, name string) bool {
	p := pendingBucket(tx, user, cal)
	return p != nil && p.Get([]byte(name)) != nil
}

// getOutbox reads entry key of the outbox ob; ok is false if it does not
// exist.
func getOutbox(ob *bbolt.Bucket, key []byte) (e OutboxEntry, ok bool, err error) {
	v := ob.Get(key)
	if v == nil || len(key) != 8 {
		return OutboxEntry{}, false, nil
	}
	e, err = decodeOutbox(key, v)
	return e, err == nil, err
}

// decodeOutbox decodes the outbox value v stored under key k.
func decodeOutbox(k, v []byte) (OutboxEntry, error) {
	var e OutboxEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return OutboxEntry{}, fmt.Errorf("cache: outbox entry %x: %w: %v", k, errCorrupt, err)
	}
	e.Seq = binary.BigEndian.Uint64(k)
	return e, nil
}

// putOutbox writes e under its Seq. The index is not touched.
func putOutbox(tx *bbolt.Tx, e *OutboxEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("cache: encode outbox entry %d: %w", e.Seq, err)
	}
	return tx.Bucket(bucketOutbox).Put(seqKey(e.Seq), v)
}

// enqueue records a client write (op on object name of calendar user/cal)
// in the outbox, coalescing it with a pending entry of the same object as
// OutboxEntry describes. cur is the object before the write (nil if it
// did not exist).
func enqueue(tx *bbolt.Tx, user, cal, name, op string, cur *Object, now time.Time) error {
	ob := tx.Bucket(bucketOutbox)
	e := OutboxEntry{User: user, Cal: cal, Name: name, Op: op, NextTry: now, Created: now}
	var replaced uint64 // seq of the pending entry this write replaces
	if cur != nil {
		e.BaseETag, e.Href = cur.UpstreamETag, cur.UpstreamHref
	}
	if p := pendingBucket(tx, user, cal); p != nil {
		if k := p.Get([]byte(name)); k != nil {
			old, ok, err := getOutbox(ob, k)
			if err != nil {
				return err
			}
			// !ok: the index points at nothing, which one transaction for
			// both never leaves behind; overwrite the index entry below.
			if ok {
				if err := ob.Delete(k); err != nil {
					return err
				}
				e.BaseETag, e.Href, e.Created, e.Sent = old.BaseETag, old.Href, old.Created, old.Sent
				if op == outboxDelete && old.BaseETag == "" && old.Href == "" && !old.Sent {
					return unindex(tx, user, cal, name, k)
				}
				replaced = old.Seq
			}
		}
	}
	seq, err := ob.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if err := putOutbox(tx, &e); err != nil {
		return err
	}
	if replaced != 0 {
		// A push of the replaced entry may be in flight: CompleteOutbox
		// follows this link to rebase the new entry on what it pushed.
		rb, err := ob.CreateBucketIfNotExists(keyReplaced)
		if err != nil {
			return err
		}
		if err := rb.Put(seqKey(replaced), seqKey(seq)); err != nil {
			return err
		}
	}
	p, err := createPath(ob, string(keyPending), user, cal)
	if err != nil {
		return err
	}
	return p.Put([]byte(name), seqKey(seq))
}

// unindex removes name from the pending index of calendar user/cal if it
// points at seq key k, and prunes the levels left empty.
func unindex(tx *bbolt.Tx, user, cal, name string, k []byte) error {
	p := pendingBucket(tx, user, cal)
	if p == nil || string(p.Get([]byte(name))) != string(k) {
		return nil
	}
	if err := p.Delete([]byte(name)); err != nil {
		return err
	}
	if first, _ := p.Cursor().First(); first != nil {
		return nil
	}
	return deleteNested(tx.Bucket(bucketOutbox).Bucket(keyPending), user, cal)
}

// removeOutbox deletes entry e and its index entry.
func removeOutbox(tx *bbolt.Tx, e *OutboxEntry) error {
	k := seqKey(e.Seq)
	if err := tx.Bucket(bucketOutbox).Delete(k); err != nil {
		return err
	}
	return unindex(tx, e.User, e.Cal, e.Name, k)
}

// deleteCalendarOutbox removes the outbox entries of calendar user/cal and
// its pending index.
func deleteCalendarOutbox(tx *bbolt.Tx, user, cal string) error {
	ob := tx.Bucket(bucketOutbox)
	var keys [][]byte
	err := forEachOutbox(ob, func(k []byte, e OutboxEntry) (bool, error) {
		if e.User == user && e.Cal == cal {
			keys = append(keys, k)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := ob.Delete(k); err != nil {
			return err
		}
	}
	return deleteNested(ob.Bucket(keyPending), user, cal)
}

// forEachOutbox calls fn with every outbox entry in Seq order until fn
// returns false. k is a copy of the key.
func forEachOutbox(ob *bbolt.Bucket, fn func(k []byte, e OutboxEntry) (bool, error)) error {
	c := ob.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil || len(k) != 8 { // the pending index
			continue
		}
		e, err := decodeOutbox(k, v)
		if err != nil {
			return err
		}
		more, err := fn(append([]byte(nil), k...), e)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// PendingOutbox returns the pending outbox entries of calendar user/cal in
// Seq order. An empty user returns the entries of every calendar; an
// empty cal those of every calendar of user.
func (s *Store) PendingOutbox(user, cal string) ([]OutboxEntry, error) {
	out := []OutboxEntry{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = out[:0]
		return forEachOutbox(tx.Bucket(bucketOutbox), func(_ []byte, e OutboxEntry) (bool, error) {
			if user == "" || (e.User == user && (cal == "" || e.Cal == cal)) {
				out = append(out, e)
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, wrap(err, "pending outbox of %s/%s", user, cal)
	}
	return out, nil
}

// DueOutbox returns at most limit outbox entries (all if limit <= 0) whose
// NextTry is not after now, in Seq order.
func (s *Store) DueOutbox(now time.Time, limit int) ([]OutboxEntry, error) {
	out := []OutboxEntry{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = out[:0]
		return forEachOutbox(tx.Bucket(bucketOutbox), func(_ []byte, e OutboxEntry) (bool, error) {
			if !e.NextTry.After(now) {
				out = append(out, e)
			}
			return limit <= 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, wrap(err, "due outbox")
	}
	return out, nil
}

// CompleteOutbox records a successful push of outbox entry seq: it removes
// the entry and, for a put, sets the object's UpstreamHref and
// UpstreamETag to upstreamHref and upstreamETag, but only if the object's
// ETag is still etag (the local bytes that were pushed): a local write
// made meanwhile has its own pending entry and keeps the object's old
// upstream fields, which that entry's BaseETag matches. The object's
// revision does not change. One transaction.
//
// If a later write of the same object replaced entry seq while it was
// being pushed, the push still happened: the entry that replaced it is
// rebased on the pushed version (its BaseETag and Href become
// upstreamETag and upstreamHref, as do the object's upstream fields), so
// that its own push is not taken for a conflict.
//
// It returns ErrNotFound if entry seq does not exist (completed or
// dropped) and replaced no live entry.
func (s *Store) CompleteOutbox(seq uint64, etag, upstreamHref, upstreamETag string) error {
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		ob := tx.Bucket(bucketOutbox)
		e, ok, err := getOutbox(ob, seqKey(seq))
		if err != nil {
			return nil, err
		}
		if !ok {
			live, found, err := followReplaced(ob, seq)
			if err != nil || !found {
				return fmt.Errorf("%w: outbox entry %d", ErrNotFound, seq), err
			}
			return nil, rebase(tx, &live, upstreamHref, upstreamETag)
		}
		if err := removeOutbox(tx, &e); err != nil {
			return nil, err
		}
		if e.Op != outboxPut {
			return nil, nil
		}
		objs := calBucket(tx, bucketObjects, e.User, e.Cal)
		if objs == nil {
			return nil, nil
		}
		v := objs.Get([]byte(e.Name))
		if v == nil {
			return nil, nil
		}
		o, data, err := decodeHeader(e.Name, v)
		if err != nil || o.ETag != etag {
			return nil, err
		}
		return nil, setUpstream(objs, o, data, upstreamHref, upstreamETag)
	})
	if err != nil {
		return wrap(err, "complete outbox entry %d", seq)
	}
	return refused
}

// setUpstream rewrites the record of object o, whose data is data, with
// new upstream fields, keeping its revision.
func setUpstream(objs *bbolt.Bucket, o Object, data []byte, href, etag string) error {
	o.UpstreamHref, o.UpstreamETag = href, etag
	o.Data = data // encodeObject copies it before Put
	return objs.Put([]byte(o.Name), encodeObject(&o))
}

// RetryOutbox records a failed push of outbox entry seq: it increments
// Attempts and sets NextTry and LastError.
//
// It returns ErrNotFound if entry seq does not exist.
func (s *Store) RetryOutbox(seq uint64, nextTry time.Time, lastErr string) error {
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		e, ok, err := getOutbox(tx.Bucket(bucketOutbox), seqKey(seq))
		if err != nil || !ok {
			return fmt.Errorf("%w: outbox entry %d", ErrNotFound, seq), err
		}
		e.Attempts++
		e.NextTry = nextTry.UTC()
		e.LastError = lastErr
		return nil, putOutbox(tx, &e)
	})
	if err != nil {
		return wrap(err, "retry outbox entry %d", seq)
	}
	return refused
}

// MarkOutboxSent records that a push of outbox entry seq, a new object,
// was sent and got no reply (see OutboxEntry.Sent). If a later write
// replaced the entry meanwhile, the entry that now stands for it is
// marked.
//
// It returns ErrNotFound if entry seq does not exist and replaced no live
// entry.
func (s *Store) MarkOutboxSent(seq uint64) error {
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		ob := tx.Bucket(bucketOutbox)
		e, ok, err := getOutbox(ob, seqKey(seq))
		if err == nil && !ok {
			e, ok, err = peekReplaced(ob, seq)
		}
		if err != nil || !ok {
			return fmt.Errorf("%w: outbox entry %d", ErrNotFound, seq), err
		}
		if e.Sent {
			return nil, nil
		}
		e.Sent = true
		return nil, putOutbox(tx, &e)
	})
	if err != nil {
		return wrap(err, "mark outbox entry %d sent", seq)
	}
	return refused
}

// peekReplaced is followReplaced without removing the links: a later
// CompleteOutbox of seq still finds them.
func peekReplaced(ob *bbolt.Bucket, seq uint64) (OutboxEntry, bool, error) {
	rb := ob.Bucket(keyReplaced)
	if rb == nil {
		return OutboxEntry{}, false, nil
	}
	k := seqKey(seq)
	for range 1000 { // as in followReplaced
		next := rb.Get(k)
		if next == nil {
			return OutboxEntry{}, false, nil
		}
		e, ok, err := getOutbox(ob, next)
		if err != nil || ok {
			return e, ok, err
		}
		k = next
	}
	return OutboxEntry{}, false, nil
}

// DropOutbox removes outbox entry seq without pushing it (a permanent
// failure, already logged and kept as a Conflict where it matters).
//
// It returns ErrNotFound if entry seq does not exist.
func (s *Store) DropOutbox(seq uint64) error {
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		e, ok, err := getOutbox(tx.Bucket(bucketOutbox), seqKey(seq))
		if err != nil || !ok {
			return fmt.Errorf("%w: outbox entry %d", ErrNotFound, seq), err
		}
		return nil, removeOutbox(tx, &e)
	})
	if err != nil {
		return wrap(err, "drop outbox entry %d", seq)
	}
	return refused
}

// followReplaced follows the replacement links from seq to the live entry
// that now stands for it, removing the links it passes.
func followReplaced(ob *bbolt.Bucket, seq uint64) (OutboxEntry, bool, error) {
	rb := ob.Bucket(keyReplaced)
	if rb == nil {
		return OutboxEntry{}, false, nil
	}
	k := seqKey(seq)
	for range 1000 { // a chain is as long as the writes during one push
		next := rb.Get(k)
		if next == nil {
			return OutboxEntry{}, false, nil
		}
		next = append([]byte(nil), next...)
		if err := rb.Delete(k); err != nil {
			return OutboxEntry{}, false, err
		}
		e, ok, err := getOutbox(ob, next)
		if err != nil || ok {
			return e, ok, err
		}
		k = next
	}
	return OutboxEntry{}, false, nil
}

// rebase records that the upstream now holds the version a replaced
// entry pushed: the live entry e will send its If-Match against it.
func rebase(tx *bbolt.Tx, e *OutboxEntry, href, etag string) error {
	e.BaseETag, e.Href = etag, href
	if err := putOutbox(tx, e); err != nil {
		return err
	}
	objs := calBucket(tx, bucketObjects, e.User, e.Cal)
	if objs == nil {
		return nil
	}
	v := objs.Get([]byte(e.Name))
	if v == nil {
		return nil
	}
	o, data, err := decodeHeader(e.Name, v)
	if err != nil {
		return err
	}
	return setUpstream(objs, o, data, href, etag)
}

// PropsName is the Name of outbox entries that push a calendar's
// properties (Op "proppatch"): no object name contains a slash.
const PropsName = "/props"
