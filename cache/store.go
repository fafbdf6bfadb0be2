// Package cache is calgate's store: a bbolt file that holds calendars,
// calendar object resources, the per-calendar change log behind CalDAV
// sync tokens and ctags (RFC 6578), the outbox of client writes still to
// be pushed to upstream CalDAV servers, per-source sync state, and the
// losing sides of write conflicts.
//
// The store is the single source of truth for everything calgate serves.
// It speaks calgate's own types (Calendar, Object, Change, OutboxEntry,
// SourceState, Conflict); it knows
// nothing of HTTP or WebDAV, and no bbolt type appears in its API. Every
// exported method is one transaction: a write is durable when the method
// returns without error.
package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Default values of Options fields.
const (
	defaultTimeout    = time.Second
	defaultMaxChanges = 10000

	// batchDelay is how long a group commit waits for more writers
	// (bbolt's DB.MaxBatchDelay, whose default of 10ms is tuned for etcd).
	// It is paid only when writers overlap (see Store.write): about the
	// time of an SSD fsync, so a batch gathers the writers that arrive
	// while the previous one commits.
	batchDelay = 2 * time.Millisecond
)

// Options configures Open. The zero value is valid.
type Options struct {
	// Logger receives lifecycle messages. Default: nil, silent.
	Logger *slog.Logger
	// Timeout is how long Open waits for the file lock before failing
	// with ErrLocked. Default: 1s.
	Timeout time.Duration
	// MaxChanges is the number of change-log entries kept per calendar;
	// sync tokens older than the retained log expire. Default: 10000.
	MaxChanges int
	// NoSync skips fsync after each commit. Writes are then not durable;
	// use it only to benchmark non-durable paths. Default: false.
	NoSync bool
}

// Store is an open store file. It is safe for concurrent use by multiple
// goroutines.
type Store struct {
	// read only after Open - no locking needed
	db         *bbolt.DB
	path       string
	log        *slog.Logger
	maxChanges uint64

	writers atomic.Int32 // object writes in flight; see write

	spans spanIndexes // time-span index per calendar; see Candidates
}

// Open opens the store file at path, creating it if it does not exist.
//
// It fails with an error wrapping ErrLocked if another process holds the
// file for longer than opts.Timeout, and with ErrSchema if the file was
// written by a newer calgate (or is not a calgate store).
func Open(path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MaxChanges <= 0 {
		opts.MaxChanges = defaultMaxChanges
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is held by another process after waiting %s (is another calgate running on it?); stop that process or use another data file",
			ErrLocked, path, opts.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	var version uint32
	if err := db.Update(func(tx *bbolt.Tx) error {
		var err error
		version, err = initSchema(tx)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	s := &Store{
		db:         db,
		path:       path,
		log:        opts.Logger,
		maxChanges: uint64(opts.MaxChanges),
	}
	s.log.Info("store opened", "path", path, "schema", version, "max_changes", opts.MaxChanges, "no_sync", opts.NoSync)
	return s, nil
}

// initSchema checks the schema version in meta, writes version 1 into a
// new file, and creates the root buckets. It returns the file's version.
func initSchema(tx *bbolt.Tx) (uint32, error) {
	var version uint32
	if meta := tx.Bucket(bucketMeta); meta != nil {
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return 0, fmt.Errorf("%w: malformed schema version in bucket %q", ErrSchema, bucketMeta)
		}
		version = binary.BigEndian.Uint32(v)
		if version == 0 || version > schemaVersion {
			return 0, fmt.Errorf("%w: file has schema version %d, this calgate supports %d; use a newer calgate",
				ErrSchema, version, schemaVersion)
		}
	} else {
		if name, _ := tx.Cursor().First(); name != nil {
			return 0, fmt.Errorf("%w: file has bucket %q but no %q bucket; not a calgate store", ErrSchema, name, bucketMeta)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return 0, err
		}
		version = schemaVersion
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, version)); err != nil {
			return 0, err
		}
	}
	for _, name := range rootBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	return version, nil
}

// Close closes the store file. It waits for running transactions to end.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("cache: close %s: %w", s.path, err)
	}
	s.log.Info("store closed", "path", s.path)
	return nil
}

// Path returns the path of the store file.
func (s *Store) Path() string {
	return s.path
}
