package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports how far a CLI command got: a bar on a terminal,
// nothing otherwise (the command prints a summary line at the end).
// Add is safe for concurrent use.
type progress interface {
	Add(n int) error
	Finish() error
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgress returns a progress bar of total steps on w if w is a
// terminal, and a silent progress otherwise.
func newProgress(w io.Writer, total int, what string) progress {
	if !isTerminal(w) {
		return silentProgress{}
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("objects"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}

// silentProgress is the progress of a command whose output is not a
// terminal.
type silentProgress struct{}

func (silentProgress) Add(int) error { return nil }
func (silentProgress) Finish() error { return nil }
