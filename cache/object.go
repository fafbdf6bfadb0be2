package cache

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Object is one calendar object resource. Data holds the exact bytes
// received and is only filled where a method says so.
type Object struct {
	// Name is the resource name within the calendar, e.g. "abc.ics".
	Name string
	// UID is the iCalendar UID shared by the components of the object.
	UID string
	// Component is the component type: VEVENT, VTODO, VJOURNAL, ...
	Component string
	// Start begins the object's time span, used for time-range selection.
	// The zero Start is unbounded in the past. Stored times come back in UTC.
	Start time.Time
	// End ends the object's time span. The zero End is unbounded in the
	// future (open-ended recurrence, no dates).
	End time.Time
	// Exact says that Start and End are exactly the time-range interval
	// of the object's only instance (ical.Info.Exact), so a time-range
	// filter can be decided from them alone. False in records written
	// before the field existed: such objects are parsed to be matched.
	Exact bool
	// ETag is the strong entity tag without quotes: lowercase hex of the
	// first 16 bytes of the SHA-256 of Data. Set by the store.
	ETag string
	// Size is len(Data). Set by the store.
	Size int64
	// Modified is when the object was last put (UTC). Set by the store.
	Modified time.Time
	// Revision is the calendar revision at the object's last change. Set
	// by the store.
	Revision uint64
	// Warnings are problems found while indexing (e.g. an unknown TZID),
	// stored as given.
	Warnings []string
	// Data is the object as received, byte for byte.
	Data []byte
	// UpstreamHref is the href of the object on the upstream server, ""
	// for local objects and for objects not yet pushed.
	UpstreamHref string
	// UpstreamETag is the upstream's entity tag of the object, as received
	// (a weak "W/..." tag is kept as such) but without surrounding quotes.
	UpstreamETag string
}

// writer says on whose behalf an object is written.
type writer int

const (
	// byClient is a CalDAV client write: it keeps the stored object's
	// upstream fields and, in a "caldav" calendar, enqueues an outbox
	// entry.
	byClient writer = iota
	// byUpstream stores the object as the upstream has it: it takes the
	// upstream fields from the object and enqueues nothing.
	byUpstream
)

// PutConditions are HTTP preconditions that PutObject checks inside its
// write transaction.
type PutConditions struct {
	// IfMatch is "" for no condition, "*" if the object must exist, and
	// otherwise the ETag (unquoted) the object must have.
	IfMatch string
	// IfNoneMatch, if true, requires that the object does not exist
	// (If-None-Match: *).
	IfNoneMatch bool
}

// validName reports whether name can name an object.
func validName(name string) error {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("%w: object name %q", ErrInvalid, name)
	}
	return nil
}

// checkIfMatch checks an If-Match value against the current object cur
// (nil if the object does not exist).
func checkIfMatch(ifMatch string, cur *Object) error {
	switch {
	case ifMatch == "":
		return nil
	case cur == nil:
		return fmt.Errorf("%w: if-match %q: object does not exist", ErrPrecondition, ifMatch)
	case ifMatch != "*" && ifMatch != cur.ETag:
		return fmt.Errorf("%w: if-match %q: etag is %q", ErrPrecondition, ifMatch, cur.ETag)
	}
	return nil
}

// PutObject stores obj in calendar user/cal on behalf of a client, taking
// Name, UID, Component, Start, End, Warnings and Data from obj and setting
// ETag, Size, Modified and Revision. UpstreamHref and UpstreamETag are
// kept from the object it replaces (the client does not know them) and
// are empty for a new object; obj's values are ignored. It returns the
// stored object's metadata (without Data), and created=true if no object
// of that name existed.
//
// In one transaction it writes the object record and the UID index entry
// (dropping the old UID's entry if the object's UID changed), bumps the
// calendar's revision, appends a put change record, trims the change log
// to Options.MaxChanges entries and, if the calendar's Kind is "caldav",
// enqueues a put in the outbox (see OutboxEntry). Concurrent calls share
// transactions (group commit); the write is durable when PutObject
// returns.
//
// Errors: ErrNotFound if the calendar does not exist; ErrPrecondition if
// cond fails; *UIDConflictError if another object of the calendar has the
// UID; ErrInvalid if the name or UID is empty or the name contains '/'.
func (s *Store) PutObject(user, cal string, obj Object, cond PutConditions) (Object, bool, error) {
	return s.putObjectTx(user, cal, obj, cond, byClient)
}

