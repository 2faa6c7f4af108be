package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// Key types accepted in Config.KeyType.
const (
	KeyTypeECP256  = "ec-p256" // the default
	KeyTypeECP384  = "ec-p384"
	KeyTypeRSA2048 = "rsa-2048"
	KeyTypeRSA4096 = "rsa-4096"
)

// maxKeyFileSize bounds what loadKey reads; a PEM RSA-4096 key is ~3.3 KiB.
const maxKeyFileSize = 64 << 10

// validKeyType reports whether t names a key type this package generates.
func validKeyType(t string) bool {
	switch t {
	case KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048, KeyTypeRSA4096:
		return true
	}
	return false
}

// generateKey creates a new private key of type t in process.
func generateKey(t string) (crypto.Signer, error) {
	switch t {
	case KeyTypeECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyTypeRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("generate key: unknown key type %q", t)
}

// privateKey is an authority's private key as held in memory. Its String
// and LogValue methods redact the key, so an accidental log line or %v
// never prints key material.
type privateKey struct {
	id     string
	signer crypto.Signer
}

// String returns a redacted description of the key.
func (k privateKey) String() string {
	return fmt.Sprintf("private key %s (%T, redacted)", k.id, k.signer)
}

// LogValue implements slog.LogValuer: only the id and the key's Go type.
func (k privateKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.id), slog.String("type", fmt.Sprintf("%T", k.signer)))
}

// keyDir stores authority private keys as PKCS#8 PEM files, one per
// authority, named <kind>-<authority id>.pem, in a directory of mode 0700.
type keyDir struct {
	dir string
}

// openKeyDir creates dir (mode 0700) if needed and refuses a directory
// other users can enter.
func openKeyDir(dir string) (*keyDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("stat key directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("key directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, errkind.New(errkind.FailedPrecondition,
			"key directory %s is accessible by group or others (mode %04o): run chmod 700 %s",
			dir, fi.Mode().Perm(), dir)
	}
	return &keyDir{dir: dir}, nil
}

// validID reports whether id is safe to use in a file name: it comes from
// the shared store, so it is checked before it reaches the file system.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// path returns the key file of authority id of the given kind.
func (d *keyDir) path(kind model.AuthorityKind, id string) string {
	return filepath.Join(d.dir, string(kind)+"-"+id+".pem")
}

// write stores key atomically: a temporary file in the same directory,
// written, fsynced, renamed over the final name, then the directory fsynced.
func (d *keyDir) write(kind model.AuthorityKind, id string, key crypto.Signer) (err error) {
	if !validID(id) {
		return fmt.Errorf("write key: invalid authority id %q", id)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("write key %s: marshal pkcs8: %w", id, err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	defer clear(der)
	defer clear(data)

	final := d.path(kind, id)
	f, err := os.CreateTemp(d.dir, ".tmp-"+filepath.Base(final)+"-*")
	if err != nil {
		return fmt.Errorf("write key %s: %w", final, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("write key %s: %w", final, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write key %s: %w", final, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write key %s: fsync: %w", final, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("write key %s: %w", final, err)
	}
	return d.syncDir()
}

// syncDir fsyncs the directory so a rename or removal survives a crash.
func (d *keyDir) syncDir() error {
	df, err := os.Open(d.dir)
	if err != nil {
		return fmt.Errorf("sync key directory: %w", err)
	}
	defer df.Close()
	if err := df.Sync(); err != nil {
		return fmt.Errorf("sync key directory %s: %w", d.dir, err)
	}
	return nil
}

// load reads the key of authority a, refusing a file readable by group or
// others, and checks that it is the private half of a.PublicKey.
func (d *keyDir) load(a model.Authority) (crypto.Signer, error) {
	if !validID(a.ID) {
		return nil, fmt.Errorf("load key: invalid authority id %q", a.ID)
	}
	p := d.path(a.Kind, a.ID)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errkind.Wrap(errkind.FailedPrecondition, err, fmt.Sprintf(
			"load key of %s authority %s: key file %s is missing: restore it from a backup of the data dir, "+
				"or prepare and activate a new authority", a.Kind, a.ID, p))
	}
	if err != nil {
		return nil, fmt.Errorf("load key of %s authority %s: %w", a.Kind, a.ID, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load key %s: not a regular file", p)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, errkind.New(errkind.FailedPrecondition,
			"load key: key file %s is readable by group or others (mode %04o): run chmod 600 %s", p, perm, p)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", p, err)
	}
	defer clear(data)
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("load key %s: file larger than %d bytes", p, maxKeyFileSize)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("load key %s: no PEM \"PRIVATE KEY\" block", p)
	}
	defer clear(block.Bytes)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load key %s: parse pkcs8: %w", p, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load key %s: %T is not a signing key", p, k)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("load key %s: %w", p, err)
	}
	if !bytes.Equal(pub, a.PublicKey) {
		return nil, fmt.Errorf("load key %s: key does not match the public key of %s authority %s", p, a.Kind, a.ID)
	}
	return signer, nil
}

// remove deletes the key file of an authority; a missing file is not an
// error.
func (d *keyDir) remove(kind model.AuthorityKind, id string) error {
	if !validID(id) {
		return fmt.Errorf("remove key: invalid authority id %q", id)
	}
	err := os.Remove(d.path(kind, id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove key: %w", err)
	}
	if err == nil {
		return d.syncDir()
	}
	return nil
}
