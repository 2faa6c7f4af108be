package scan

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
)

// Progress counts the work of a running scan, for a progress display. A
// scan given one in Config.Progress adds to it as it goes; any goroutine
// may call Load at any time. The zero value is ready to use.
//
// Progress counts work done, not the report's statistics: a file is done
// once the scan is finished with it, whether it was scanned or left out
// after opening (binary, unreadable), and its bytes are done with it.
// Files and bytes done are therefore comparable with Measure's totals.
// Findings counts the findings so far that the baseline does not
// suppress; the report may hold a few fewer, a secret found both in the
// working tree and in the git history being reported once.
type Progress struct {
	files, bytes, findings atomic.Int64
}

// Counts is a snapshot of a Progress, or a scan's expected totals.
type Counts struct {
	Files, Bytes, Findings int64
}

// Load returns the counts so far.
func (p *Progress) Load() Counts {
	return Counts{Files: p.files.Load(), Bytes: p.bytes.Load(), Findings: p.findings.Load()}
}

// Measure counts the files and bytes a scan of t will go through, by
// walking t.Paths as Scan does (the same exclusions, symbolic-link rules
// and size limit) without opening any file, plus t.Env. It reports the
// totals and true, or false when they cannot be known in advance: with
// t.Git the size of the history is unknown until it has been read. It
// reports no problems (Scan does) and stops early, returning false, when
// ctx is done. It may run concurrently with Scan.
func (s *Scanner) Measure(ctx context.Context, t Targets) (Counts, bool) {
	if t.Git {
		return Counts{}, false
	}
	var total Counts
	count := func(p string) {
		info, err := os.Stat(p)
		if err != nil || !info.Mode().IsRegular() || info.Size() > s.cfg.MaxFileSize {
			return
		}
		total.Files++
		total.Bytes += info.Size()
	}
	// A collector nobody reads: the walk's problems are Scan's to report.
	w := walker{s: s, c: newCollector(nil, nil), visit: count, seen: map[string]bool{}}
	for _, p := range t.Paths {
		if ctx.Err() != nil {
			return Counts{}, false
		}
		w.root(ctx, filepath.Clean(p))
	}
	if ctx.Err() != nil {
		return Counts{}, false
	}
	for _, kv := range t.Env {
		if envScanned(kv) {
			total.Files++
			total.Bytes += int64(len(kv))
		}
	}
	return total, true
}

// fileDone records, for the progress display, that the scan is finished
// with a file of size bytes of which counted were already recorded.
func (c *collector) fileDone(size, counted int64) {
	c.progress.files.Add(1)
	if size > counted {
		c.progress.bytes.Add(size - counted)
	}
}
