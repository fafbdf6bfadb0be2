package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/calgate/calgate/cache"
)

// cmdRestore replaces the data file with a backup. It needs the file to
// itself: a running calgate makes it refuse.
func cmdRestore(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("restore", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	backup := fl.args[0]
	if same, err := sameFile(backup, cfg.Data); err == nil && same {
		fmt.Fprintf(stderr, "calgate restore: %s is the data file itself; name a backup made by calgate backup\n", backup)
		return 1
	}
	start := time.Now()
	sum, err := cache.Restore(backup, cfg.Data)
	if errors.Is(err, cache.ErrLocked) {
		fmt.Fprintf(stderr, "calgate restore: stop calgate first: restore replaces the data file %s, which a running calgate (or another calgate command) holds\n", cfg.Data)
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "calgate restore:", err)
		return 1
	}
	fmt.Fprintf(stdout, "restore: %s restored from %s: %d calendars, %d objects, %s; the previous file is %s.before-restore; clients will resync in full; in %s\n",
		cfg.Data, backup, sum.Calendars, sum.Objects, megabytes(sum.Size), cfg.Data, time.Since(start).Round(time.Millisecond))
	return 0
}
