package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"unsafe"
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
	w := walker{s: s, c: c, jobs: jobs, seen: map[string]bool{}}
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
	s    *Scanner
	c    *collector
	jobs chan<- string
	// seen holds the real paths of directories entered when following
	// symbolic links, to break loops.
	seen map[string]bool
}

// root handles a path named by the user: a link to it is followed, a file
// is scanned whatever its name, a directory is walked.
func (w *walker) root(ctx context.Context, p string) {
	info, err := os.Stat(p)
	if err != nil {
		w.c.problem(Problem{Path: p, Message: describe(err)})
		return
	}
	switch {
	case info.IsDir():
		w.dir(ctx, p)
	case info.Mode().IsRegular():
		w.send(ctx, p)
	default:
		w.c.problem(Problem{Path: p, Message: "not a regular file or directory", Skipped: true})
	}
}

func (w *walker) send(ctx context.Context, p string) {
	select {
	case w.jobs <- p:
	case <-ctx.Done():
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
			w.c.problem(Problem{Path: d, Message: "directory already scanned (symbolic link loop or duplicate), skipped", Skipped: true})
			return
		}
		w.seen[real] = true
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		w.c.problem(Problem{Path: d, Message: describe(err)})
		// ReadDir returns the entries read before the error; carry on.
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		p := filepath.Join(d, e.Name())
		if w.s.rules.pathAllowed(filepath.ToSlash(p)) {
			continue
		}
		t := e.Type()
		if t&fs.ModeSymlink != 0 {
			if !w.s.cfg.FollowSymlinks {
				continue
			}
			info, err := os.Stat(p)
			if err != nil {
				w.c.problem(Problem{Path: p, Message: "broken symbolic link: " + describe(err), Skipped: true})
				continue
			}
			t = info.Mode().Type()
		}
		switch {
		case t.IsDir():
			w.dir(ctx, p)
		case t.IsRegular():
			w.send(ctx, p)
		default:
			w.c.problem(Problem{Path: p, Message: "not a regular file, skipped", Skipped: true})
		}
	}
}

// scanFile reads and scans one file.
func (s *Scanner) scanFile(ctx context.Context, p string, c *collector) {
	data, err := s.readFile(p)
	if err != nil {
		var skip *skipError
		if errors.As(err, &skip) {
			c.problem(Problem{Path: p, Message: skip.msg, Skipped: true})
		} else {
			c.problem(Problem{Path: p, Message: describe(err)})
		}
		return
	}
	u := unit{path: p, rulePath: filepath.ToSlash(p), data: data, startLine: 1}
	if bytes.IndexByte(data[:min(len(data), binarySniffLen)], 0) >= 0 {
		// Only the path is judged (gitleaks has path rules for key
		// stores); the contents are not text.
		u.binary = true
		c.problem(Problem{Path: p, Message: "binary file, contents not scanned", Skipped: true})
	} else {
		// data is never written after this point, so the string may share
		// its memory instead of copying it.
		u.text = unsafe.String(unsafe.SliceData(data), len(data))
		c.files.Add(1)
		c.bytes.Add(int64(len(data)))
	}
	c.add(s.detect(ctx, u))
}

// skipError is a reason to skip a file that is not an error.
type skipError struct{ msg string }

func (e *skipError) Error() string { return e.msg }

// readFile reads a regular file of at most MaxFileSize bytes. It opens
// without blocking, so a path replaced by a FIFO cannot hang the scan.
func (s *Scanner) readFile(p string) ([]byte, error) {
	f, err := openNonBlocking(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, &skipError{"not a regular file, skipped"}
	}
	if info.Size() > s.cfg.MaxFileSize {
		return nil, &skipError{fmt.Sprintf("file too large (%d bytes, limit %d), skipped", info.Size(), s.cfg.MaxFileSize)}
	}
	data := make([]byte, info.Size())
	n, err := io.ReadFull(f, data)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return data[:n], nil // a file that shrank meanwhile is scanned as read
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
