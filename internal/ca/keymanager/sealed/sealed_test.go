package sealed_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/ca/keymanager/keymanagertest"
	"github.com/signet-id/signet/internal/ca/keymanager/sealed"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// stores caches one SQLite store per storage directory, so managers
// "reopened" over the same storage share it (as replicas share PostgreSQL).
var stores sync.Map // storage dir → *store.Store

func storeFor(t *testing.T, storage string) *store.Store {
	t.Helper()
	if s, ok := stores.Load(storage); ok {
		return s.(*store.Store)
	}
	s, err := store.Open(context.Background(), store.Config{DSN: filepath.Join(storage, "signet.db")})
	if err != nil {
		t.Fatalf("store.Open() = %v", err)
	}
	if prev, loaded := stores.LoadOrStore(storage, s); loaded {
		s.Close()
		return prev.(*store.Store)
	}
	t.Cleanup(func() { stores.Delete(storage); s.Close() })
	return s
}

// writeKEK writes 32 random bytes at path, mode 0600, unless it exists.
func writeKEK(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	if err := os.WriteFile(path, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func open(t *testing.T, storage string) ca.KeyManager {
	t.Helper()
	km, err := sealed.New(t.Context(), sealed.Config{KEKFile: writeKEK(t, filepath.Join(storage, "ca.kek"))}, storeFor(t, storage))
	if err != nil {
		t.Fatalf("sealed.New() = %v", err)
	}
	return km
}

func TestConformance(t *testing.T) {
	keymanagertest.Run(t, keymanagertest.Harness{Open: open})
}

// TestStoreHoldsNoPlaintext: what the store keeps is not the key's PKCS #8
// form, nor does it contain it.
func TestStoreHoldsNoPlaintext(t *testing.T) {
	storage := t.TempDir()
	km := open(t, storage)
	key, err := km.GenerateKey(t.Context(), "x509-plain", ca.KeyTypeECP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := storeFor(t, storage).CAKey(t.Context(), "x509-plain")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, der) || bytes.Contains(stored, der[len(der)-32:]) {
		t.Error("the store holds the plaintext private key")
	}
}

// TestWrongKEKRefused: a replica given another KEK file than the first one
// is refused when it opens, with an error naming the setting; a KEK file of
// the wrong size or mode is refused naming the file.
func TestWrongKEKRefused(t *testing.T) {
	storage := t.TempDir()
	open(t, storage) // records the check value of storage/ca.kek
	other := writeKEK(t, filepath.Join(t.TempDir(), "other.kek"))
	_, err := sealed.New(t.Context(), sealed.Config{KEKFile: other}, storeFor(t, storage))
	if !errkind.Is(err, errkind.FailedPrecondition) || !strings.Contains(err.Error(), "key_manager.sealed.kek_file") ||
		!strings.Contains(err.Error(), "same KEK file") {
		t.Errorf("sealed.New(other KEK) = %v, want FailedPrecondition naming key_manager.sealed.kek_file", err)
	}

	dir := t.TempDir()
	short := filepath.Join(dir, "short.kek")
	_ = os.WriteFile(short, []byte("too short"), 0o600)
	loose := filepath.Join(dir, "loose.kek")
	_ = os.WriteFile(loose, make([]byte, 32), 0o644)
	for name, tc := range map[string]struct {
		cfg  sealed.Config
		want string
	}{
		"no file":      {sealed.Config{}, "key_manager.sealed.kek_file is required"},
		"missing file": {sealed.Config{KEKFile: filepath.Join(dir, "none")}, "key_manager.sealed.kek_file: open"},
		"short":        {sealed.Config{KEKFile: short}, "want exactly 32 random bytes"},
		"mode":         {sealed.Config{KEKFile: loose}, "readable by its owner only"},
	} {
		if _, err := sealed.New(t.Context(), tc.cfg, storeFor(t, storage)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: sealed.New() = %v, want %q", name, err, tc.want)
		}
	}
}

// TestKeySealedUnderOtherKEK: a sealed key copied into a store whose check
// value matches another KEK (a restore mixing backups) does not open, and
// the error says which setting to look at.
func TestKeySealedUnderOtherKEK(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	kmA, kmB := open(t, a), open(t, b)
	if _, err := kmA.GenerateKey(t.Context(), "jwt-moved", ca.KeyTypeECP256); err != nil {
		t.Fatal(err)
	}
	v, err := storeFor(t, a).CAKey(t.Context(), "jwt-moved")
	if err != nil {
		t.Fatal(err)
	}
	if err := storeFor(t, b).PutCAKey(t.Context(), "jwt-moved", "x", v); err != nil {
		t.Fatal(err)
	}
	_, err = kmB.GetKey(t.Context(), "jwt-moved")
	if !errkind.Is(err, errkind.FailedPrecondition) || !strings.Contains(err.Error(), "key_manager.sealed.kek_file") {
		t.Errorf("GetKey(sealed under another KEK) = %v, want FailedPrecondition naming the setting", err)
	}
}

// TestTwoManagersOneCA: two CA managers (two replicas) over one real store
// with the sealed key manager sign with the same authorities, and an SVID
// minted by either verifies against the one bundle.
func TestTwoManagersOneCA(t *testing.T) {
	storage := t.TempDir()
	st := storeFor(t, storage)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	var ms []*ca.Manager
	for _, id := range []string{"replica-a", "replica-b"} {
		m, err := ca.New(ca.Config{TrustDomain: td, ServerID: id, Store: st, KeyManager: open(t, storage)})
		if err != nil {
			t.Fatalf("ca.New() = %v", err)
		}
		if err := m.Init(t.Context()); err != nil {
			t.Fatalf("Init(%s) = %v", id, err)
		}
		ms = append(ms, m)
	}
	auths, err := ms[0].Authorities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(auths) != 2 {
		t.Fatalf("%d authorities for two replicas, want 2 (one x509, one jwt): %+v", len(auths), auths)
	}
	for _, a := range auths {
		if a.ServerID != ca.SharedServerID {
			t.Errorf("authority %s/%s owned by %q, want %q", a.Kind, a.ID, a.ServerID, ca.SharedServerID)
		}
	}
	if _, err := ms[1].Prepare(t.Context(), "x509"); err != nil {
		t.Fatalf("Prepare() on replica b = %v", err)
	}
	if _, err := ms[0].Activate(t.Context(), "x509"); err != nil {
		t.Fatalf("Activate() on replica a = %v", err)
	}
	if err := ms[1].Follow(t.Context()); err != nil {
		t.Fatalf("Follow() = %v", err)
	}
	auths, _ = ms[1].Authorities(t.Context())
	bundle, err := ca.BundleFromAuthorities(td, auths, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		chain, err := m.SignX509SVID(t.Context(), newCSR(t), ca.X509Params{ID: spiffeid.RequireFromPath(td, "/w"), TTL: time.Minute})
		if err != nil {
			t.Fatalf("replica %d SignX509SVID() = %v", i, err)
		}
		raw := make([][]byte, len(chain))
		for j, c := range chain {
			raw[j] = c.Raw
		}
		if _, _, err := x509svid.ParseAndVerify(raw, bundle); err != nil {
			t.Errorf("replica %d's SVID does not verify against the shared bundle: %v", i, err)
		}
	}
}

// newCSR returns a PKCS #10 request for a fresh P-256 key.
func newCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
