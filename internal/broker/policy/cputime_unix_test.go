//go:build unix

package policy

import (
	"syscall"
	"time"
)

// processCPU returns the user+system CPU time this process has used. On a
// shared machine it measures the work done, unlike wall time, which also
// counts waiting for a core.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
