package cache

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Sentinel errors returned by Store methods, wrapped with detail; test for
// them with errors.Is.
var (
	// ErrNotFound means the calendar or object does not exist.
	ErrNotFound = errors.New("cache: not found")
	// ErrExists means a calendar with that id already exists.
	ErrExists = errors.New("cache: already exists")
	// ErrPrecondition means an If-Match or If-None-Match condition failed.
	ErrPrecondition = errors.New("cache: precondition failed")
	// ErrTokenExpired means a sync token is no longer (or not yet) valid:
	// changes after it were trimmed from the change log, or it is ahead of
	// the calendar's revision.
	ErrTokenExpired = errors.New("cache: sync token expired")
	// ErrLocked means the store file is held by another process.
	ErrLocked = errors.New("cache: store file is locked")
	// ErrSchema means the store file has a schema version this package
	// cannot read, or is not a calgate store.
	ErrSchema = errors.New("cache: unsupported schema")
	// ErrInvalid means an argument is empty or malformed.
	ErrInvalid = errors.New("cache: invalid argument")
	// ErrNoSpace means a write failed because the store file could not
	// grow: the file system is full, a disk quota is exhausted, or the
	// process's file-size limit (RLIMIT_FSIZE) is reached. Nothing of that
	// write was stored; earlier writes and reads are unaffected, and writes
	// succeed again once there is room.
	ErrNoSpace = errors.New("cache: no space left for the store file")
)

// noSpaceErrnos are the errors writing or growing the store file gets
// when there is no room for it: a full file system, an exhausted quota,
// or the file-size limit (Go ignores SIGXFSZ, so the write gets EFBIG).
var noSpaceErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG}

// isNoSpace reports whether err is a failure to write for lack of space.
// bbolt formats the errors of growing the file with %s ("file resize
// error: truncate ...: file too large"), which drops the errno, so in
// those the errno's text is matched.
func isNoSpace(err error) bool {
	msg := err.Error()
	grow := strings.Contains(msg, "file resize error: ") || strings.Contains(msg, "file sync error: ")
	for _, e := range noSpaceErrnos {
		if errors.Is(err, e) || grow && strings.Contains(msg, e.Error()) {
			return true
		}
	}
	return false
}

// UIDConflictError is returned by PutObject when the UID is already used by
// another object of the same calendar (CalDAV no-uid-conflict). Find it
// with errors.As.
type UIDConflictError struct {
	// Name is the resource name of the object that already has the UID.
	Name string
}

// Error implements the error interface.
func (e *UIDConflictError) Error() string {
	return fmt.Sprintf("cache: uid already used by %q", e.Name)
}

// wrap returns nil for a nil err, err itself if it is already one of this
// package's errors (its message starts with "cache: "), and otherwise err
// wrapped as "cache: <op>: <err>" (bbolt and I/O failures), and also as
// ErrNoSpace if it is a failure for lack of space.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if strings.HasPrefix(err.Error(), "cache: ") {
		return err
	}
	if isNoSpace(err) {
		return fmt.Errorf("cache: "+format+": %w: %w", append(args, ErrNoSpace, err)...)
	}
	return fmt.Errorf("cache: "+format+": %w", append(args, err)...)
}