// PutObjectUpstream stores obj in calendar user/cal as the upstream has it,
// without enqueueing an outbox entry: after a conflict that the upstream
// wins, or to record what a push left upstream. It is PutObject otherwise
// (same transaction, revision bump and errors, with no preconditions),
// except that UpstreamHref and UpstreamETag are taken from obj.
func (s *Store) PutObjectUpstream(user, cal string, obj Object) (Object, error) {
	return s.PutObjectUpstreamIf(user, cal, obj, PutConditions{})
}

// PutObjectUpstreamIf is PutObjectUpstream under cond, checked in the
// write transaction: it lets a conflict resolution replace the local
// version it decided about, and not a client write that arrived since
// (ErrPrecondition then).
func (s *Store) PutObjectUpstreamIf(user, cal string, obj Object, cond PutConditions) (Object, error) {
	out, _, err := s.putObjectTx(user, cal, obj, cond, byUpstream)
	return out, err
}

// putObjectTx is PutObject and PutObjectUpstream.
func (s *Store) putObjectTx(user, cal string, obj Object, cond PutConditions, by writer) (Object, bool, error) {
	if err := validObject(&obj); err != nil {
		return Object{}, false, err
	}
	var (
		out     Object
		created bool
	)
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		out, created = Object{}, false // reset: this may run more than once
		out, created, refused, err = s.putObject(tx, user, cal, obj, cond, by)
		return refused, err
	})
	if err != nil {
		return Object{}, false, wrap(err, "put object %s/%s/%s", user, cal, obj.Name)
	}
	if refused != nil {
		return Object{}, false, refused
	}
	return out, created, nil
}

// validObject checks obj's name and UID and sets its ETag and Size.
func validObject(obj *Object) error {
	if err := validName(obj.Name); err != nil {
		return err
	}
	if obj.UID == "" {
		return fmt.Errorf("%w: empty uid in object %q", ErrInvalid, obj.Name)
	}
	obj.ETag = etagOf(obj.Data)
	obj.Size = int64(len(obj.Data))
	return nil
}

