package x509pop_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the fingerprint under test
	"crypto/x509"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/nodeattest/x509pop/x509poptest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// pki is a root, an intermediate and a verifier trusting the root.
type pki struct {
	root, mid *x509poptest.CA
	v         *x509pop.Verifier
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	root := x509poptest.NewCA(t, "root")
	v, err := x509pop.NewVerifier(x509pop.VerifierConfig{TrustDomain: td, Roots: []*x509.Certificate{root.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	return &pki{root: root, mid: root.Intermediate(t, "intermediate"), v: v}
}

// attestor writes leaf's files and returns the agent half using them.
func attestor(t *testing.T, leaf *x509poptest.Leaf) *x509pop.Attestor {
	t.Helper()
	certPath, keyPath := leaf.WriteFiles(t, t.TempDir())
	a, err := x509pop.NewAttestor(x509pop.AgentConfig{CertificatePath: certPath, PrivateKeyPath: keyPath})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// responder answers challenges with an attestor.
type responder struct{ r nodeattest.Responder }

func (r responder) Challenge(ctx context.Context, c []byte) ([]byte, error) {
	return r.r.Respond(ctx, c)
}

// signer answers challenges with an arbitrary key.
type signer struct{ key crypto.Signer }

func (s signer) Challenge(_ context.Context, c []byte) ([]byte, error) { return x509pop.Sign(s.key, c) }

func attest(t *testing.T, v *x509pop.Verifier, a *x509pop.Attestor) (nodeattest.Result, error) {
	t.Helper()
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v.Attest(t.Context(), p, responder{a})
}

func TestAttestIDAndSelectors(t *testing.T) {
	p := newPKI(t)
	leaf := p.mid.Issue(t, "node-1", func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "urn", Opaque: "node:1"}}
	})
	res, err := attest(t, p.v, attestor(t, leaf))
	if err != nil {
		t.Fatalf("Attest() error = %v", err)
	}
	sum := sha1.Sum(leaf.Cert().Raw) //nolint:gosec
	wantID := "spiffe://example.org/signet/agent/x509pop/" + hex.EncodeToString(sum[:])
	if res.AgentID.String() != wantID {
		t.Errorf("AgentID = %s, want %s", res.AgentID, wantID)
	}
	if !res.CanReattest {
		t.Errorf("CanReattest = false, want true")
	}
	fp := func(c *x509.Certificate) string { s := sha1.Sum(c.Raw); return hex.EncodeToString(s[:]) } //nolint:gosec
	want := model.SortSelectors([]model.Selector{
		{Type: "x509pop", Value: "subject:cn:node-1"},
		{Type: "x509pop", Value: "ca:fingerprint:" + fp(p.mid.Cert)},
		{Type: "x509pop", Value: "ca:fingerprint:" + fp(p.root.Cert)},
		{Type: "x509pop", Value: "san:dns:node-1.nodes.example.org"},
		{Type: "x509pop", Value: "san:uri:urn:node:1"},
		{Type: "x509pop", Value: "serialnumber:" + leaf.Cert().SerialNumber.Text(16)},
	})
	if diff := cmp.Diff(want, res.Selectors); diff != "" {
		t.Errorf("Selectors mismatch (-want +got):\n%s", diff)
	}
}

func TestAttestKeyTypes(t *testing.T) {
	p := newPKI(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"rsa-2048": rsaKey, "ed25519": edKey, "ecdsa-p384": p384} {
		t.Run(name, func(t *testing.T) {
			if _, err := attest(t, p.v, attestor(t, p.mid.IssueFor(t, key, "node-"+name))); err != nil {
				t.Errorf("Attest(%s key) error = %v", name, err)
			}
		})
	}
}

func TestAttestRefusals(t *testing.T) {
	p := newPKI(t)
	other := x509poptest.NewCA(t, "other root")
	for _, tc := range []struct {
		name string
		leaf *x509poptest.Leaf
		want string
	}{
		{"expired", p.mid.Issue(t, "n", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		}), "expired at"},
		{"not yet valid", p.mid.Issue(t, "n", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
		}), "is not valid before"},
		{"other ca", other.Issue(t, "n"), "does not verify against ca_bundle_path"},
		{"other ca's intermediate", other.Intermediate(t, "other mid").Issue(t, "n"), "does not verify against ca_bundle_path"},
		{"no digitalSignature", p.mid.Issue(t, "n", func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyEncipherment
		}), "lacks the digitalSignature key usage"},
		{"server auth only", p.mid.Issue(t, "n", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}), "does not verify against ca_bundle_path"},
		{"ca certificate", p.mid.Issue(t, "n", func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid = true, true
			c.KeyUsage |= x509.KeyUsageCertSign
		}), "is a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attest(t, p.v, attestor(t, tc.leaf))
			if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attest(%s) error = %v, want PermissionDenied containing %q", tc.name, err, tc.want)
			}
		})
	}
	t.Run("any extended key usage is accepted", func(t *testing.T) {
		leaf := p.mid.Issue(t, "n", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} })
		if _, err := attest(t, p.v, attestor(t, leaf)); err != nil {
			t.Errorf("Attest(ExtKeyUsageAny) error = %v", err)
		}
	})
	t.Run("wrong signature", func(t *testing.T) {
		leaf := p.mid.Issue(t, "n")
		_, err := p.v.Attest(t.Context(), x509pop.MarshalPayload(leaf.Chain), signer{x509poptest.NewKey(t)})
		if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "signature does not verify") {
			t.Errorf("Attest(signed by another key) error = %v, want PermissionDenied", err)
		}
	})
	t.Run("signature over another challenge", func(t *testing.T) {
		leaf := p.mid.Issue(t, "n")
		stale := bytes.Repeat([]byte{7}, x509pop.ChallengeSize)
		_, err := p.v.Attest(t.Context(), x509pop.MarshalPayload(leaf.Chain), challengerFunc(func([]byte) ([]byte, error) {
			return x509pop.Sign(leaf.Key, stale)
		}))
		if !errkind.Is(err, errkind.PermissionDenied) {
			t.Errorf("Attest(signature of a stale challenge) error = %v, want PermissionDenied", err)
		}
	})
	t.Run("missing intermediate", func(t *testing.T) {
		leaf := p.mid.Issue(t, "n")
		_, err := p.v.Attest(t.Context(), x509pop.MarshalPayload(leaf.Chain[:1]), signer{leaf.Key})
		if !errkind.Is(err, errkind.PermissionDenied) {
			t.Errorf("Attest(leaf without its intermediate) error = %v, want PermissionDenied", err)
		}
	})
	t.Run("too long a chain", func(t *testing.T) {
		leaf := p.mid.Issue(t, "n")
		var chain []*x509.Certificate
		for range x509pop.MaxChain + 1 {
			chain = append(chain, leaf.Cert())
		}
		_, err := p.v.Attest(t.Context(), x509pop.MarshalPayload(chain), signer{leaf.Key})
		if !errkind.Is(err, errkind.InvalidArgument) {
			t.Errorf("Attest(%d certificates) error = %v, want InvalidArgument", len(chain), err)
		}
	})
	t.Run("challenge is fresh each time", func(t *testing.T) {
		leaf := p.mid.Issue(t, "n")
		var seen [][]byte
		for range 2 {
			_, err := p.v.Attest(t.Context(), x509pop.MarshalPayload(leaf.Chain), challengerFunc(func(c []byte) ([]byte, error) {
				seen = append(seen, bytes.Clone(c))
				return x509pop.Sign(leaf.Key, c)
			}))
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(seen[0]) != x509pop.ChallengeSize || bytes.Equal(seen[0], seen[1]) {
			t.Errorf("challenges %x and %x: want two distinct %d-byte nonces", seen[0], seen[1], x509pop.ChallengeSize)
		}
	})
}

