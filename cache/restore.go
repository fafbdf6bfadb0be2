package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Restore replaces the store file at path with a copy of the backup file
// (one written by WriteBackup), and keeps the file it replaces as path +
// ".before-restore". It returns the restored file's Summary.
//
// Every calendar of the copy gets a new Epoch. A restored calendar's
// revisions run again over numbers that clients may already hold in sync
// tokens and ctags (naming changes made after the backup was taken); with
// a new epoch those tokens are refused as invalid and clients resync in
// full instead of silently missing changes. Upstream sync state is kept:
// a mirrored calendar catches up from where the backup was.
//
// The backup is verified first, and so is the copy before it replaces
// anything; path is replaced in one rename. Restore fails with ErrLocked
// if another process holds path (a running calgate).
func Restore(backup, path string) (Summary, error) {
	if _, err := Verify(backup); err != nil {
		return Summary{}, fmt.Errorf("cache: restore: %s is not a usable backup: %w", backup, err)
	}
	if _, err := os.Stat(path); err == nil {
		// Hold the current file's lock until it has been replaced, so no
		// calgate opens it meanwhile.
		cur, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: defaultTimeout})
		if errors.Is(err, berrors.ErrTimeout) {
			return Summary{}, fmt.Errorf("%w: %s is held by another process (is calgate running on it?)", ErrLocked, path)
		}
		if err != nil {
			return Summary{}, fmt.Errorf("cache: restore: open %s: %w", path, err)
		}
		defer cur.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return Summary{}, fmt.Errorf("cache: restore: %w", err)
	}

	tmp := path + ".restore"
	if err := copyFile(backup, tmp); err != nil {
		_ = os.Remove(tmp)
		return Summary{}, fmt.Errorf("cache: restore: copy %s: %w", backup, err)
	}
	if err := renewEpochs(tmp); err != nil {
		_ = os.Remove(tmp)
		return Summary{}, fmt.Errorf("cache: restore: %w", err)
	}
	sum, err := Verify(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return Summary{}, fmt.Errorf("cache: restore: the restored copy does not verify, nothing was replaced: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		old := path + ".before-restore"
		if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(tmp)
			return Summary{}, fmt.Errorf("cache: restore: remove %s: %w", old, err)
		}
		if err := os.Link(path, old); err != nil {
			_ = os.Remove(tmp)
			return Summary{}, fmt.Errorf("cache: restore: keep %s as %s: %w", path, old, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return Summary{}, fmt.Errorf("cache: restore: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return sum, fmt.Errorf("cache: restore: %w", err)
	}
	return sum, nil
}

// renewEpochs gives every calendar of the store file at path a new epoch.
func renewEpochs(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: defaultTimeout})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		var cals []Calendar
		err := eachBucket(tx.Bucket(bucketCalendars), func(u []byte, ub *bbolt.Bucket) error {
			return ub.ForEach(func(id, v []byte) error {
				c, err := decodeCalendar(string(u), string(id), v)
				if err != nil {
					return err
				}
				cals = append(cals, c)
				return nil
			})
		})
		if err != nil {
			return err
		}
		for i := range cals {
			cals[i].Epoch = newEpoch()
			if _, err := putCalendar(tx, &cals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("renew calendar epochs in %s: %w", path, err)
	}
	return nil
}

// copyFile copies src to a new file dst (mode 0600) and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
