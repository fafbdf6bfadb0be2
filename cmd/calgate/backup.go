package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/calgate/calgate/cache"
)

// cmdBackup writes a consistent copy of the data file to FILE, from the
// data file when it is free and through the admin socket of the calgate
// holding it otherwise, then verifies the copy.
func cmdBackup(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("backup", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	dst := fl.args[0]
	fail := func(err error) int {
		fmt.Fprintln(stderr, "calgate backup:", err)
		return 1
	}
	if _, err := os.Stat(cfg.Data); err != nil {
		return fail(fmt.Errorf("no data file to back up: %w (check `data` in the config %s)", err, fl.config))
	}
	if same, err := sameFile(dst, cfg.Data); err != nil {
		return fail(err)
	} else if same {
		return fail(fmt.Errorf("%s is the data file itself; name another file for the backup", dst))
	}
	start := time.Now()
	err := writeFileAtomic(dst, 0o600, func(w io.Writer) error {
		return withStore(cfg, fl.logger(stderr), func(store *cache.Store) error {
			_, err := store.WriteBackup(w, nil)
			return err
		}, func(c *adminClient) error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			resp, err := c.get(ctx, "/backup")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			n, err := io.Copy(w, resp.Body)
			if err != nil {
				return fmt.Errorf("read the backup from the running calgate: %w", err)
			}
			if resp.ContentLength < 0 || n != resp.ContentLength {
				return fmt.Errorf("the running calgate sent %d of %d bytes (see its log)", n, resp.ContentLength)
			}
			return nil
		})
	})
	if err != nil {
		return fail(err)
	}
	sum, err := cache.Verify(dst)
	if err != nil {
		return fail(fmt.Errorf("the backup %s does not verify, do not rely on it: %w", dst, err))
	}
	fmt.Fprintf(stdout, "backup: %d calendars, %d objects, %s written to %s in %s\n",
		sum.Calendars, sum.Objects, megabytes(sum.Size), dst, time.Since(start).Round(time.Millisecond))
	return 0
}

// megabytes formats n bytes as MB with one decimal.
func megabytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// sameFile reports whether paths a and b name the same file: the same
// path once cleaned and made absolute, or the same inode.
func sameFile(a, b string) (bool, error) {
	absA, err := filepath.Abs(a)
	if err != nil {
		return false, err
	}
	absB, err := filepath.Abs(b)
	if err != nil {
		return false, err
	}
	if absA == absB {
		return true, nil
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb), nil
}

// writeFileAtomic writes path through write: into path.tmp, synced, then
// renamed over path, and the directory synced, so that path holds either
// its old content or all of the new. On failure path.tmp is removed.
func writeFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w (is the directory there and writable?)", tmp, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs directory dir, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
