// Package cputime reads the CPU time this process has used, for benchmarks
// that report CPU per operation next to wall time: on a shared or loaded
// machine the wall clock measures the neighbours too, CPU time does not.
// It imports nothing of Signet's, so any package's tests may use it.
package cputime

import "time"

// Process returns the user plus system CPU time the process has used, and
// false where the platform does not tell.
func Process() (time.Duration, bool) { return process() }

// Now is Process without the flag: 0 where the platform does not tell, so
// a difference of two readings is 0 there.
func Now() time.Duration {
	d, _ := Process()
	return d
}
