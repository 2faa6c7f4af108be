//go:build linux

package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Release pages out the executable's read-only mappings (text, read-only
// data, the function tables) that this process alone maps. It is safe to
// call at any time and from any goroutine; it costs a few system calls,
// and each page paged out is read back at its next use.
func Release() (Result, error) {
	start := time.Now()
	r := Result{Before: readUsage()}
	var err error
	r.Advised, err = pageOutExecutable()
	r.After = readUsage()
	r.Took = time.Since(start)
	return r, err
}

// pageOutExecutable pages out every read-only mapping of the running
// executable and returns their total size. Three steps, so that what
// comes back is only what the process touches again:
//
//   - madvise(MADV_RANDOM): a later fault on these mappings reads the page
//     it needs, not the read-around window (128 KiB by default) that the
//     kernel would otherwise read and map;
//   - madvise(MADV_PAGEOUT): unmap and reclaim the pages this process
//     alone maps;
//   - posix_fadvise(POSIX_FADV_DONTNEED) on the file: drop its cached
//     pages that no process maps (start-up's read-ahead), which the
//     kernel's fault-around would otherwise map again, up to 64 KiB at
//     each fault. Pages another process maps stay.
func pageOutExecutable() (int64, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("page out the executable: %w", err)
	}
	defer exe.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(exe.Fd()), &st); err != nil {
		return 0, fmt.Errorf("page out the executable: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("page out the executable: %w", err)
	}
	regions, err := executableRegions(maps, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	if err != nil {
		return 0, fmt.Errorf("page out the executable: %w", err)
	}
	var advised int64
	for _, m := range regions {
		for _, advice := range []struct {
			name  string
			value uintptr
		}{{"MADV_RANDOM", unix.MADV_RANDOM}, {"MADV_PAGEOUT", unix.MADV_PAGEOUT}} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, advice.value); errno != 0 {
				if errno == unix.EINVAL || errno == unix.ENOSYS {
					return advised, fmt.Errorf("%w: madvise(%s): %v (Linux 5.4 or later pages out)", ErrUnsupported, advice.name, errno)
				}
				return advised, fmt.Errorf("page out the executable: madvise(%s) %#x-%#x: %w", advice.name, m.start, m.end, errno)
			}
		}
		advised += int64(m.end - m.start)
	}
	if err := unix.Fadvise(int(exe.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return advised, fmt.Errorf("page out the executable: posix_fadvise(POSIX_FADV_DONTNEED): %w", err)
	}
	return advised, nil
}

// region is one mapping's address range.
type region struct{ start, end uintptr }

// executableRegions parses /proc/self/maps and returns the read-only
// mappings of the file with the given device and inode. A line reads
// "start-end perms offset major:minor inode path" (proc(5)); writable
// mappings are left alone: their private pages are anonymous memory once
// written, which paging out would only push to swap.
func executableRegions(maps []byte, major, minor uint32, ino uint64) ([]region, error) {
	dev := fmt.Sprintf("%02x:%02x", major, minor)
	var out []region
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for line := 1; sc.Scan(); line++ {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 5 {
			return nil, fmt.Errorf("/proc/self/maps line %d: %d fields, want at least 5", line, len(f))
		}
		perms := f[1]
		if string(f[3]) != dev || string(f[4]) != strconv.FormatUint(ino, 10) || len(perms) < 2 || perms[0] != 'r' || perms[1] == 'w' {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			return nil, fmt.Errorf("/proc/self/maps line %d: address range %q, want start-end", line, f[0])
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("/proc/self/maps line %d: address range %q, want start-end in hex", line, f[0])
		}
		out = append(out, region{uintptr(start), uintptr(end)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// readUsage reads VmRSS, RssAnon and RssFile from /proc/self/status; a
// field it cannot read stays zero.
func readUsage() Usage {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return Usage{}
	}
	var u Usage
	for _, line := range bytes.Split(data, []byte("\n")) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmRSS":
			dst = &u.RSS
		case "RssAnon":
			dst = &u.Anon
		case "RssFile":
			dst = &u.File
		default:
			continue
		}
		v := bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			*dst = n
		}
	}
	return u
}
