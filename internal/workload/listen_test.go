//go:build linux

package workload_test

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/workload"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "signet", "api.sock")
	l, err := workload.Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s) = %v", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o777 {
		t.Errorf("socket mode = %v, want a socket with 0777", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("parent directory = %v, %v; want mode 0755", di.Mode(), err)
	}

	// A live server owns the socket: refuse to take it over.
	if _, err := workload.Listen(path); !errkind.Is(err, errkind.FailedPrecondition) {
		t.Errorf("Listen(socket in use) = %v, want FailedPrecondition", err)
	}
	l.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket after Close: %v, want it removed", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	// A socket file whose server died without removing it.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	l2, err := workload.Listen(path)
	if err != nil {
		t.Fatalf("Listen(stale socket) = %v", err)
	}
	l2.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "api.sock")
	if err := os.WriteFile(file, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := workload.Listen(file); !errkind.Is(err, errkind.FailedPrecondition) {
		t.Errorf("Listen(regular file) = %v, want FailedPrecondition", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "precious" {
		t.Error("Listen modified the regular file at the socket path")
	}
	if _, err := workload.Listen(dir); !errkind.Is(err, errkind.FailedPrecondition) {
		t.Errorf("Listen(directory) = %v, want FailedPrecondition", err)
	}
	if _, err := workload.Listen(""); !errkind.Is(err, errkind.InvalidArgument) {
		t.Errorf("Listen(\"\") = %v, want InvalidArgument", err)
	}
}
