// Package seal encrypts the broker's secrets at rest: sealed static secrets
// and the revocation data of providers are AES-256-GCM ciphertexts under a
// key-encryption key (KEK) read from a file that only the server can read.
// Without the KEK the store reveals nothing but names, versions and sizes.
//
// A sealed value is self-describing: a format version, the KEK's id (a hash
// of the key, never the key) and a random nonce precede the ciphertext, so a
// later KEK rotation can keep several keys and open each value with the one
// it names. The associated data binds each value to its purpose and name
// (the credential name for secrets, the lease id for revocation data): a
// ciphertext copied to another row does not open.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// KeySize is the size of a KEK: 32 bytes for AES-256.
const KeySize = 32

// format is the first byte of every sealed value.
const format byte = 1

// idSize is the length of a key id in bytes.
const idSize = 8

// headerSize is the format byte, the key id and the GCM nonce.
const headerSize = 1 + idSize + 12

// checkPlaintext is what a KEK check value seals; opening it proves the KEK
// is the one the store's values were sealed with.
var checkPlaintext = []byte("signet broker kek check v1")

// Purposes of sealed values, part of their associated data.
const (
	PurposeSecret = "secret" // a static secret's value, named by its credential
	PurposeRevoke = "revoke" // a provider's revocation data, named by its lease id
	purposeCheck  = "kek-check"
)

// ErrWrongKey is returned (wrapped) when a value was sealed under another
// KEK than the one loaded.
var ErrWrongKey = errors.New("sealed under a different key-encryption key")

// Sealer seals and opens values under one KEK. It is safe for concurrent
// use. The zero value is not usable: use Load or New.
type Sealer struct {
	id   [idSize]byte
	aead cipher.AEAD
	rand io.Reader
}

// Load reads the broker's KEK from path (the broker.kek_file setting): see
// LoadFile.
func Load(path string) (*Sealer, error) { return LoadFile("broker.kek_file", path) }

// LoadFile reads a KEK from path; field names the setting in errors (such
// as key_manager.sealed.kek_file). The file must hold exactly KeySize bytes
// and must not be readable or writable by group or others (0600 or
// stricter); anything else is refused with a message saying how to fix it.
func LoadFile(field, path string) (*Sealer, error) {
	key, err := ReadKeyFile(field, path, OwnerOnly)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return New(key)
}

// A KeyFileMode says which permission bits a KEK file may not have.
type KeyFileMode struct {
	forbidden fs.FileMode
	rule      string // what the bits mean, for the error
}

var (
	// OwnerOnly is the rule for a KEK Signet uses: 0600 or stricter.
	OwnerOnly = KeyFileMode{0o077, "readable by its owner only"}
	// NotOthers is the rule for a KEK's source that Signet copies into an
	// owner-only file (signet server kek install): a Kubernetes Secret
	// mounted in a pod with an fsGroup is group-readable (0440) whatever
	// its defaultMode, so only group write and any access by others are
	// refused.
	NotOthers = KeyFileMode{0o027, "neither writable by its group nor open to others"}
)

// ReadKeyFile returns the KeySize bytes of the KEK file at path, which must
// be a regular file whose mode follows the rule; field names the setting or
// argument in errors. Callers clear the returned key when done with it.
func ReadKeyFile(field, path string, rule KeyFileMode) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %s is not a regular file", field, path)
	}
	if perm := fi.Mode().Perm(); perm&rule.forbidden != 0 {
		return nil, fmt.Errorf("%s: %s has mode %04o: a key-encryption key must be %s (chmod 600 %s)", field, path, perm, rule.rule, path)
	}
	key := make([]byte, KeySize+1)
	n, err := io.ReadFull(f, key)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(key)
		return nil, fmt.Errorf("%s: read %s: %w", field, path, err)
	}
	if n != KeySize {
		clear(key)
		what := fmt.Sprintf("%d bytes", n)
		if n > KeySize {
			what = "more than 32 bytes"
		}
		return nil, fmt.Errorf("%s: %s holds %s: want exactly %d random bytes (make one with: signet server kek generate %s)", field,
			path, what, KeySize, path)
	}
	return key[:KeySize], nil
}

