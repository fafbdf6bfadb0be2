package cache

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
)

// UpstreamChange is one change reported by an upstream.
type UpstreamChange struct {
	// Delete is true if the upstream no longer has the object.
	Delete bool
	// Object is the object as the upstream has it: Name (the local
	// resource name), UID, Component, Start, End, Warnings, Data,
	// UpstreamHref and UpstreamETag. A Delete needs only Name.
	Object Object
}

// ApplyResult says what ApplyUpstream did.
type ApplyResult struct {
	// Put, Deleted and Unchanged count the objects written, deleted, and
	// found already as the upstream has them (byte-identical puts, deletes
	// of missing objects).
	Put, Deleted, Unchanged int
	// Skipped names the objects left alone because they have pending
	// outbox entries: local edits win until they are pushed. With full,
	// it includes such objects that the resync would have deleted.
	Skipped []string
	// UIDConflicts names the puts refused because another object of the
	// calendar has the UID; the caller records them as quarantined.
	UIDConflicts []string
}

// ApplyUpstream writes a batch of upstream changes into calendar user/cal
// and saves st (the source's new sync token or feed ETag), in one
// transaction, so that the token never runs ahead of the data.
//
// Deletions are applied first (the explicit ones, then with full the
// resync's), then puts, so that an upstream rename (delete of the old
// name, put of the new one with the same UID) never conflicts; a batch
// should name each object once. With full=true (a full resync), every
// object of the calendar that changes does not name is deleted.
//
// Objects with a pending outbox entry are skipped, whatever the change. A
// put whose Data is byte-identical to the stored object only updates its
// UpstreamHref and UpstreamETag and counts as Unchanged: the revision
// does not move, so the ctag does not churn. Every other put or delete
// bumps the revision once and is logged, with the UID index kept, as by
// PutObject and DeleteObject. A put whose UID another object of the
// calendar has is left out and reported in UIDConflicts. No outbox
// entries are created.
//
// Errors: ErrNotFound if the calendar does not exist; ErrInvalid if st.ID
// is empty or a change has a bad name or (for a put) an empty UID. Nothing
// is written when an error is returned.
func (s *Store) ApplyUpstream(user, cal string, changes []UpstreamChange, full bool, st SourceState) (ApplyResult, error) {
	if st.ID == "" {
		return ApplyResult{}, fmt.Errorf("%w: empty source id", ErrInvalid)
	}
	var (
		dels  []string
		puts  []Object
		named = make(map[string]bool, len(changes))
	)
	for _, ch := range changes {
		obj := ch.Object
		if ch.Delete {
			if err := validName(obj.Name); err != nil {
				return ApplyResult{}, err
			}
			dels = append(dels, obj.Name)
		} else {
			if err := validObject(&obj); err != nil {
				return ApplyResult{}, err
			}
			puts = append(puts, obj)
		}
		named[obj.Name] = true
	}

	var res ApplyResult
	refused, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		res = ApplyResult{}       // reset: this may run more than once
		dels := slices.Clip(dels) // appends below must not reach a rerun
		if _, err := getCalendar(tx, user, cal); err != nil {
			if errors.Is(err, ErrNotFound) {
				return err, nil
			}
			return nil, err
		}
		if full {
			if objs := calBucket(tx, bucketObjects, user, cal); objs != nil {
				err := objs.ForEach(func(k, _ []byte) error {
					if !named[string(k)] {
						dels = append(dels, string(k))
					}
					return nil
				})
				if err != nil {
					return nil, err
				}
			}
		}
		for _, name := range dels {
			if hasPending(tx, user, cal, name) {
				res.Skipped = append(res.Skipped, name)
				continue
			}
			r, err := s.deleteObject(tx, user, cal, name, "", byUpstream)
			switch {
			case err != nil:
				return nil, err
			case errors.Is(r, ErrNotFound):
				res.Unchanged++
			case r != nil:
				return nil, r // cannot happen without a condition; abort
			default:
				res.Deleted++
			}
		}
		for _, obj := range puts {
			if hasPending(tx, user, cal, obj.Name) {
				res.Skipped = append(res.Skipped, obj.Name)
				continue
			}
			if same, err := sameData(tx, user, cal, &obj); err != nil {
				return nil, err
			} else if same {
				res.Unchanged++
				continue
			}
			_, _, r, err := s.putObject(tx, user, cal, obj, PutConditions{}, byUpstream)
			var uc *UIDConflictError
			switch {
			case err != nil:
				return nil, err
			case errors.As(r, &uc):
				res.UIDConflicts = append(res.UIDConflicts, obj.Name)
			case r != nil:
				return nil, r // cannot happen: the calendar exists; abort
			default:
				res.Put++
			}
		}
		return nil, putSource(tx, &st)
	})
	if err != nil {
		return ApplyResult{}, wrap(err, "apply upstream changes to %s/%s", user, cal)
	}
	if refused != nil {
		return ApplyResult{}, refused
	}
	return res, nil
}

// sameData reports whether the stored object obj.Name has exactly
// obj.Data; if so, it records obj's upstream fields in it (without a
// revision bump) where they differ.
func sameData(tx *bbolt.Tx, user, cal string, obj *Object) (bool, error) {
	objs := calBucket(tx, bucketObjects, user, cal)
	if objs == nil {
		return false, nil
	}
	v := objs.Get([]byte(obj.Name))
	if v == nil {
		return false, nil
	}
	cur, data, err := decodeHeader(obj.Name, v)
	if err != nil || !bytes.Equal(data, obj.Data) {
		return false, err
	}
	if cur.UpstreamHref == obj.UpstreamHref && cur.UpstreamETag == obj.UpstreamETag {
		return true, nil
	}
	return true, setUpstream(objs, cur, data, obj.UpstreamHref, obj.UpstreamETag)
}