// putObject is PutObject (by == byClient) or PutObjectUpstream (byUpstream)
// inside tx; obj must have passed validObject. A refusal (missing
// calendar, failed precondition, UID conflict) is returned as refused,
// before anything is written, so that the batch it runs in can commit; err
// is a storage failure that must abort the transaction.
func (s *Store) putObject(tx *bbolt.Tx, user, cal string, obj Object, cond PutConditions, by writer) (out Object, created bool, refused, err error) {
	c, err := getCalendar(tx, user, cal)
	if errors.Is(err, ErrNotFound) {
		return Object{}, false, err, nil
	}
	if err != nil {
		return Object{}, false, nil, err
	}
	var cur *Object
	objs := calBucket(tx, bucketObjects, user, cal)
	if objs != nil {
		if v := objs.Get([]byte(obj.Name)); v != nil {
			o, err := decodeObject(obj.Name, v, false)
			if err != nil {
				return Object{}, false, nil, err
			}
			cur = &o
		}
	}
	if cond.IfNoneMatch && cur != nil {
		return Object{}, false, fmt.Errorf("%w: if-none-match: %s exists", ErrPrecondition, obj.Name), nil
	}
	if err := checkIfMatch(cond.IfMatch, cur); err != nil {
		return Object{}, false, err, nil
	}
	if uids := calBucket(tx, bucketUIDs, user, cal); uids != nil {
		if other := uids.Get([]byte(obj.UID)); other != nil && string(other) != obj.Name {
			return Object{}, false, &UIDConflictError{Name: string(other)}, nil
		}
	}

	// Checks done; from here on every failure aborts the transaction.
	now := time.Now().UTC()
	if by == byClient {
		obj.UpstreamHref, obj.UpstreamETag = "", ""
		if cur != nil {
			obj.UpstreamHref, obj.UpstreamETag = cur.UpstreamHref, cur.UpstreamETag
		}
		if c.Kind == kindCalDAV {
			if err := enqueue(tx, user, cal, obj.Name, outboxPut, cur, now); err != nil {
				return Object{}, false, nil, err
			}
		}
	}
	if objs, err = createCalBucket(tx, bucketObjects, user, cal); err != nil {
		return Object{}, false, nil, err
	}
	uids, err := createCalBucket(tx, bucketUIDs, user, cal)
	if err != nil {
		return Object{}, false, nil, err
	}
	rev, err := s.bump(tx, &c, opPut, obj.Name, now)
	if err != nil {
		return Object{}, false, nil, err
	}
	if cur != nil && cur.UID != obj.UID {
		if err := deleteUID(uids, cur.UID, obj.Name); err != nil {
			return Object{}, false, nil, err
		}
	}
	if err := uids.Put([]byte(obj.UID), []byte(obj.Name)); err != nil {
		return Object{}, false, nil, err
	}
	obj.Modified = now
	obj.Revision = rev
	v := encodeObject(&obj)
	if err := objs.Put([]byte(obj.Name), v); err != nil {
		return Object{}, false, nil, err
	}
	out, err = decodeObject(obj.Name, v, false)
	return out, cur == nil, nil, err
}

// deleteUID removes uid from the index if it points at name.
func deleteUID(uids *bbolt.Bucket, uid, name string) error {
	if v := uids.Get([]byte(uid)); v != nil && string(v) == name {
		return uids.Delete([]byte(uid))
	}
	return nil
}

// DeleteObject removes object name from calendar user/cal. ifMatch is ""
// for no condition, "*", or the ETag (unquoted) the object must have.
//
// In one transaction it removes the object and its UID index entry, bumps
// the calendar's revision, appends a delete change record (a tombstone
// for sync-collection), trimming the change log, and, if the calendar's
// Kind is "caldav", enqueues a delete in the outbox (see OutboxEntry).
//
// Errors: ErrNotFound if the calendar or the object does not exist;
// ErrPrecondition if ifMatch fails.
func (s *Store) DeleteObject(user, cal, name, ifMatch string) error {
	return s.deleteObjectTx(user, cal, name, ifMatch, byClient)
}

// DeleteObjectUpstream removes object name from calendar user/cal because
// the upstream no longer has it. It is DeleteObject without a condition
// and without an outbox entry; a pending outbox entry of the object is
// left alone (drop it with DropOutbox if it is moot).
//
// It returns ErrNotFound if the calendar or the object does not exist.
func (s *Store) DeleteObjectUpstream(user, cal, name string) error {
	return s.deleteObjectTx(user, cal, name, "", byUpstream)
}

// deleteObjectTx is DeleteObject and DeleteObjectUpstream.
func (s *Store) deleteObjectTx(user, cal, name, ifMatch string, by writer) error {
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		return s.deleteObject(tx, user, cal, name, ifMatch, by)
	})
	if err != nil {
		return wrap(err, "delete object %s/%s/%s", user, cal, name)
	}
	return refused
}

