package cache

import (
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// SourceState is the sync state of one upstream source, stored in bucket
// sources under its ID. ApplyUpstream saves it in the same transaction as
// the changes it describes.
type SourceState struct {
	// ID identifies the source; Calendar.Source refers to it.
	ID string
	// SyncToken is the CalDAV sync-collection token.
	SyncToken string
	// CTag is the CalDAV getctag at the last full sync.
	CTag string
	// ETag is the ICS feed's ETag.
	ETag string
	// LastModified is the ICS feed's Last-Modified, as received.
	LastModified string
	// LastAttempt is when the last sync started.
	LastAttempt time.Time
	// LastSuccess is when the last sync succeeded.
	LastSuccess time.Time
	// LastError is the error of the last failed sync ("" after a success).
	LastError string
	// Failures counts the consecutive failed syncs.
	Failures int
	// NextDue is when the next sync is due.
	NextDue time.Time
	// Quarantine lists the upstream items that could not be stored, as
	// "href: reason".
	Quarantine []string
	// HeldDeletes counts the deletions held back by the mass-delete guard.
	HeldDeletes int
}

// getSource reads the state of source id; ok is false if there is none.
func getSource(tx *bbolt.Tx, id string) (st SourceState, ok bool, err error) {
	v := tx.Bucket(bucketSources).Get([]byte(id))
	if v == nil {
		return SourceState{}, false, nil
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return SourceState{}, false, fmt.Errorf("cache: source %q: %w: %v", id, errCorrupt, err)
	}
	st.ID = id
	return st, true, nil
}

// putSource writes st under st.ID, which must not be empty.
func putSource(tx *bbolt.Tx, st *SourceState) error {
	v, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("cache: encode source %q: %w", st.ID, err)
	}
	return tx.Bucket(bucketSources).Put([]byte(st.ID), v)
}

// GetSource returns the sync state of source id.
//
// It returns ErrNotFound if none was stored.
func (s *Store) GetSource(id string) (SourceState, error) {
	var st SourceState
	err := s.db.View(func(tx *bbolt.Tx) error {
		var ok bool
		var err error
		st, ok, err = getSource(tx, id)
		if err == nil && !ok {
			err = fmt.Errorf("%w: source %q", ErrNotFound, id)
		}
		return err
	})
	if err != nil {
		return SourceState{}, wrap(err, "get source %q", id)
	}
	return st, nil
}

// PutSource stores st under st.ID, replacing the previous state.
//
// It returns ErrInvalid if st.ID is empty.
func (s *Store) PutSource(st SourceState) error {
	if st.ID == "" {
		return fmt.Errorf("%w: empty source id", ErrInvalid)
	}
	_, err := s.write(func(tx *bbolt.Tx) (refused, err error) {
		return nil, putSource(tx, &st)
	})
	return wrap(err, "put source %q", st.ID)
}

// ListSources returns the sync state of every source, sorted by ID.
func (s *Store) ListSources() ([]SourceState, error) {
	out := []SourceState{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketSources).ForEach(func(k, _ []byte) error {
			st, ok, err := getSource(tx, string(k))
			if ok {
				out = append(out, st)
			}
			return err
		})
	})
	if err != nil {
		return nil, wrap(err, "list sources")
	}
	return out, nil
}
