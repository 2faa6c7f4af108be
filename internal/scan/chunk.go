package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unsafe"
)

// Chunked scanning.
//
// Files are read in chunks of at most chunkSize bytes, never whole, so a
// scan's memory is bounded by its workers times chunkSize (plus the
// regions of a chunk) whatever the files' sizes. Consecutive chunks share
// chunkOverlap bytes, and each chunk reports only the hits that start in
// its own part: from half the overlap after its start (0 for the first) to
// half the overlap before its end (the end for the last). A secret shorter
// than half the overlap that starts in a chunk's own part lies wholly in
// that chunk, with at least half the overlap of text before it — more than
// any rule's region margin (see regions.go) — so it is found as in a scan
// of the whole file, by exactly one chunk. Content of one chunk (files up
// to chunkSize, the size up to which package credential parses structured
// formats) is scanned exactly as before; in a larger one only the
// recognisers that need no whole file run (see credential.DetectPart).
//
// The binary check reads only the first binarySniffLen bytes; a binary
// file is not read further (but for the fingerprint of a path rule's hit,
// which streams the file through the HMAC).

const (
	// chunkSize is the most bytes of a file held at once.
	chunkSize = 4 << 20
	// chunkOverlap is how many bytes consecutive chunks share: twice the
	// largest region margin, and some.
	chunkOverlap = 2*blockCap + 16<<10
)

// scanFile reads and scans one file, chunk by chunk.
func (s *Scanner) scanFile(ctx context.Context, p string, c *collector) {
	f, size, err := s.openFile(p)
	if err != nil {
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			c.skip(skip.reason, Problem{Path: p, Message: skip.msg, Skipped: true})
		case errors.Is(err, os.ErrNotExist):
			c.problem(Problem{Path: p, Message: describe(err)}) // gone since it was listed
		default:
			c.skip(SkipUnreadable, Problem{Path: p, Message: describe(err)})
		}
		if skip == nil || skip.reason != SkipTooLarge {
			c.progress.files.Add(1) // Measure counted it; too-large files it does not
		}
		return
	}
	defer f.Close()
	var counted int64 // bytes recorded as done
	defer func() { c.fileDone(size, counted) }()
	base := unit{path: p, rulePath: filepath.ToSlash(p), startLine: 1, size: size, file: f}
	sniff := make([]byte, min(size, binarySniffLen))
	s.held(len(sniff))
	n, err := io.ReadFull(f, sniff)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		c.skip(SkipUnreadable, Problem{Path: p, Message: describe(err)})
		return
	}
	if bytes.IndexByte(sniff[:n], 0) >= 0 {
		// Only the path is judged (gitleaks has path rules for key
		// stores); the contents are not text.
		c.skip(SkipBinary, Problem{Path: p, Message: "binary file, contents not scanned", Skipped: true})
		base.binary, base.data = true, sniff[:n]
		c.add(s.detect(ctx, base))
		return
	}
	buf := sniff
	if size > int64(len(sniff)) {
		buf = make([]byte, min(size, chunkSize))
		s.held(len(buf))
		copy(buf, sniff[:n])
	}
	err = s.chunks(buf, n, f, size, func(u unit, fresh int) {
		c.bytes.Add(int64(fresh))
		c.progress.bytes.Add(int64(fresh))
		counted += int64(fresh)
		u.path, u.rulePath, u.size, u.file = base.path, base.rulePath, base.size, base.file
		c.add(s.detect(ctx, u))
	})
	if err != nil {
		c.skip(SkipUnreadable, Problem{Path: p, Message: "read: " + describe(err)})
		return
	}
	c.files.Add(1)
}

// chunks reads r, of size bytes, into chunks and calls scan for each, with
// the unit's data, text, lines and own part set and the number of bytes
// it holds that no earlier chunk held. buf is the first chunk's buffer, of
// which the first n bytes are read already. A file that shrinks while it
// is read is scanned as read; bytes past size are not read.
func (s *Scanner) chunks(buf []byte, n int, r io.Reader, size int64, scan func(u unit, fresh int)) error {
	var start int64 // file offset of buf[0]
	line, col := 1, 0
	kept := 0 // bytes at the start of buf from the previous chunk
	for {
		m, err := io.ReadFull(r, buf[n:])
		n += m
		eof := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
		if err != nil && !eof {
			return err
		}
		last := eof || start+int64(n) >= size
		data := buf[:n]
		u := unit{
			data: data,
			// data is never written after this point (each chunk has a
			// buffer of its own), so the string may share its memory.
			text:      unsafe.String(unsafe.SliceData(data), len(data)),
			startLine: line, startCol: col,
			part: start > 0 || !last,
			own:  [2]int{0, n},
		}
		if start > 0 {
			u.own[0] = chunkOverlap / 2
		}
		if !last {
			u.own[1] = n - chunkOverlap/2
		}
		scan(u, n-kept)
		if last {
			return nil
		}
		adv := n - chunkOverlap
		line += bytes.Count(data[:adv], []byte("\n"))
		if i := bytes.LastIndexByte(data[:adv], '\n'); i >= 0 {
			col = adv - i - 1
		} else {
			col += adv
		}
		start += int64(adv)
		// Not the last chunk: this one was full, and more than the
		// overlap is left.
		next := make([]byte, min(size-start, chunkSize))
		s.held(len(next))
		n = copy(next, data[adv:])
		kept = n
		buf = next
	}
}

// detectChunked scans content held in memory (a change from git history)
// in chunks as a file is scanned, so that a huge one costs the same as a
// file of its size.
func (s *Scanner) detectChunked(ctx context.Context, u unit) []Finding {
	if len(u.data) <= chunkSize {
		return s.detect(ctx, u)
	}
	var out []Finding
	data := u.data
	line, col := u.startLine, 0
	for start := 0; ; {
		end := min(start+chunkSize, len(data))
		last := end == len(data)
		p := u
		p.data = data[start:end]
		p.text = u.text[start:end]
		p.startLine, p.startCol = line, col
		p.part, p.own = true, [2]int{0, end - start}
		if start > 0 {
			p.own[0] = chunkOverlap / 2
		}
		if !last {
			p.own[1] = end - start - chunkOverlap/2
		}
		out = append(out, s.detect(ctx, p)...)
		if last {
			return out
		}
		adv := end - start - chunkOverlap
		seg := data[start : start+adv]
		line += bytes.Count(seg, []byte("\n"))
		if i := bytes.LastIndexByte(seg, '\n'); i >= 0 {
			col = adv - i - 1
		} else {
			col += adv
		}
		start += adv
	}
}

// held reports, to a test's hook, a buffer of n bytes allocated to hold
// file content.
func (s *Scanner) held(n int) {
	if s.onHold != nil {
		s.onHold(n)
	}
}

// skipError is a reason to skip a file that is not an error.
type skipError struct {
	reason SkipReason
	msg    string
}

func (e *skipError) Error() string { return e.msg }

// openFile opens a regular file of at most MaxFileSize bytes and returns
// its size. It opens without blocking, so a path replaced by a FIFO cannot
// hang the scan.
func (s *Scanner) openFile(p string) (*os.File, int64, error) {
	f, err := openNonBlocking(p)
	if err != nil {
		return nil, 0, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, 0, &skipError{SkipNotRegular, "not a regular file, skipped"}
	}
	if info.Size() > s.cfg.MaxFileSize {
		f.Close()
		return nil, 0, &skipError{SkipTooLarge, fmt.Sprintf("file too large (%d bytes, limit %d), skipped", info.Size(), s.cfg.MaxFileSize)}
	}
	return f, info.Size(), nil
}
