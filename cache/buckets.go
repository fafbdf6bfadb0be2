package cache

import (
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Every bucket of the store is declared here, once. The layout is
// described in DESIGN.md §4; nested levels are bbolt sub-buckets.
var (
	// bucketMeta holds store-wide metadata: keySchema.
	bucketMeta = []byte("meta")
	// bucketCalendars: {user} / {cal id} → JSON calendarRecord.
	bucketCalendars = []byte("calendars")
	// bucketObjects: {user} / {cal id} / {name} → object record (see record.go).
	bucketObjects = []byte("objects")
	// bucketUIDs: {user} / {cal id} / {uid} → name.
	bucketUIDs = []byte("uids")
	// bucketChanges: {user} / {cal id} / {big-endian uint64 revision} → op byte + name.
	bucketChanges = []byte("changes")
	// bucketOutbox: {seq} → pending upstream write. Not used yet.
	bucketOutbox = []byte("outbox")
	// bucketSources: {source id} → upstream sync state. Not used yet.
	bucketSources = []byte("sources")
	// bucketConflicts: {user} / {cal id} / {name} / {seq} → losing side of a conflict. Not used yet.
	bucketConflicts = []byte("conflicts")
)

// rootBuckets lists the top-level buckets that Open creates.
var rootBuckets = [][]byte{
	bucketMeta,
	bucketCalendars,
	bucketObjects,
	bucketUIDs,
	bucketChanges,
	bucketOutbox,
	bucketSources,
	bucketConflicts,
}

// keySchema is the key in bucketMeta holding the schema version as a
// big-endian uint32.
var keySchema = []byte("schema")

// schemaVersion is the schema version this package writes and reads.
const schemaVersion uint32 = 1

// calBucket returns the bucket root/{user}/{cal}, or nil if any level is
// missing.
func calBucket(tx *bbolt.Tx, root []byte, user, cal string) *bbolt.Bucket {
	r := tx.Bucket(root)
	if r == nil {
		return nil
	}
	u := r.Bucket([]byte(user))
	if u == nil {
		return nil
	}
	return u.Bucket([]byte(cal))
}

// createCalBucket returns the bucket root/{user}/{cal}, creating the
// missing levels.
func createCalBucket(tx *bbolt.Tx, root []byte, user, cal string) (*bbolt.Bucket, error) {
	r := tx.Bucket(root)
	if r == nil {
		return nil, fmt.Errorf("cache: missing bucket %q", root)
	}
	u, err := r.CreateBucketIfNotExists([]byte(user))
	if err != nil {
		return nil, err
	}
	return u.CreateBucketIfNotExists([]byte(cal))
}

// deleteCalBucket removes the bucket root/{user}/{cal} and everything in
// it, and the user level if it is left empty. A missing bucket is not an
// error.
func deleteCalBucket(tx *bbolt.Tx, root []byte, user, cal string) error {
	r := tx.Bucket(root)
	if r == nil {
		return nil
	}
	u := r.Bucket([]byte(user))
	if u == nil {
		return nil
	}
	if err := u.DeleteBucket([]byte(cal)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
		return err
	}
	if k, _ := u.Cursor().First(); k == nil {
		return r.DeleteBucket([]byte(user))
	}
	return nil
}
