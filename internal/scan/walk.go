package scan

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// binarySniffLen is how much of a file is checked for a NUL byte, the sign
// of a binary file (as git decides).
const binarySniffLen = 8000

// scanPaths walks paths on this goroutine and scans the files found on a
// pool of workers.
func (s *Scanner) scanPaths(ctx context.Context, paths []string, c *collector) {
	jobs := make(chan string, s.cfg.Workers*4)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				s.scanFile(ctx, p, c)
			}
		}()
	}
	send := func(p string) {
		select {
		case jobs <- p:
		case <-ctx.Done():
		}
	}
	w := walker{s: s, c: c, visit: send, seen: map[string]bool{}}
	for _, p := range paths {
		if ctx.Err() != nil {
			break
		}
		w.root(ctx, filepath.Clean(p))
	}
	close(jobs)
	wg.Wait()
}

// walker enumerates the files under the scanned paths.
type walker struct {
	s *Scanner
	c *collector
	// visit is called with each file found, in walk order.
	visit func(path string)
	// seen holds the real paths of directories entered when following
	// symbolic links, to break loops.
	seen map[string]bool
}

// root handles a path named by the user: a link to it is followed, a file
// is scanned whatever its name, a directory is walked.
func (w *walker) root(ctx context.Context, p string) {
	info, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			w.c.problem(Problem{Path: p, Message: describe(err)})
		} else {
			w.c.skip(SkipUnreadable, Problem{Path: p, Message: describe(err)})
		}
		return
	}
	switch {
	case info.IsDir():
		w.dir(ctx, p)
	case info.Mode().IsRegular():
		w.visit(p)
	default:
		w.c.skip(SkipNotRegular, Problem{Path: p, Message: "not a regular file or directory", Skipped: true})
	}
}

// dir walks directory d depth-first in name order.
func (w *walker) dir(ctx context.Context, d string) {
	if w.s.cfg.FollowSymlinks {
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			w.c.problem(Problem{Path: d, Message: describe(err)})
			return
		}
		if w.seen[real] {
			w.c.skip(SkipVisited, Problem{Path: d, Message: "directory already scanned (symbolic link loop or duplicate), skipped", Skipped: true})
			return
		}
		w.seen[real] = true
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		w.c.skip(SkipUnreadable, Problem{Path: d, Message: describe(err)})
		// ReadDir returns the entries read before the error; carry on.
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		p := filepath.Join(d, e.Name())
		if w.s.rules.pathAllowed(filepath.ToSlash(p)) {
			w.c.skip(SkipExcluded, Problem{Path: p})
			continue
		}
		t := e.Type()
		if t&fs.ModeSymlink != 0 {
			if !w.s.cfg.FollowSymlinks {
				w.c.skip(SkipSymlink, Problem{Path: p})
				continue
			}
			info, err := os.Stat(p)
			if err != nil {
				w.c.skip(SkipSymlink, Problem{Path: p, Message: "broken symbolic link: " + describe(err), Skipped: true})
				continue
			}
			t = info.Mode().Type()
		}
		switch {
		case t.IsDir():
			w.dir(ctx, p)
		case t.IsRegular():
			w.visit(p)
		default:
			w.c.skip(SkipNotRegular, Problem{Path: p, Message: "not a regular file, skipped", Skipped: true})
		}
	}
}

// describe renders a file-system error without repeating the path, which
// the Problem carries.
func describe(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
