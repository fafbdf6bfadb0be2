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
	// bucketOutbox: {big-endian uint64 seq} → JSON OutboxEntry, and the
	// pending index keyPending / {user} / {cal id} / {name} → seq key.
	bucketOutbox = []byte("outbox")
	// bucketSources: {source id} → JSON SourceState.
	bucketSources = []byte("sources")
	// bucketConflicts: {user} / {cal id} / {name} / {big-endian uint64 seq}
	// → JSON Conflict; the root bucket's sequence numbers them.
	bucketConflicts = []byte("conflicts")
)

// keyPending names the sub-bucket of bucketOutbox that indexes the pending
// entries by object, so that a write finds the entry it coalesces with,
// and ApplyUpstream the objects it must skip, without a scan. Outbox
// entry keys are 8 bytes long, so they never collide with it.
var keyPending = []byte("pending")

// keyReplaced names the sub-bucket of bucketOutbox that links the seq key
// of an entry replaced by a later write to the seq key of its
// replacement, for a push of the replaced entry that was in flight.
var keyReplaced = []byte("replaced")

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
	return deleteNested(tx.Bucket(root), user, cal)
}

// createPath returns the bucket b/path[0]/path[1]/..., creating the
// missing levels.
func createPath(b *bbolt.Bucket, path ...string) (*bbolt.Bucket, error) {
	for _, name := range path {
		var err error
		if b, err = b.CreateBucketIfNotExists([]byte(name)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// deleteNested removes the bucket r/{user}/{cal} (r may be nil) and the
// user level if it is left empty. A missing bucket is not an error.
func deleteNested(r *bbolt.Bucket, user, cal string) error {
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