// New returns a Sealer for key, which must be KeySize bytes. The key is
// copied into the cipher; callers may clear their copy.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key-encryption key: %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	s := &Sealer{aead: aead, rand: rand.Reader}
	// The id is a domain-separated hash of the key: it names the key in
	// sealed values and error messages and reveals nothing about it.
	h := sha256.Sum256(append([]byte("signet broker kek id v1\x00"), key...))
	copy(s.id[:], h[:idSize])
	return s, nil
}

// KeyID returns the KEK's id as 16 hex digits.
func (s *Sealer) KeyID() string { return hex.EncodeToString(s.id[:]) }

// aad is the associated data of a value: the format, the key id, the
// purpose and the name, each length-prefixed so no two encode alike.
func (s *Sealer) aad(id []byte, purpose, name string) []byte {
	b := make([]byte, 0, 1+len(id)+4+len(purpose)+len(name))
	b = append(b, format)
	b = append(b, id...)
	b = append(b, byte(len(purpose)>>8), byte(len(purpose)))
	b = append(b, purpose...)
	b = append(b, byte(len(name)>>8), byte(len(name)))
	b = append(b, name...)
	return b
}

// Seal encrypts plaintext for purpose and name (such as PurposeSecret and a
// credential name). name must be under 64 KiB.
func (s *Sealer) Seal(purpose, name string, plaintext []byte) ([]byte, error) {
	if len(name) > 0xffff || len(purpose) > 0xffff {
		return nil, fmt.Errorf("seal %s: name too long", purpose)
	}
	out := make([]byte, headerSize, headerSize+len(plaintext)+s.aead.Overhead())
	out[0] = format
	copy(out[1:], s.id[:])
	if _, err := io.ReadFull(s.rand, out[1+idSize:headerSize]); err != nil {
		return nil, fmt.Errorf("seal %s: nonce: %w", purpose, err)
	}
	return s.aead.Seal(out, out[1+idSize:headerSize], plaintext, s.aad(s.id[:], purpose, name)), nil
}

// Open decrypts a value Seal made for the same purpose and name. A value
// sealed under another KEK fails with ErrWrongKey; a tampered value, or one
// made for another name, fails without saying which.
func (s *Sealer) Open(purpose, name string, sealed []byte) ([]byte, error) {
	if len(sealed) < headerSize+s.aead.Overhead() || sealed[0] != format {
		return nil, fmt.Errorf("open sealed %s %q: not a sealed value of format %d", purpose, name, format)
	}
	id := sealed[1 : 1+idSize]
	if subtle.ConstantTimeCompare(id, s.id[:]) != 1 {
		return nil, fmt.Errorf("open sealed %s %q: %w (value's key id %x, loaded key id %s)", purpose, name, ErrWrongKey, id, s.KeyID())
	}
	pt, err := s.aead.Open(nil, sealed[1+idSize:headerSize], sealed[headerSize:], s.aad(id, purpose, name))
	if err != nil {
		return nil, fmt.Errorf("open sealed %s %q: the value was altered or belongs to another name", purpose, name)
	}
	return pt, nil
}

// CheckValue returns a fresh KEK check value to keep in the store beside
// the sealed values; Verify later proves a loaded KEK is the same one.
func (s *Sealer) CheckValue() ([]byte, error) {
	return s.Seal(purposeCheck, "", checkPlaintext)
}

// Verify reports whether check, made by CheckValue, was made under this
// KEK. The error says so clearly when it was not, naming both key ids.
func (s *Sealer) Verify(check []byte) error {
	pt, err := s.Open(purposeCheck, "", check)
	if errors.Is(err, ErrWrongKey) {
		return fmt.Errorf("broker.kek_file: this is not the key-encryption key the store's secrets were sealed with (store key id %x, file key id %s): restore the original KEK file",
			check[1:1+idSize], s.KeyID())
	}
	if err != nil || !bytes.Equal(pt, checkPlaintext) {
		return errors.New("broker.kek_file: the store's KEK check value does not open under this key: the check value or the key is corrupt")
	}
	return nil
}
