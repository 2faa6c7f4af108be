package preflight

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSocketPath(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "new.sock"), ""},
		{stale, ""}, // a stale socket is replaced when listening
		{file, "exists and is not a socket"},
		{"/" + strings.Repeat("a", MaxSocketPath), "is 108 bytes long: unix socket paths are limited to 107 bytes"},
		{"/" + strings.Repeat("a", MaxSocketPath-1), ""},
		{"", "is empty"},
	} {
		err := SocketPath("socket", tt.path)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("SocketPath(%.20q…) = %v, want %q", tt.path, err, tt.want)
		}
	}
}

func TestDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := DataDir("data_dir", filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing dir: %v", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := DataDir("data_dir", dir); err != nil {
		t.Errorf("0750 dir: %v", err)
	}
	if err := os.Chmod(dir, 0o702); err != nil {
		t.Fatal(err)
	}
	if err := DataDir("data_dir", dir); err == nil || !strings.Contains(err.Error(), "data_dir "+dir+" is writable by its group or by others (mode 0702)") {
		t.Errorf("world-writable dir: %v", err)
	}
	// A link is judged by its target.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := DataDir("data_dir", link); err == nil || !strings.Contains(err.Error(), "mode 0702") {
		t.Errorf("link to a world-writable dir: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := DataDir("data_dir", file); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("file: %v", err)
	}
}

func TestListenInUse(t *testing.T) {
	l, err := Listen("bind_address", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := TCPFree("bind_address", l.Addr().String()); err == nil || !strings.Contains(err.Error(), "is already in use") || !errors.Is(err, ErrInUse) {
		t.Errorf("TCPFree(in use) = %v, want ErrInUse", err)
	}
}

func TestSocketPathInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := SocketPath("socket", path); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "is in use") {
		t.Errorf("SocketPath(served) = %v, want ErrInUse", err)
	}
}

func TestPrivateDirAndFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(key, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir("keys", dir); err != nil {
		t.Errorf("PrivateDir(0700) = %v", err)
	}
	if err := PrivateFile("key", key); err != nil {
		t.Errorf("PrivateFile(0600) = %v", err)
	}
	if err := PrivateDir("keys", filepath.Join(dir, "missing")); err != nil {
		t.Errorf("PrivateDir(missing) = %v", err)
	}
	for _, tt := range []struct {
		mode os.FileMode
		want string
	}{{0o640, "mode 0640): chmod 600 " + key}, {0o602, "mode 0602)"}} {
		if err := os.Chmod(key, tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := PrivateFile("key", key); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("PrivateFile(%04o) = %v, want %q", tt.mode, err, tt.want)
		}
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir("keys", dir); err == nil || !strings.Contains(err.Error(), "(mode 0750): chmod 700 "+dir) {
		t.Errorf("PrivateDir(0750) = %v", err)
	}
	if err := PrivateFile("key", dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("PrivateFile(dir) = %v", err)
	}
	if err := PrivateFile("key", filepath.Join(dir, "missing")); err == nil {
		t.Error("PrivateFile(missing) = nil")
	}
}