// deleteObject is DeleteObject (by == byClient) or DeleteObjectUpstream
// (byUpstream) inside tx; refused and err as in putObject.
func (s *Store) deleteObject(tx *bbolt.Tx, user, cal, name, ifMatch string, by writer) (refused, err error) {
	c, err := getCalendar(tx, user, cal)
	if errors.Is(err, ErrNotFound) {
		return err, nil
	}
	if err != nil {
		return nil, err
	}
	objs := calBucket(tx, bucketObjects, user, cal)
	v, missing := objectRecord(objs, user, cal, name)
	if missing != nil {
		return missing, nil
	}
	cur, err := decodeObject(name, v, false)
	if err != nil {
		return nil, err
	}
	if err := checkIfMatch(ifMatch, &cur); err != nil {
		return err, nil
	}
	now := time.Now().UTC()
	if by == byClient && c.Kind == kindCalDAV {
		if err := enqueue(tx, user, cal, name, outboxDelete, &cur, now); err != nil {
			return nil, err
		}
	}
	if _, err := s.bump(tx, &c, opDelete, name, now); err != nil {
		return nil, err
	}
	if uids := calBucket(tx, bucketUIDs, user, cal); uids != nil {
		if err := deleteUID(uids, cur.UID, name); err != nil {
			return nil, err
		}
	}
	return nil, objs.Delete([]byte(name))
}

// GetObject returns object name of calendar user/cal, with Data.
//
// It returns ErrNotFound if the calendar or the object does not exist.
func (s *Store) GetObject(user, cal, name string) (Object, error) {
	var o Object
	err := s.db.View(func(tx *bbolt.Tx) error {
		objs, err := objectsBucket(tx, user, cal)
		if err != nil {
			return err
		}
		var v []byte
		if objs != nil {
			v = objs.Get([]byte(name))
		}
		if v == nil {
			return fmt.Errorf("%w: object %s/%s/%s", ErrNotFound, user, cal, name)
		}
		o, err = decodeObject(name, v, true)
		return err
	})
	if err != nil {
		return Object{}, wrap(err, "get object %s/%s/%s", user, cal, name)
	}
	return o, nil
}

// objectsBucket returns the objects bucket of calendar user/cal, which is
// nil if the calendar has no objects yet. It returns ErrNotFound if the
// calendar does not exist.
func objectsBucket(tx *bbolt.Tx, user, cal string) (*bbolt.Bucket, error) {
	u := tx.Bucket(bucketCalendars).Bucket([]byte(user))
	if u == nil || u.Get([]byte(cal)) == nil {
		return nil, fmt.Errorf("%w: calendar %s/%s", ErrNotFound, user, cal)
	}
	return calBucket(tx, bucketObjects, user, cal), nil
}

// GetObjects returns the objects of calendar user/cal named in names, with
// Data, in the order of names. Names that do not exist are left out.
//
// It returns ErrNotFound if the calendar does not exist.
func (s *Store) GetObjects(user, cal string, names []string) ([]Object, error) {
	var out []Object
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = make([]Object, 0, len(names))
		objs, err := objectsBucket(tx, user, cal)
		if err != nil || objs == nil {
			return err
		}
		for _, name := range names {
			v := objs.Get([]byte(name))
			if v == nil {
				continue
			}
			o, err := decodeObject(name, v, true)
			if err != nil {
				return err
			}
			out = append(out, o)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "get objects of %s/%s", user, cal)
	}
	return out, nil
}

// ListObjects returns the metadata (without Data) of every object of
// calendar user/cal, sorted by Name.
//
// It returns ErrNotFound if the calendar does not exist.
func (s *Store) ListObjects(user, cal string) ([]Object, error) {
	return s.SelectObjects(user, cal, nil)
}

// SelectObjects calls keep with the metadata (without Data) of every
// object of calendar user/cal, in one read transaction, and returns the
// objects it keeps, with Data, sorted by Name. keep must not retain its
// argument's slices and must not call the Store. A nil keep returns every
// object's metadata without Data (as ListObjects).
//
// It returns ErrNotFound if the calendar does not exist.
func (s *Store) SelectObjects(user, cal string, keep func(Object) bool) ([]Object, error) {
	var out []Object
	err := s.db.View(func(tx *bbolt.Tx) error {
		out = []Object{}
		objs, err := objectsBucket(tx, user, cal)
		if err != nil || objs == nil {
			return err
		}
		cur := objs.Cursor()
		if keep == nil {
			// Counting first is cheaper than growing a slice of big structs.
			n := 0
			for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
				n++
			}
			out = make([]Object, 0, n)
		}
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			o, data, err := decodeHeader(string(k), v)
			if err != nil {
				return err
			}
			if keep != nil {
				if !keep(o) {
					continue
				}
				o.Data = cloneData(data)
			}
			out = append(out, o)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "select objects of %s/%s", user, cal)
	}
	return out, nil
}

