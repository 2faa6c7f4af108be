//go:build linux

package unix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

func TestHashCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	content := []byte("#!/bin/sh\necho hello\n")
	if err := os.WriteFile(path, content, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int32
	open := func() (*os.File, error) {
		opens.Add(1)
		return os.Open(path)
	}
	ctx := context.Background()

	var c hashCache
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, _, err := c.sum(ctx, &st, open, 1<<20)
			if err != nil || got != want {
				t.Errorf("sum() = %q, %v; want %q", got, err, want)
			}
		})
	}
	wg.Wait()
	if n := opens.Load(); n != 1 {
		t.Errorf("file opened %d times for 8 concurrent calls, want once", n)
	}

	// Above the limit: no sum, and fresh only the first time.
	var big hashCache
	_, fresh, err := big.sum(ctx, &st, open, 4)
	if !errors.Is(err, errTooLarge) || !fresh {
		t.Errorf("sum(over limit) = fresh %v, %v; want fresh, errTooLarge", fresh, err)
	}
	_, fresh, err = big.sum(ctx, &st, open, 4)
	if !errors.Is(err, errTooLarge) || fresh {
		t.Errorf("second sum(over limit) = fresh %v, %v; want not fresh, errTooLarge", fresh, err)
	}

	// Failures are not cached.
	var flaky hashCache
	fail := func() (*os.File, error) { return nil, os.ErrPermission }
	if _, _, err := flaky.sum(ctx, &st, fail, 1<<20); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("sum(open fails) = %v, want ErrPermission", err)
	}
	if got, _, err := flaky.sum(ctx, &st, open, 1<<20); err != nil || got != want {
		t.Errorf("sum() after a failure = %q, %v; want %q", got, err, want)
	}

	// A file replaced between stat and open is not hashed under the old
	// version's key.
	if err := os.WriteFile(path, []byte("something else entirely"), 0o755); err != nil {
		t.Fatal(err)
	}
	var changed hashCache
	if _, _, err := changed.sum(ctx, &st, open, 1<<20); err == nil {
		t.Error("sum() of a file that changed after stat = nil error, want an error")
	}
}
