package scan

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FingerprintKeyEnv names the environment variable that may hold the
// fingerprint key. It is never scanned by Scan's environment mode.
const FingerprintKeyEnv = "SIGNET_FINGERPRINT_KEY"

// MinKeyLen is the shortest fingerprint key accepted, in bytes.
const MinKeyLen = 16

// fingerprintHexLen is the number of hex digits of HMAC-SHA256 kept in a
// fingerprint (64 bits).
const fingerprintHexLen = 16

// Fingerprinter computes keyed fingerprints of secrets. It is safe for
// concurrent use.
type Fingerprinter struct {
	key []byte
}

// NewFingerprinter returns a Fingerprinter for key, which must be at least
// MinKeyLen bytes.
func NewFingerprinter(key []byte) (*Fingerprinter, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("new fingerprinter: key is %d bytes, want at least %d", len(key), MinKeyLen)
	}
	return &Fingerprinter{key: bytes.Clone(key)}, nil
}

// Sum returns the fingerprint of secret: the first 16 hex digits of
// HMAC-SHA256(key, secret).
func (f *Fingerprinter) Sum(secret []byte) string {
	m := hmac.New(sha256.New, f.key)
	m.Write(secret)
	return hex.EncodeToString(m.Sum(nil))[:fingerprintHexLen]
}

// SumReader returns the fingerprint of the bytes read from r up to EOF,
// reading them in small pieces.
func (f *Fingerprinter) SumReader(r io.Reader) (string, error) {
	m := hmac.New(sha256.New, f.key)
	if _, err := io.Copy(m, r); err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	return hex.EncodeToString(m.Sum(nil))[:fingerprintHexLen], nil
}

// KeySource says where LoadKey finds the fingerprint key, in order of
// precedence: File, then Env (the key itself), then DefaultPath, which is
// created with a random key on first use.
type KeySource struct {
	File        string // --fingerprint-key-file; "" if unset
	Env         string // the value of SIGNET_FINGERPRINT_KEY; "" if unset
	DefaultPath string // see DefaultKeyPath
}

// DefaultKeyPath returns the per-user key file:
// $XDG_CONFIG_HOME/signet/fingerprint.key, or ~/.config/signet/fingerprint.key.
func DefaultKeyPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locate fingerprint key: %w", err)
	}
	return filepath.Join(dir, "signet", "fingerprint.key"), nil
}

// LoadKey returns the fingerprint key from src. Key files and the
// environment variable hold the key as text; surrounding whitespace is
// ignored. The generated default key is 32 random bytes, hex-encoded, in a
// file of mode 0600; an existing default key file readable by group or
// others is refused.
func LoadKey(src KeySource) ([]byte, error) {
	switch {
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, fmt.Errorf("read fingerprint key: %w", err)
		}
		return checkKey(b, src.File)
	case src.Env != "":
		return checkKey([]byte(src.Env), FingerprintKeyEnv)
	case src.DefaultPath != "":
		return loadOrCreateKey(src.DefaultPath)
	}
	return nil, errors.New("load fingerprint key: no key file, environment variable or default path")
}

func checkKey(b []byte, from string) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) < MinKeyLen {
		return nil, fmt.Errorf("load fingerprint key from %s: %d bytes, want at least %d", from, len(b), MinKeyLen)
	}
	return b, nil
}

func loadOrCreateKey(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err == nil {
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("load fingerprint key: %s is accessible by other users (mode %#o); run chmod 600 on it", path, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read fingerprint key: %w", err)
		}
		return checkKey(b, path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("stat fingerprint key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create fingerprint key directory: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate fingerprint key: %w", err)
	}
	key := []byte(hex.EncodeToString(raw) + "\n")
	// Write a temporary file and link it into place, so a concurrent first
	// run never reads a half-written key and never replaces one in use.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fingerprint.key-*")
	if err != nil {
		return nil, fmt.Errorf("create fingerprint key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write fingerprint key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write fingerprint key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write fingerprint key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateKey(path) // another process won the race
		}
		return nil, fmt.Errorf("install fingerprint key: %w", err)
	}
	return bytes.TrimSpace(key), nil
}
