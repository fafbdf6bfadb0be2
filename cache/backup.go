package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactTxMaxSize bounds the bytes copied per transaction by Compact, so
// that a large store is not copied in one huge transaction.
const compactTxMaxSize = 64 << 20

// WriteBackup writes a consistent copy of the whole store file to w from
// one read transaction, while writers go on. If size is not nil it is
// called once, before the first byte is written, with the number of bytes
// that follow (an HTTP handler sets Content-Length from it). It returns
// the number of bytes written.
//
// The copy is a valid store file: Open and Verify read it. Writers that
// must grow the file wait for the copy to end, so copy to a fast writer.
func (s *Store) WriteBackup(w io.Writer, size func(n int64)) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, wrap(err, "backup %s", s.path)
	}
	return n, nil
}

// Summary describes a store file checked by Verify.
type Summary struct {
	// Size is the file's size in bytes.
	Size int64
	// Schema is the schema version in the file's meta bucket.
	Schema uint32
	// Users, Calendars and Objects count what the file holds.
	Users, Calendars, Objects int
}

// Verify opens the store file at path read-only (sharing the file lock
// with other readers; a process holding the file for writing makes it fail
// with ErrLocked after a second), checks bbolt's page structure
// (tx.Check), that the schema version is one this package reads and every
// root bucket exists, and decodes every calendar and object record. It
// returns what the file holds.
//
// It fails with ErrSchema if the file is not a calgate store or was
// written by a newer calgate, and with an error naming the first broken
// page or record otherwise.
func Verify(path string) (Summary, error) {
	var sum Summary
	fi, err := os.Stat(path)
	if err != nil {
		return sum, fmt.Errorf("cache: verify: %w", err)
	}
	sum.Size = fi.Size()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: defaultTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return sum, fmt.Errorf("%w: %s is held for writing by another process; verify a copy instead", ErrLocked, path)
	}
	if err != nil {
		return sum, fmt.Errorf("cache: verify %s: %w (is it a calgate data file or backup?)", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() { // read to the end: the checker's goroutine ends then
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("corrupt pages: %w", errors.Join(errs...))
		}
		return verifySchema(tx, &sum)
	})
	if err != nil {
		return sum, wrap(err, "verify %s", path)
	}
	return sum, nil
}

// verifySchema checks the schema version and root buckets of tx's file,
// decodes every calendar and object record, and counts them into sum.
func verifySchema(tx *bbolt.Tx, sum *Summary) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: no %q bucket; not a calgate store", ErrSchema, bucketMeta)
	}
	v := meta.Get(keySchema)
	if len(v) != 4 {
		return fmt.Errorf("%w: malformed schema version in bucket %q", ErrSchema, bucketMeta)
	}
	sum.Schema = binary.BigEndian.Uint32(v)
	if sum.Schema == 0 || sum.Schema > schemaVersion {
		return fmt.Errorf("%w: file has schema version %d, this calgate supports %d; use a newer calgate",
			ErrSchema, sum.Schema, schemaVersion)
	}
	for _, name := range rootBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %q is missing", ErrSchema, name)
		}
	}
	err := eachBucket(tx.Bucket(bucketCalendars), func(user []byte, ub *bbolt.Bucket) error {
		sum.Users++
		return ub.ForEach(func(id, v []byte) error {
			if _, err := decodeCalendar(string(user), string(id), v); err != nil {
				return err
			}
			sum.Calendars++
			return nil
		})
	})
	if err != nil {
		return err
	}
	return eachBucket(tx.Bucket(bucketObjects), func(user []byte, ub *bbolt.Bucket) error {
		return eachBucket(ub, func(cal []byte, cb *bbolt.Bucket) error {
			return cb.ForEach(func(name, v []byte) error {
				if _, _, err := decodeHeader(string(name), v); err != nil {
					return fmt.Errorf("calendar %s/%s: %w", user, cal, err)
				}
				sum.Objects++
				return nil
			})
		})
	})
}

// Compact rewrites the store file at path without its free pages: it
// copies every bucket into path + ".compact" beside it, verifies the copy
// (Verify), and renames it over path, holding the file lock throughout.
// It returns the file's size before and after.
//
// It fails with ErrLocked if another process holds the file (a running
// calgate: compaction is offline only), and leaves the original file as
// it was on any error.
func Compact(path string) (before, after int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, fmt.Errorf("cache: compact: %w", err)
	}
	before = fi.Size()
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: defaultTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return before, 0, fmt.Errorf("%w: %s is held by another process (is calgate running on it?)", ErrLocked, path)
	}
	if err != nil {
		return before, 0, fmt.Errorf("cache: compact: open %s: %w", path, err)
	}
	defer src.Close() // after the rename: no one opens the old file meanwhile

	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return before, 0, fmt.Errorf("cache: compact: remove stale %s: %w", tmp, err)
	}
	dst, err := bbolt.Open(tmp, fi.Mode().Perm(), &bbolt.Options{Timeout: defaultTimeout})
	if err != nil {
		return before, 0, fmt.Errorf("cache: compact: create %s: %w", tmp, err)
	}
	if err := bbolt.Compact(dst, src, compactTxMaxSize); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return before, 0, fmt.Errorf("cache: compact %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		_ = os.Remove(tmp)
		return before, 0, fmt.Errorf("cache: compact: close %s: %w", tmp, err)
	}
	sum, err := Verify(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return before, 0, fmt.Errorf("cache: compact: the compacted copy does not verify, the original is kept: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return before, 0, fmt.Errorf("cache: compact: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return before, sum.Size, fmt.Errorf("cache: compact: %w", err)
	}
	return before, sum.Size, nil
}

// syncDir fsyncs directory dir, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
