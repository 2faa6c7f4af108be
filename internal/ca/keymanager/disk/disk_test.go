package disk_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/ca/keymanager/disk"
	"github.com/signet-id/signet/internal/ca/keymanager/keymanagertest"
	"github.com/signet-id/signet/internal/errkind"
)

// keysDir is where the server puts the key directory in its data dir.
func keysDir(storage string) string { return filepath.Join(storage, "keys") }

func open(t *testing.T, storage string) ca.KeyManager {
	t.Helper()
	km, err := disk.New(disk.Config{Dir: keysDir(storage)})
	if err != nil {
		t.Fatalf("disk.New() = %v", err)
	}
	return km
}

func TestConformance(t *testing.T) {
	keymanagertest.Run(t, keymanagertest.Harness{
		Open: open,
		CheckStored: func(t *testing.T, storage, id string) {
			t.Helper()
			checkKeyFile(t, filepath.Join(keysDir(storage), id+".pem"))
			checkNoTemporaryFiles(t, keysDir(storage))
		},
	})
}

// checkKeyFile: a 0600 PKCS#8 PEM file in a 0700 directory.
func checkKeyFile(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file %s mode = %04o, want 0600", p, got)
	}
	di, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("key directory mode = %04o, want 0700", got)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("key file %s is not PKCS#8 PEM", p)
	}
}

func checkNoTemporaryFiles(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".pem") || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("key directory holds %s, want only <id>.pem files", e.Name())
		}
	}
}

func TestNewConfig(t *testing.T) {
	_, err := disk.New(disk.Config{})
	if errkind.Of(err) != errkind.InvalidArgument || !strings.Contains(err.Error(), "key_manager.disk.dir") {
		t.Errorf("New(no dir) = %v, want InvalidArgument naming key_manager.disk.dir", err)
	}

	open := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = disk.New(disk.Config{Dir: open})
	if errkind.Of(err) != errkind.FailedPrecondition || !strings.Contains(err.Error(), "chmod 700 "+open) {
		t.Errorf("New(dir 0755) = %v, want FailedPrecondition saying chmod 700", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := disk.New(disk.Config{Dir: file}); err == nil {
		t.Error("New(a file) = nil error, want one")
	}

	nested := filepath.Join(t.TempDir(), "a", "b", "keys")
	if _, err := disk.New(disk.Config{Dir: nested}); err != nil {
		t.Fatalf("New(missing nested dir) = %v", err)
	}
	if fi, err := os.Stat(nested); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created key directory: %v, mode %v; want 0700", err, fi.Mode())
	}
}

// TestExistingFileLayout: keys written before key managers existed (files
// named <kind>-<authority id>.pem) are read as they are.
func TestExistingFileLayout(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "x509-3f2a.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	km, err := disk.New(disk.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if km.Path("x509-3f2a") != p {
		t.Errorf("Path() = %s, want %s", km.Path("x509-3f2a"), p)
	}
	got, err := km.GetKey(context.Background(), "x509-3f2a")
	if err != nil {
		t.Fatalf("GetKey() = %v", err)
	}
	if !key.PublicKey.Equal(got.Public()) {
		t.Error("GetKey() returned another key")
	}
}

func TestGetKeyRefusesBadFiles(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, p string)
		kind   errkind.Kind
		want   string
	}{
		{"group readable", func(t *testing.T, p string) { chmod(t, p, 0o640) }, errkind.FailedPrecondition, "chmod 600 "},
		{"world readable", func(t *testing.T, p string) { chmod(t, p, 0o604) }, errkind.FailedPrecondition, "readable by group or others"},
		{"garbage", func(t *testing.T, p string) { write(t, p, []byte("not a key")) }, errkind.Internal, "no PEM"},
		{"certificate", func(t *testing.T, p string) {
			write(t, p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}))
		}, errkind.Internal, "no PEM"},
		{"bad pkcs8", func(t *testing.T, p string) {
			write(t, p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
		}, errkind.Internal, "parse"},
		{"too large", func(t *testing.T, p string) { write(t, p, bytes.Repeat([]byte("a"), 65<<10)) }, errkind.Internal, "larger than"},
		{"directory", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, errkind.Internal, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			km, err := disk.New(disk.Config{Dir: filepath.Join(t.TempDir(), "keys")})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := km.GenerateKey(context.Background(), "x509-k", ca.KeyTypeECP256); err != nil {
				t.Fatal(err)
			}
			p := km.Path("x509-k")
			tt.break_(t, p)
			_, err = km.GetKey(context.Background(), "x509-k")
			if err == nil {
				t.Fatal("GetKey() = nil error, want one")
			}
			if errkind.Of(err) != tt.kind || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("GetKey() = %q (kind %s), want kind %s, %q and the path %s", err, errkind.Of(err), tt.kind, tt.want, p)
			}
		})
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
