// Package disk is the key manager that keeps the CA's private keys in
// files: one PKCS#8 PEM file per key, mode 0600, in a directory of mode
// 0700 (by default DATA_DIR/keys of the server). Keys are generated in
// process and written atomically (package atomicfile).
//
// It is the default key manager, registered under Name; HSM and KMS key
// managers implement the same ca.KeyManager interface.
package disk

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
)

// Name is the key manager's name in the plugin registry and in
// configuration files.
const Name = "disk"

// maxKeyFileSize bounds what GetKey reads; a PEM RSA-4096 key is ~3.3 KiB.
const maxKeyFileSize = 64 << 10

// Config configures a KeyManager.
type Config struct {
	// Dir is the directory holding the key files. It is created with mode
	// 0700 when missing; an existing one that group or others can enter is
	// refused. Required.
	Dir string `yaml:"dir"`
}

// KeyManager stores keys as files named <id>.pem in one directory. It is
// safe for concurrent use; several KeyManagers over one directory (a
// restarted server) see each other's keys. It holds no open files.
type KeyManager struct {
	dir string
}

var _ ca.KeyManager = (*KeyManager)(nil)

// New checks cfg, creates the key directory if needed and refuses one that
// group or others can enter (FailedPrecondition).
func New(cfg Config) (*KeyManager, error) {
	if cfg.Dir == "" {
		return nil, errkind.New(errkind.InvalidArgument, "key_manager.disk.dir is required, for example /var/lib/signet/server/keys")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open disk key manager: create key directory: %w", err)
	}
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open disk key manager: %w", err)
	}
	if !fi.IsDir() {
		return nil, errkind.New(errkind.FailedPrecondition, "open disk key manager: %s is not a directory", cfg.Dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, errkind.New(errkind.FailedPrecondition,
			"open disk key manager: key directory %s is accessible by group or others (mode %04o): run chmod 700 %s",
			cfg.Dir, perm, cfg.Dir)
	}
	return &KeyManager{dir: cfg.Dir}, nil
}

// Path returns the file that holds key id.
func (k *KeyManager) Path(id string) string {
	return filepath.Join(k.dir, id+".pem")
}

// GenerateKey creates a key of keyType in process and writes it to
// Path(id) atomically, mode 0600, replacing any previous key file.
func (k *KeyManager) GenerateKey(_ context.Context, id, keyType string) (crypto.Signer, error) {
	key, der, err := ca.NewPKCS8Key(id, keyType)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	defer clear(data)
	if err := atomicfile.WriteFile(k.Path(id), data, 0o600); err != nil {
		return nil, fmt.Errorf("generate key %s: %w", id, err)
	}
	return key, nil
}

// GetKey reads key id from its file. A missing file is NotFound; a file
// that group or others can read is FailedPrecondition, since the key may
// have leaked. Every error names the file.
func (k *KeyManager) GetKey(_ context.Context, id string) (crypto.Signer, error) {
	if err := ca.CheckKeyID("get key", id); err != nil {
		return nil, err
	}
	p := k.Path(id)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errkind.Wrap(errkind.NotFound, err, fmt.Sprintf("get key %s: key file %s does not exist", id, p))
	}
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("get key %s: %s is not a regular file", id, p)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, errkind.New(errkind.FailedPrecondition,
			"get key %s: key file %s is readable by group or others (mode %04o): run chmod 600 %s", id, p, perm, p)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("get key %s: read %s: %w", id, p, err)
	}
	defer clear(data)
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("get key %s: %s is larger than %d bytes", id, p, maxKeyFileSize)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("get key %s: %s holds no PEM \"PRIVATE KEY\" block", id, p)
	}
	defer clear(block.Bytes)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("get key %s: parse %s: %w", id, p, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("get key %s: %s holds a %T, which cannot sign", id, p, key)
	}
	return signer, nil
}

// DeleteKey removes key id's file and syncs the directory; a missing file
// is not an error.
func (k *KeyManager) DeleteKey(_ context.Context, id string) error {
	if err := ca.CheckKeyID("delete key", id); err != nil {
		return err
	}
	err := os.Remove(k.Path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	if err := atomicfile.SyncDir(k.dir); err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	return nil
}