type challengerFunc func([]byte) ([]byte, error)

func (f challengerFunc) Challenge(_ context.Context, c []byte) ([]byte, error) { return f(c) }

func TestAttestorConfig(t *testing.T) {
	p := newPKI(t)
	leaf := p.mid.Issue(t, "node")
	dir := t.TempDir()
	certPath, keyPath := leaf.WriteFiles(t, dir)
	otherCert, _ := p.mid.Issue(t, "other").WriteFiles(t, t.TempDir())
	loose := filepath.Join(dir, "loose.key")
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, data, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  x509pop.AgentConfig
		want []string
	}{
		{"empty", x509pop.AgentConfig{}, []string{"certificate_path: required", "private_key_path: required"}},
		{"missing certificate", x509pop.AgentConfig{CertificatePath: filepath.Join(dir, "nope.pem"), PrivateKeyPath: keyPath},
			[]string{"certificate_path:", "nope.pem"}},
		{"missing key", x509pop.AgentConfig{CertificatePath: certPath, PrivateKeyPath: filepath.Join(dir, "nope.key")},
			[]string{"private_key_path:", "nope.key"}},
		{"loose key", x509pop.AgentConfig{CertificatePath: certPath, PrivateKeyPath: loose},
			[]string{"private_key_path:", loose, "mode 0640", "chmod 600 " + loose}},
		{"key of another certificate", x509pop.AgentConfig{CertificatePath: otherCert, PrivateKeyPath: keyPath},
			[]string{"does not belong to the certificate"}},
		{"key file as certificate", x509pop.AgentConfig{CertificatePath: keyPath, PrivateKeyPath: keyPath},
			[]string{"certificate_path:", "no PEM CERTIFICATE block"}},
		{"certificate as key", x509pop.AgentConfig{CertificatePath: certPath, PrivateKeyPath: certPath},
			[]string{"private_key_path:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := x509pop.NewAttestor(tc.cfg)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("NewAttestor(%s) error = %v, want it to contain %q", tc.name, err, w)
				}
			}
		})
	}
	t.Run("files vanishing later are reported by Payload", func(t *testing.T) {
		d := t.TempDir()
		c, k := leaf.WriteFiles(t, d)
		a, err := x509pop.NewAttestor(x509pop.AgentConfig{CertificatePath: c, PrivateKeyPath: k})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(c); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Payload(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate_path:") {
			t.Errorf("Payload(removed certificate) error = %v, want one naming certificate_path", err)
		}
	})
	t.Run("a renewed certificate is picked up", func(t *testing.T) {
		d := t.TempDir()
		c, k := leaf.WriteFiles(t, d)
		a, err := x509pop.NewAttestor(x509pop.AgentConfig{CertificatePath: c, PrivateKeyPath: k})
		if err != nil {
			t.Fatal(err)
		}
		renewed := p.mid.Issue(t, "node")
		renewed.WriteFiles(t, d)
		res, err := attest(t, p.v, a)
		if err != nil || res.AgentID.String() != "spiffe://example.org/signet/agent/x509pop/"+x509pop.Fingerprint(renewed.Cert()) {
			t.Errorf("Attest(renewed) = %v, %v; want the renewed certificate's id", res.AgentID, err)
		}
	})
	t.Run("challenges of the wrong size are not signed", func(t *testing.T) {
		a := attestor(t, leaf)
		if _, err := a.Respond(t.Context(), []byte("sign me")); err == nil {
			t.Errorf("Respond(7 bytes) error = nil, want a refusal to sign")
		}
	})
}

func TestNewVerifier(t *testing.T) {
	if _, err := x509pop.NewVerifier(x509pop.VerifierConfig{TrustDomain: td}); err == nil {
		t.Errorf("NewVerifier(no roots) error = nil")
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		empty:                          "no PEM CERTIFICATE block",
		filepath.Join(dir, "none.pem"): "none.pem",
	} {
		if _, err := x509pop.ReadCABundle(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadCABundle(%s) error = %v, want %q", path, err, want)
		}
	}
	if err := (x509pop.Config{}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "ca_bundle_path: required") {
		t.Errorf("Config{}.Validate() = %v, want ca_bundle_path: required", err)
	}
}
