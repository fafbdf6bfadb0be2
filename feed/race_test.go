//go:build race

package feed

// raceEnabled is set when the tests run with the race detector, which
// makes the single-goroutine random tests ten times slower to no gain.
const raceEnabled = true
