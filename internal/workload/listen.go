package workload

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// Listen opens the Workload API unix socket at path. It creates the parent
// directory (mode 0755) if needed, replaces a stale socket file left by an
// earlier run, and makes the socket 0777: any local user may connect, and
// what each gets is decided by attestation. It refuses when path exists and
// is not a socket, or is a socket another server is still accepting on. The
// socket file is removed when the listener is closed.
func Listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errkind.New(errkind.InvalidArgument, "workload api socket path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen on %s: create directory: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o777); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %s: chmod: %w", path, err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return errkind.New(errkind.FailedPrecondition,
			"cannot listen on %s: it exists and is not a socket (%s); remove it or choose another socket path",
			path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return errkind.New(errkind.FailedPrecondition,
			"cannot listen on %s: another process is serving on it; stop it or choose another socket path", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen on %s: probe existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen on %s: remove stale socket: %w", path, err)
	}
	return nil
}
