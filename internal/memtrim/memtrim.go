// Package memtrim hands back to the kernel the pages of a long-running
// process's own executable that only its start-up used.
//
// A Go program's resident set after start-up is mostly its executable:
// initialising several hundred packages touches nearly every 64 KiB
// fault-around window of its text and read-only data, and those pages
// stay mapped (and charged to the process's memory cgroup) although most
// of them never run again. Release asks the kernel to reclaim them now;
// the code the process goes on to run is read back from the file on its
// first use, page by page, so what stays resident is what the process
// uses, not what it once used. The cost is a page fault, and a read from
// the page cache or the disk, the first time each page is needed again.
package memtrim

import (
	"errors"
	"time"
)

// ErrUnsupported is returned (wrapped) when the kernel or platform cannot
// page out the executable.
var ErrUnsupported = errors.New("paging out the executable is not supported here")

// Result says what Release did. The memory figures are from
// /proc/self/status (kB) and are zero where there is none.
type Result struct {
	// Advised is the size of the executable's mappings handed to the
	// kernel, in bytes.
	Advised int64
	// Before and After are the process's resident memory around Release.
	Before, After Usage
	// Took is Release's wall time.
	Took time.Duration
}

// Usage is the process's resident memory in kB: all of it, the private
// (anonymous) part and the file-backed part.
type Usage struct{ RSS, Anon, File int64 }
