package scan

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/signet-id/signet/internal/scan/scantest"
)

// newTestScanner returns a Scanner whose onHold hook records the largest
// buffer of file content it allocates.
func newTestScanner(t *testing.T, cfg Config) (*Scanner, func() int) {
	t.Helper()
	fp, err := NewFingerprinter([]byte("chunk-test-fingerprint-key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fingerprinter = fp
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	largest := 0
	s.onHold = func(n int) {
		mu.Lock()
		largest = max(largest, n)
		mu.Unlock()
	}
	return s, func() int { mu.Lock(); defer mu.Unlock(); return largest }
}

// TestChunkBoundary plants tokens across the end of the first chunk and
// across the border of two chunks' own parts, on short lines and in one
// long line, and checks each is found once, at its line and column.
func TestChunkBoundary(t *testing.T) {
	dir := t.TempDir()
	type plant struct {
		at    int
		token string
	}
	var plants []plant
	layouts := map[string]byte{"lines.txt": '\n', "oneline.txt": ' '}
	for name, sep := range layouts {
		b := []byte(strings.Repeat("lorem ipsum dolor sit amet"+string(sep), (chunkSize+chunkSize/4)/27+1))
		plants = plants[:0]
		for i, at := range []int{chunkSize - 20, chunkSize - chunkOverlap/2 - 20, chunkSize - chunkOverlap + 3} {
			tok := scantest.Token("ghp_", 36, uint64(i+1))
			copy(b[at:], " "+tok+" ")
			plants = append(plants, plant{at + 1, tok})
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, largest := newTestScanner(t, Config{})
		rep, err := s.Scan(context.Background(), Targets{Paths: []string{p}})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != len(plants) {
			t.Errorf("%s: %d findings, want %d: %v", name, len(rep.Findings), len(plants), rep.Findings)
		}
		for _, pl := range plants {
			line := strings.Count(string(b[:pl.at]), "\n") + 1
			col := pl.at - strings.LastIndexByte(string(b[:pl.at]), '\n')
			fp := s.cfg.Fingerprinter.Sum([]byte(pl.token))
			n := 0
			for _, f := range rep.Findings {
				if f.Fingerprint == fp {
					n++
					if f.Location.Line != line || f.Location.Column != col {
						t.Errorf("%s: token at %d found at %d:%d, want %d:%d", name, pl.at, f.Location.Line, f.Location.Column, line, col)
					}
				}
			}
			if n != 1 {
				t.Errorf("%s: token at byte %d found %d times, want once", name, pl.at, n)
			}
		}
		if rep.Stats.Bytes != int64(len(b)) || rep.Stats.Files != 1 {
			t.Errorf("%s: stats %+v, want %d bytes in 1 file", name, rep.Stats, len(b))
		}
		if got := largest(); got > chunkSize {
			t.Errorf("%s: held %d bytes of the file at once, want at most %d", name, got, chunkSize)
		}
	}
}

// TestLongLineFile checks that a token in the middle of a 10 MB file that
// is one line is found, reading at most a chunk at a time.
func TestLongLineFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bundle.min.json")
	token := scantest.Token("ghp_", 36, 42)
	half := strings.Repeat(`"lorem":"ipsum dolor sit",`, (5<<20)/26)
	line := "{" + half + `"github":"` + token + `",` + half + "}"
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	n := int64(len(line))
	s, largest := newTestScanner(t, Config{MaxFileSize: 20 << 20})
	rep, err := s.Scan(context.Background(), Targets{Paths: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].RuleID != "github-pat" || rep.Findings[0].Location.Line != 1 {
		t.Fatalf("findings %v, want one github-pat on line 1", rep.Findings)
	}
	if col, want := rep.Findings[0].Location.Column, strings.Index(line, token)+1; col != want {
		t.Errorf("token found at column %d, want %d (the middle of %d bytes)", col, want, n)
	}
	if got := largest(); got > chunkSize {
		t.Errorf("held %d bytes of the file at once, want at most %d", got, chunkSize)
	}
}

// TestSparseFileNotLoaded checks that a large sparse file (zeros: binary)
// is judged by its first bytes without being read whole.
func TestSparseFileNotLoaded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img.txt")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Skipf("cannot make a sparse file: %v", err)
	}
	f.Close()
	var skips []Skip
	s, largest := newTestScanner(t, Config{MaxFileSize: 3 << 30, OnSkip: func(sk Skip) { skips = append(skips, sk) }})
	rep, err := s.Scan(context.Background(), Targets{Paths: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	if len(skips) != 1 || skips[0].Reason != SkipBinary || rep.Stats.SkippedBy[SkipBinary] != 1 {
		t.Errorf("skips %v (stats %v), want the file skipped as binary", skips, rep.Stats.SkippedBy)
	}
	if got := largest(); got > binarySniffLen {
		t.Errorf("held %d bytes of a sparse 2 GiB file at once, want at most the %d checked for binary content", got, binarySniffLen)
	}
}
