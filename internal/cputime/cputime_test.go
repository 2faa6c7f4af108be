package cputime_test

import (
	"runtime"
	"testing"

	"github.com/signet-id/signet/internal/cputime"
)

// TestProcessGrows: spinning adds CPU time, as Now tells too.
func TestProcessGrows(t *testing.T) {
	start, ok := cputime.Process()
	if !ok {
		if runtime.GOOS == "linux" {
			t.Fatal("Process: no CPU time on linux")
		}
		t.Skip("no process CPU time on", runtime.GOOS)
	}
	x := 0
	for cputime.Now()-start <= 0 {
		for i := range 1_000_000 {
			x ^= i
		}
	}
	if d := cputime.Now() - start; d <= 0 {
		t.Fatalf("Now after spinning = %v (x=%d)", d, x)
	}
}
