//go:build !race

package feed

// raceEnabled is set when the tests run with the race detector.
const raceEnabled = false
