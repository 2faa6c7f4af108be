package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// KeyManager holds the private keys of this server's authorities: the
// Manager generates a key for every authority it creates, loads it again
// after a restart and deletes it when the authority retires. The disk key
// manager (package keymanager/disk) keeps them in files; an HSM or a KMS
// can do the same behind this interface, never handing out key material:
// the Manager only calls Sign and Public on the signers it returns.
//
// Key ids are chosen by the Manager and satisfy ValidKeyID. Implementations
// must be safe for concurrent use and pass the conformance suite in
// package keymanager/keymanagertest.
type KeyManager interface {
	// GenerateKey creates a new key of keyType (KeyTypeECP256, KeyTypeECP384,
	// KeyTypeRSA2048 or KeyTypeRSA4096) under id, replacing any key stored
	// under id, and returns it once it is stored durably. An invalid id or
	// an unknown key type is InvalidArgument.
	GenerateKey(ctx context.Context, id, keyType string) (crypto.Signer, error)
	// GetKey returns the key stored under id. The error is kinded NotFound
	// when there is none.
	GetKey(ctx context.Context, id string) (crypto.Signer, error)
	// DeleteKey removes the key stored under id. A missing key is not an
	// error.
	DeleteKey(ctx context.Context, id string) error
}

// SharedKeyManager is the optional capability of a KeyManager whose keys
// every server replica of the trust domain reads and writes (the sealed key
// manager keeps them in the shared store). With one, the Manager keeps one
// set of authorities for the whole trust domain, owned by SharedServerID
// instead of by a replica, and changes them only under the store's
// rotation claim (RotationClaimer), so each rotation step happens once.
type SharedKeyManager interface {
	KeyManager
	// SharedByReplicas marks the capability; it does nothing.
	SharedByReplicas()
}

// SharedServerID is the owner (model.Authority.ServerID) of the trust
// domain's authorities when the key manager is shared by every replica.
const SharedServerID = "trust-domain"

// Key types accepted in Config.KeyType and by KeyManager.GenerateKey.
const (
	KeyTypeECP256  = "ec-p256" // the default
	KeyTypeECP384  = "ec-p384"
	KeyTypeRSA2048 = "rsa-2048"
	KeyTypeRSA4096 = "rsa-4096"
)

// validKeyType reports whether t names a key type of this package.
func validKeyType(t string) bool {
	switch t {
	case KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048, KeyTypeRSA4096:
		return true
	}
	return false
}

// NewPrivateKey generates a private key of keyType in process, for key
// managers that hold key material themselves (disk, sealed). An unknown
// type is InvalidArgument.
func NewPrivateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case KeyTypeECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyTypeRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, errkind.New(errkind.InvalidArgument,
		"unknown key type %q: use ec-p256, ec-p384, rsa-2048 or rsa-4096", keyType)
}

// NewPKCS8Key generates a key of keyType as NewPrivateKey does and returns
// it with its PKCS #8 DER, which the caller clears when done; errors name
// the key id.
func NewPKCS8Key(id, keyType string) (crypto.Signer, []byte, error) {
	if err := CheckKeyID("generate key", id); err != nil {
		return nil, nil, err
	}
	key, err := NewPrivateKey(keyType)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key %s: %w", id, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key %s: marshal pkcs8: %w", id, err)
	}
	return key, der, nil
}

// CheckKeyID refuses, as InvalidArgument naming op, a key id ValidKeyID
// does not accept.
func CheckKeyID(op, id string) error {
	if !ValidKeyID(id) {
		return errkind.New(errkind.InvalidArgument, "%s: invalid key id %q: use letters, digits, '-' and '_'", op, id)
	}
	return nil
}

// ValidKeyID reports whether id is a key id the Manager may use: 1 to 128
// ASCII letters, digits, '-' and '_'. Key ids reach file systems and
// external key stores, so key managers refuse others.
func ValidKeyID(id string) bool {
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

// keyID returns the key manager id of authority a's private key.
// Authorities created before key managers carry none: their key is named
// "<kind>-<id>", as the files of the disk key manager always were.
func keyID(a model.Authority) string {
	if a.KeyID != "" {
		return a.KeyID
	}
	return string(a.Kind) + "-" + a.ID
}

// newKeyID returns a fresh key id for an authority of kind: the authority
// id derives from the public key, so it is not known before the key is.
func newKeyID(kind model.AuthorityKind) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	return string(kind) + "-" + hex.EncodeToString(b[:])
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

// loadKey gets own authority a's key from the key manager and checks that
// it is the private half of a.PublicKey. A key the manager does not have
// is FailedPrecondition: the server cannot use the authority.
func (m *Manager) loadKey(ctx context.Context, a model.Authority) (crypto.Signer, error) {
	id := keyID(a)
	s, err := m.keys.GetKey(ctx, id)
	if errkind.Is(err, errkind.NotFound) {
		return nil, errkind.Wrap(errkind.FailedPrecondition, err, fmt.Sprintf(
			"load key of %s authority %s: key %s is missing: restore it from a backup, "+
				"or prepare and activate a new authority", a.Kind, a.ID, id))
	}
	if err != nil {
		return nil, fmt.Errorf("load key of %s authority %s: %w", a.Kind, a.ID, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil, fmt.Errorf("load key of %s authority %s: %w", a.Kind, a.ID, err)
	}
	if !bytes.Equal(pub, a.PublicKey) {
		return nil, fmt.Errorf("load key of %s authority %s: key %s does not match the authority's public key", a.Kind, a.ID, id)
	}
	return s, nil
}
