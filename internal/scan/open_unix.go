//go:build unix

package scan

import (
	"os"
	"syscall"
)

// openNonBlocking opens a file for reading with O_NONBLOCK, which makes no
// difference to regular files but keeps open from waiting on a FIFO.
func openNonBlocking(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
