// Package atomicfile is Signet's one writer for files it persists: CA keys,
// the agent's state, the server id and SVIDs written for legacy apps.
//
// WriteFile replaces a file so that every reader, and the file system after
// a crash, sees either the complete old content or the complete new one,
// never a mix or a truncated file.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile writes data to path with permission bits perm, atomically: it
// writes a temporary file in path's directory, fsyncs it, renames it over
// path and fsyncs the directory, so the rename survives a crash. perm is
// applied exactly (the umask does not narrow it); an existing file's mode
// and owner are not kept. When path is a symbolic link, the link itself is
// replaced. On error no temporary file is left behind and path is
// unchanged. Concurrent writers of one path leave exactly one writer's
// complete content.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // a second Close after a successful one only errs
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm.Perm()); err != nil {
		return fmt.Errorf("write %s: chmod temporary file: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: rename into place: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs directory dir, so that a rename or removal in it survives
// a crash. File systems that cannot sync a directory (EINVAL, or
// unsupported) are not an error: there is nothing more to do on them.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
