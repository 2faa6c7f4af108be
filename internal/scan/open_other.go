//go:build !unix

package scan

import "os"

// openNonBlocking opens a file for reading. Outside Unix there are no FIFOs
// in the file system to block on.
func openNonBlocking(p string) (*os.File, error) {
	return os.Open(p)
}
