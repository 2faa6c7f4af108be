//go:build race

package ca

// raceEnabled reports whether the race detector is on; slow tests shrink.
const raceEnabled = true
