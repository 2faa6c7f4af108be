package scan_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/signet-id/signet/internal/scan"
	"github.com/signet-id/signet/internal/scan/scantest"
)

// BenchmarkScanTree measures scan throughput (MB/s) on a generated tree of
// source files: 20 MB by default, SIGNET_BENCH_TREE_MB megabytes if set.
// With SIGNET_BENCH_TREE_DIR set the tree is written there (or reused if
// the directory is not empty) and kept, so other scanners can be timed on
// the same files.
func BenchmarkScanTree(b *testing.B) {
	dir, size := benchTree(b)
	s := newScanner(b, scan.Config{})
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := s.Scan(context.Background(), scan.Targets{Paths: []string{dir}})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Stats.Bytes != size || len(rep.Findings) == 0 {
			b.Fatalf("scanned %d bytes with %d findings, want %d bytes and some findings", rep.Stats.Bytes, len(rep.Findings), size)
		}
	}
}

// treeSize returns the bytes in the regular files under dir (0 if none).
func treeSize(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	return n
}

// BenchmarkScanLongLine measures scan throughput (MB/s) on one file that is
// a single line of minified JSON-like text with keywords in one member in
// ten (see scantest.WriteLongLine). Run it with -benchtime 1x: one
// iteration of the 100 MB case takes minutes.
func BenchmarkScanLongLine(b *testing.B) {
	for _, mb := range []int64{10, 100} {
		b.Run(strconv.FormatInt(mb, 10)+"MB", func(b *testing.B) {
			p := filepath.Join(b.TempDir(), "bundle.min.json")
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			n, err := scantest.WriteLongLine(f, mb<<20, 1, scantest.Token("ghp_", 36, 1), 10)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				b.Fatal(err)
			}
			s := newScanner(b, scan.Config{MaxFileSize: 2 * mb << 20})
			b.SetBytes(n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rep, err := s.Scan(context.Background(), scan.Targets{Paths: []string{p}})
				if err != nil {
					b.Fatal(err)
				}
				if rep.Stats.Bytes != n || len(rep.Findings) == 0 {
					b.Fatalf("scanned %d bytes with %d findings, want %d bytes and the planted token", rep.Stats.Bytes, len(rep.Findings), n)
				}
			}
		})
	}
}

// benchTree is the generated tree of BenchmarkScanTree and
// BenchmarkMeasureTree and its size in bytes: SIGNET_BENCH_TREE_MB
// megabytes (20 by default), written to SIGNET_BENCH_TREE_DIR (reused when
// it already holds a tree) or a temporary directory.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	mb := int64(20)
	if v := os.Getenv("SIGNET_BENCH_TREE_MB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("SIGNET_BENCH_TREE_MB=%q: want a positive number", v)
		}
		mb = n
	}
	dir := os.Getenv("SIGNET_BENCH_TREE_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	size := treeSize(b, dir)
	if size == 0 {
		_, n, err := scantest.WriteTree(dir, mb<<20, 1)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	return dir, size
}

// BenchmarkMeasureTree measures scan.Measure, the stat-only walk behind the
// progress display's totals, on the same generated tree as
// BenchmarkScanTree (SIGNET_BENCH_TREE_MB, SIGNET_BENCH_TREE_DIR), to set
// its cost beside the scan's.
func BenchmarkMeasureTree(b *testing.B) {
	dir, size := benchTree(b)
	s := newScanner(b, scan.Config{})
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		total, ok := s.Measure(context.Background(), scan.Targets{Paths: []string{dir}})
		if !ok || total.Bytes != size {
			b.Fatalf("Measure = %+v, %t; want %d bytes", total, ok, size)
		}
	}
}
