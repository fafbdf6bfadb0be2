package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/calgate/calgate/cache"
)

// cmdCompact rewrites the data file without its free pages. It needs the
// file to itself: a running calgate makes it refuse.
func cmdCompact(args []string, stdout, stderr io.Writer) int {
	fl, code, ok := parseFlags("compact", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg := loadValidConfig(fl.config, stderr)
	if cfg == nil {
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "calgate compact:", err)
		return 1
	}
	if _, err := os.Stat(cfg.Data); err != nil {
		return fail(fmt.Errorf("no data file to compact: %w (check `data` in the config %s)", err, fl.config))
	}
	start := time.Now()
	before, after, err := cache.Compact(cfg.Data)
	if errors.Is(err, cache.ErrLocked) {
		return fail(fmt.Errorf("stop calgate first: compact rewrites the data file %s, which a running calgate (or another calgate command) holds; "+
			"for a copy while serving, use calgate backup FILE", cfg.Data))
	}
	if err != nil {
		return fail(err)
	}
	sum, err := cache.Verify(cfg.Data)
	if err != nil {
		return fail(fmt.Errorf("the compacted data file does not verify: %w", err))
	}
	saved := 0.0
	if before > 0 {
		saved = 100 * float64(before-after) / float64(before)
	}
	fmt.Fprintf(stdout, "compact: %s: %s (%d bytes) before, %s (%d bytes) after, %.0f%% smaller; %d calendars, %d objects; in %s\n",
		cfg.Data, megabytes(before), before, megabytes(after), after, saved, sum.Calendars, sum.Objects, time.Since(start).Round(time.Millisecond))
	return 0
}
