// Package keymanagertest is the conformance suite every ca.KeyManager must
// pass: keys of every type are generated, read back (also by a key manager
// opened anew over the same storage, as after a restart), replaced and
// deleted; unknown keys are NotFound, bad ids and key types
// InvalidArgument; and all of it holds under concurrent use.
//
// An implementation's test calls Run with a Harness that opens it exactly
// as the server does:
//
//	keymanagertest.Run(t, keymanagertest.Harness{
//		Open: func(t *testing.T, storage string) ca.KeyManager { ... },
//	})
package keymanagertest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
)

// Harness says how the suite opens the key manager under test.
type Harness struct {
	// Open returns a key manager over storage, a fresh directory per test
	// that the implementation may use as it likes. Managers opened over the
	// same storage must see the same keys. Required.
	Open func(t *testing.T, storage string) ca.KeyManager
	// CheckStored, when set, is called after every successful GenerateKey
	// with the storage and the key id, for checks only the implementation
	// knows how to make (the disk key manager: the file's mode is 0600).
	CheckStored func(t *testing.T, storage, id string)
}

// keyTypes are the key types every key manager generates.
var keyTypes = []string{ca.KeyTypeECP256, ca.KeyTypeECP384, ca.KeyTypeRSA2048, ca.KeyTypeRSA4096}

// Run runs the suite, each case as a subtest.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("keymanagertest.Run: Harness.Open is required")
	}
	tests := []struct {
		name string
		f    func(t *testing.T, s *suite)
	}{
		{"GenerateAndGet", testGenerateAndGet},
		{"GetAfterReopen", testGetAfterReopen},
		{"Replace", testReplace},
		{"Delete", testDelete},
		{"UnknownKeyIsNotFound", testUnknownKey},
		{"InvalidID", testInvalidID},
		{"UnknownKeyType", testUnknownKeyType},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f(t, &suite{h: h, storage: t.TempDir()})
		})
	}
}

// suite is one test's storage and harness.
type suite struct {
	h       Harness
	storage string
}

func (s *suite) open(t *testing.T) ca.KeyManager {
	t.Helper()
	km := s.h.Open(t, s.storage)
	if km == nil {
		t.Fatal("Harness.Open returned nil")
	}
	return km
}

// generate calls GenerateKey, fails the test on error and runs CheckStored.
func (s *suite) generate(t *testing.T, km ca.KeyManager, id, keyType string) crypto.Signer {
	t.Helper()
	k, err := km.GenerateKey(context.Background(), id, keyType)
	if err != nil {
		t.Fatalf("GenerateKey(%q, %q) = %v", id, keyType, err)
	}
	if k == nil {
		t.Fatalf("GenerateKey(%q, %q) = nil signer", id, keyType)
	}
	if s.h.CheckStored != nil {
		s.h.CheckStored(t, s.storage, id)
	}
	return k
}

// get calls GetKey and fails the test on error.
func get(t *testing.T, km ca.KeyManager, id string) crypto.Signer {
	t.Helper()
	k, err := km.GetKey(context.Background(), id)
	if err != nil {
		t.Fatalf("GetKey(%q) = %v", id, err)
	}
	return k
}

// wantKind fails unless err carries kind k.
func wantKind(t *testing.T, what string, err error, k errkind.Kind) {
	t.Helper()
	if err == nil {
		t.Errorf("%s = nil error, want kind %s", what, k)
	} else if got := errkind.Of(err); got != k {
		t.Errorf("%s = %v (kind %s), want kind %s", what, err, got, k)
	}
}

// samePublic reports whether two signers hold the same public key.
func samePublic(a, b crypto.Signer) bool {
	pa, err1 := x509.MarshalPKIXPublicKey(a.Public())
	pb, err2 := x509.MarshalPKIXPublicKey(b.Public())
	return err1 == nil && err2 == nil && bytes.Equal(pa, pb)
}

// checkType fails unless k is a key of keyType.
func checkType(t *testing.T, k crypto.Signer, keyType string) {
	t.Helper()
	var ok bool
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		ok = keyType == ca.KeyTypeECP256 && pub.Curve == elliptic.P256() ||
			keyType == ca.KeyTypeECP384 && pub.Curve == elliptic.P384()
	case *rsa.PublicKey:
		ok = keyType == ca.KeyTypeRSA2048 && pub.N.BitLen() == 2048 ||
			keyType == ca.KeyTypeRSA4096 && pub.N.BitLen() == 4096
	}
	if !ok {
		t.Errorf("key of type %s has public key %T", keyType, k.Public())
	}
}

// checkSigns signs a digest with k and verifies it with pub.
func checkSigns(t *testing.T, k crypto.Signer, pub crypto.PublicKey) {
	t.Helper()
	digest := sha256.Sum256([]byte("signet key manager conformance"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	var ok bool
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(p, digest[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(p, crypto.SHA256, digest[:], sig) == nil
	default:
		t.Fatalf("unexpected public key %T", pub)
	}
	if !ok {
		t.Error("signature does not verify with the generated key's public key")
	}
}
