package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/atomicfile"
)

func newAgentSVID(t testing.TB, ca *testCA, notBefore time.Time, ttl time.Duration) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromSegments(ca.td, "signet", "agent", "test")
	leaf := ca.sign(t, id, key.Public(), notBefore, notBefore.Add(ttl))
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

func TestDataDirModesAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := openDataDir(path)
	if err != nil {
		t.Fatalf("openDataDir() = %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o700 {
		t.Errorf("data dir mode = %o, want 700", mode)
	}
	_, err = openDataDir(path)
	if err == nil || !strings.Contains(err.Error(), "in use by another agent") {
		t.Errorf("second openDataDir() = %v, want an in-use error", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := openDataDir(path)
	if err != nil {
		t.Fatalf("openDataDir() after Close = %v", err)
	}
	d2.Close()
}

func TestAgentSVIDPersistence(t *testing.T) {
	ca := newTestCA(t, "example.org")
	d, err := openDataDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	now := time.Now()

	if svid, err := d.loadAgentSVID(ca.td); svid != nil || err != nil {
		t.Fatalf("loadAgentSVID(empty dir) = %v, %v; want nil, nil", svid, err)
	}
	svid := newAgentSVID(t, ca, now.Add(-time.Minute), time.Hour)
	if err := d.saveAgentSVID(svid); err != nil {
		t.Fatalf("saveAgentSVID() = %v", err)
	}
	for _, name := range []string{agentSVIDFile, agentKeyFile} {
		fi, err := os.Stat(d.file(name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s mode = %o, want 600", name, mode)
		}
	}
	got, err := d.loadAgentSVID(ca.td)
	if err != nil {
		t.Fatalf("loadAgentSVID() = %v", err)
	}
	if got.ID != svid.ID || !got.Certificates[0].Equal(svid.Certificates[0]) {
		t.Errorf("loadAgentSVID() = %s, want the saved SVID %s", got.ID, svid.ID)
	}

	// Overwriting leaves no temporary files behind.
	if err := d.saveAgentSVID(newAgentSVID(t, ca, now, time.Hour)); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(d.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in the data dir", e.Name())
		}
	}

	// Loaded after expiry (its key still proves the node to agent_reauth);
	// refused at load: wrong trust domain, mismatched key.
	expired := newAgentSVID(t, ca, now.Add(-2*time.Hour), time.Hour)
	if err := d.saveAgentSVID(expired); err != nil {
		t.Fatal(err)
	}
	if got, err := d.loadAgentSVID(ca.td); err != nil || got == nil || !got.Certificates[0].Equal(expired.Certificates[0]) {
		t.Errorf("loadAgentSVID(expired) = %v, %v; want the expired SVID", got, err)
	}
	if _, err := d.loadAgentSVID(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
		t.Errorf("loadAgentSVID(other trust domain) = nil error, want one")
	}
	keyPEM, err := os.ReadFile(d.file(agentKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	other := newAgentSVID(t, ca, now, time.Hour)
	_, otherKey, err := other.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(d.file(agentKeyFile), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.loadAgentSVID(ca.td); err == nil {
		t.Errorf("loadAgentSVID(mismatched key) = nil error, want one")
	}
	if err := atomicfile.WriteFile(d.file(agentKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := d.removeAgentSVID(); err != nil {
		t.Fatalf("removeAgentSVID() = %v", err)
	}
	if svid, err := d.loadAgentSVID(ca.td); svid != nil || err != nil {
		t.Errorf("loadAgentSVID() after remove = %v, %v; want nil, nil", svid, err)
	}
	if err := d.removeAgentSVID(); err != nil {
		t.Errorf("removeAgentSVID() twice = %v, want nil", err)
	}
}

func TestBundlePersistence(t *testing.T) {
	ca := newTestCA(t, "example.org")
	d, err := openDataDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if b, err := d.loadBundle(ca.td); b != nil || err != nil {
		t.Fatalf("loadBundle(empty dir) = %v, %v; want nil, nil", b, err)
	}
	want := ca.bundle(42)
	if err := d.saveBundle(want); err != nil {
		t.Fatalf("saveBundle() = %v", err)
	}
	fi, err := os.Stat(d.file(bundleFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("bundle mode = %o, want 600", mode)
	}
	got, err := d.loadBundle(ca.td)
	if err != nil {
		t.Fatalf("loadBundle() = %v", err)
	}
	if !got.Equal(want) {
		t.Errorf("loadBundle() differs from the saved bundle")
	}
	if err := os.WriteFile(d.file(bundleFile), []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.loadBundle(ca.td); err == nil {
		t.Errorf("loadBundle(no authorities) = nil error, want one")
	}
}

func TestReadStateFileLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxStateFile + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := readStateFile(path); err == nil {
		t.Errorf("readStateFile(oversized) = nil error, want one")
	}
}
