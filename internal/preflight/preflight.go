// Package preflight holds the start-up checks the server and the agent run
// before they create anything: a data directory someone else could tamper
// with, a unix socket path the kernel would refuse or another process
// serves, an address already in use. A refused start leaves no keys, no
// database and no half-written state behind, and the error names the
// setting and what would be accepted.
//
// Each check takes name, the setting as the user knows it (a config key
// such as "data_dir", or a flag), for its error.
package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrInUse is what the errors of SocketPath, Listen and TCPFree match (with
// errors.Is) when another process holds the socket or the address: signet
// doctor tells a running server from a foreign one by it.
var ErrInUse = errors.New("in use")

type inUseError struct{ msg string }

func (e *inUseError) Error() string        { return e.msg }
func (e *inUseError) Is(target error) bool { return target == ErrInUse }

// MaxSocketPath is the longest unix socket path Linux accepts: the 108
// bytes of sockaddr_un.sun_path less the terminating NUL.
const MaxSocketPath = 107

// DataDir checks a state directory that may not exist yet. An existing one
// must be a directory owned by the user the process runs as, and writable
// by no group or other user: whoever can write it can replace keys and
// state. A missing one is created later, 0700.
func DataDir(name, dir string) error {
	fi, err := os.Stat(dir) // a symbolic link is judged by its target
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory: give a directory", name, dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(st.Uid) != uid {
			return fmt.Errorf("%s %s is owned by uid %d, not by uid %d that runs this process: chown it, or give a directory of your own",
				name, dir, st.Uid, uid)
		}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s %s is writable by its group or by others (mode %04o): chmod 700 %s", name, dir, perm, dir)
	}
	return nil
}

// SocketPath checks a unix socket path the process will listen on: at
// most MaxSocketPath bytes, and, if something is there already, a stale
// socket (which listening replaces) rather than a file or a socket another
// process serves.
func SocketPath(name, path string) error {
	if path == "" {
		return fmt.Errorf("%s is empty: give a unix socket path", name)
	}
	if len(path) > MaxSocketPath {
		return fmt.Errorf("%s %s is %d bytes long: unix socket paths are limited to %d bytes on Linux; choose a shorter path",
			name, path, len(path), MaxSocketPath)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s %s exists and is not a socket: remove it or choose another path", name, path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return &inUseError{fmt.Sprintf("%s %s is in use: another process serves it (is another instance running?)", name, path)}
	}
	return nil
}

// Listen binds a TCP address for name, saying so when it is in use. The
// caller serves or closes the listener.
func Listen(name, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &inUseError{fmt.Sprintf("%s %s is already in use by another process: stop it or choose another address", name, addr)}
		}
		return nil, fmt.Errorf("%s %s: %w", name, addr, err)
	}
	return l, nil
}

// TCPFree checks that addr can be bound now, for a listener opened later.
// (Another process may still take it in between; binding early, with
// Listen, avoids that.)
func TCPFree(name, addr string) error {
	l, err := Listen(name, addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// PrivateDir checks a directory of private keys: owned by the user the
// process runs as and accessible by no group or other user (0700). A
// missing one is fine (it is created 0700).
func PrivateDir(name, dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory: give a directory", name, dir)
	}
	if err := owned(name, dir, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s is accessible by its group or by others (mode %04o): chmod 700 %s", name, dir, perm, dir)
	}
	return nil
}

// PrivateFile checks a file holding a secret (a private key, a KEK): a
// regular file owned by the user the process runs as that no group or
// other user may read or write (0600 or stricter).
func PrivateFile(name, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file: give the key file", name, path)
	}
	if err := owned(name, path, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s is readable by its group or by others (mode %04o): chmod 600 %s", name, path, perm, path)
	}
	return nil
}

// owned checks that fi, of path, belongs to the effective user.
func owned(name, path string, fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(st.Uid) != uid {
			return fmt.Errorf("%s %s is owned by uid %d, not by uid %d that runs this process: chown %d %s",
				name, path, st.Uid, uid, uid, path)
		}
	}
	return nil
}
