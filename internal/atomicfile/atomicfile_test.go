package atomicfile_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/signet-id/signet/internal/atomicfile"
)

// names lists dir's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFileMode(t *testing.T) {
	for _, perm := range []os.FileMode{0o600, 0o644, 0o640, 0o400} {
		t.Run(fmt.Sprintf("%04o", perm), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			if err := atomicfile.WriteFile(p, []byte("x"), perm); err != nil {
				t.Fatalf("WriteFile() = %v", err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != perm {
				t.Errorf("WriteFile(%04o) mode = %04o, want %04o", perm, got, perm)
			}
		})
	}
}

func TestWriteFileReplacesExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(p, bytes.Repeat([]byte("old content "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatalf("WriteFile() = %v", err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "new" {
		t.Errorf("content = %q, want %q", got, "new")
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after replace = %04o, want 0600", fi.Mode().Perm())
	}
	if n := names(t, dir); !slices.Equal(n, []string{"key.pem"}) {
		t.Errorf("directory holds %q, want only key.pem", n)
	}
}

func TestWriteFileRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := atomicfile.WriteFile("f", []byte("x"), 0o600); err != nil {
		t.Fatalf("WriteFile(relative) = %v", err)
	}
	if got, err := os.ReadFile("f"); err != nil || string(got) != "x" {
		t.Errorf("ReadFile = %q, %v; want x", got, err)
	}
}

func TestWriteFileErrorsLeaveNoTemporaryFile(t *testing.T) {
	t.Run("rename over a directory", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target")
		if err := os.MkdirAll(filepath.Join(target, "child"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.WriteFile(target, []byte("x"), 0o600); err == nil {
			t.Fatal("WriteFile(over a non-empty directory) = nil, want an error")
		}
		if n := names(t, dir); !slices.Equal(n, []string{"target"}) {
			t.Errorf("directory holds %q after a failed write, want only target", n)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		err := atomicfile.WriteFile(filepath.Join(t.TempDir(), "no", "f"), []byte("x"), 0o600)
		if err == nil {
			t.Fatal("WriteFile(in a missing directory) = nil, want an error")
		}
	})
	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		dir := t.TempDir()
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		if err := atomicfile.WriteFile(p, []byte("new"), 0o600); err == nil {
			t.Fatal("WriteFile(in a read-only directory) = nil, want an error")
		}
		if got, _ := os.ReadFile(p); string(got) != "old" {
			t.Errorf("content after a failed write = %q, want old", got)
		}
	})
}

func TestWriteFileConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state")
	const writers = 16
	contents := make([][]byte, writers)
	for i := range contents {
		// Large enough that a torn write would show.
		contents[i] = bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*4)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				if err := atomicfile.WriteFile(p, contents[i], 0o600); err != nil {
					errs <- err
				}
			}
		}()
	}
	// A reader never sees a partial file.
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				readerDone <- nil
				return
			default:
			}
			got, err := os.ReadFile(p)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				readerDone <- err
				return
			}
			if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
				readerDone <- fmt.Errorf("reader saw %d bytes that are no writer's complete content", len(got))
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Errorf("WriteFile() = %v", err)
	}
	if err := <-readerDone; err != nil {
		t.Error(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
		t.Errorf("final file (%d bytes) is no writer's complete content", len(got))
	}
	if n := names(t, dir); !slices.Equal(n, []string{"state"}) {
		t.Errorf("directory holds %q, want only state", n)
	}
}
