package scan_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/scan"
	"github.com/signet-id/signet/internal/scan/scantest"
)

// TestProgressReachesMeasure checks that a scan's progress ends at exactly
// the totals Measure predicted — over text, binary, too-large, excluded
// and linked files and environment entries — and that its findings count
// is the report's, less what the baseline suppresses.
func TestProgressReachesMeasure(t *testing.T) {
	fx := scantest.New(t)
	extra := filepath.Join(fx.Root, "extra")
	if err := os.MkdirAll(extra, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"big.log":  strings.Repeat("x", 64<<10), // above the limit below
		"blob.bin": "\x00\x01" + strings.Repeat("y", 9000),
		"a.txt":    "nothing here\n",
	} {
		if err := os.WriteFile(filepath.Join(extra, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(extra, "link.txt")); err != nil {
		t.Fatal(err)
	}
	targets := scan.Targets{Paths: []string{fx.Root}, Env: []string{"DEPLOY_PASSWORD=" + scantest.Token("", 24, 3), "HOME=/root", scan.FingerprintKeyEnv + "=x"}}

	var p scan.Progress
	s := newScanner(t, scan.Config{MaxFileSize: 32 << 10, Progress: &p})
	want, ok := s.Measure(context.Background(), targets)
	if !ok || want.Files == 0 || want.Bytes == 0 {
		t.Fatalf("Measure = %+v, %t; want totals", want, ok)
	}
	rep, err := s.Scan(context.Background(), targets)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Load()
	want.Findings = int64(len(rep.Findings))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("progress at the end mismatch with Measure and the report (-want +got):\n%s", diff)
	}
	if rep.Stats.SkippedBy[scan.SkipTooLarge] != 1 || rep.Stats.SkippedBy[scan.SkipBinary] < 2 {
		t.Errorf("skipped by reason = %v, want the too-large and binary files left out", rep.Stats.SkippedBy)
	}

	// A baseline of this scan: the next one counts no findings.
	var js bytes.Buffer
	if err := rep.Write(&js, scan.FormatJSON); err != nil {
		t.Fatal(err)
	}
	baseline := filepath.Join(t.TempDir(), "baseline.json")
	if err := os.WriteFile(baseline, js.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var q scan.Progress
	if _, err := newScanner(t, scan.Config{MaxFileSize: 32 << 10, Progress: &q, BaselineFile: baseline}).Scan(context.Background(), targets); err != nil {
		t.Fatal(err)
	}
	if got := q.Load(); got.Findings != 0 || got.Files != want.Files {
		t.Errorf("progress with a baseline of the same scan = %+v, want no findings and %d files", got, want.Files)
	}
}

func TestMeasureUnknown(t *testing.T) {
	s := newScanner(t, scan.Config{})
	dir := t.TempDir()
	if _, ok := s.Measure(context.Background(), scan.Targets{Paths: []string{dir}, Git: true}); ok {
		t.Errorf("Measure with git history = known, want unknown")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := s.Measure(ctx, scan.Targets{Paths: []string{dir}}); ok {
		t.Errorf("Measure with a done context = known, want unknown")
	}
}
