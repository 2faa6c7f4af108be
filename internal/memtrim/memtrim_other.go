//go:build !linux

package memtrim

import (
	"fmt"
	"runtime"
)

// Release pages out the executable on Linux only.
func Release() (Result, error) {
	return Result{}, fmt.Errorf("%w on %s", ErrUnsupported, runtime.GOOS)
}