// LookupUID returns the name of the object of calendar user/cal that has
// the given UID.
//
// It returns ErrNotFound if the calendar does not exist or no object has
// the UID.
func (s *Store) LookupUID(user, cal, uid string) (string, error) {
	var name string
	err := s.db.View(func(tx *bbolt.Tx) error {
		if _, err := objectsBucket(tx, user, cal); err != nil {
			return err
		}
		var v []byte
		if uids := calBucket(tx, bucketUIDs, user, cal); uids != nil && uid != "" {
			v = uids.Get([]byte(uid))
		}
		if v == nil {
			return fmt.Errorf("%w: uid %q in calendar %s/%s", ErrNotFound, uid, user, cal)
		}
		name = string(v)
		return nil
	})
	if err != nil {
		return "", wrap(err, "lookup uid in %s/%s", user, cal)
	}
	return name, nil
}

// refusal carries a refusal out of a write whose earlier steps already
// wrote: returned as err, it aborts the transaction so nothing is kept.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

// MoveObject moves object name of calendar user/from to calendar user/to
// as newName; with keep it copies instead. cond applies to the
// destination (IfNoneMatch: it must not exist). In one transaction it
// deletes the source (a tombstone in from's change log, unless keep) and
// writes the destination (a put in to's change log), so a crash leaves
// either both calendars as they were or the move complete. The outbox
// entries go into the same transaction: a delete if from is a "caldav"
// calendar (unless keep) and a put if to is one. The destination keeps
// its own upstream fields (empty if it is new), as with PutObject.
//
// It returns the destination's metadata and created=true if the
// destination did not exist. Errors: ErrNotFound if a calendar or the
// source does not exist; ErrPrecondition if cond fails;
// *UIDConflictError if the destination calendar already holds the UID
// under another name; ErrInvalid for a bad name.
func (s *Store) MoveObject(user, from, name, to, newName string, keep bool, cond PutConditions) (Object, bool, error) {
	if err := validName(newName); err != nil {
		return Object{}, false, err
	}
	var (
		out     Object
		created bool
	)
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		out, created = Object{}, false // reset: this may run more than once
		objs, err := objectsBucket(tx, user, from)
		if errors.Is(err, ErrNotFound) {
			return err, nil
		} else if err != nil {
			return nil, err
		}
		v, missing := objectRecord(objs, user, from, name)
		if missing != nil {
			return missing, nil
		}
		src, err := decodeObject(name, v, true)
		if err != nil {
			return nil, err
		}
		if !keep {
			if from == to && name == newName {
				return fmt.Errorf("%w: source and destination are the same", ErrInvalid), nil
			}
			if r, err := s.deleteObject(tx, user, from, name, "", byClient); r != nil || err != nil {
				return r, err
			}
		}
		src.Name = newName
		var r error
		out, created, r, err = s.putObject(tx, user, to, src, cond, byClient)
		switch {
		case err != nil:
			return nil, err
		case r != nil && !keep:
			return nil, refusal{r} // roll back the delete above
		}
		return r, nil
	})
	var rf refusal
	if errors.As(err, &rf) {
		return Object{}, false, rf.err
	}
	if err != nil {
		return Object{}, false, wrap(err, "move object %s/%s/%s", user, from, name)
	}
	if refused != nil {
		return Object{}, false, refused
	}
	return out, created, nil
}

// objectRecord returns the stored record of object name (objs may be
// nil), or a refusal wrapping ErrNotFound.
func objectRecord(objs *bbolt.Bucket, user, cal, name string) ([]byte, error) {
	var v []byte
	if objs != nil {
		v = objs.Get([]byte(name))
	}
	if v == nil {
		return nil, fmt.Errorf("%w: object %s/%s/%s", ErrNotFound, user, cal, name)
	}
	return v, nil
}
