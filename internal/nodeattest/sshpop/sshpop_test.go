package sshpop_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/sshpop"
	"github.com/signet-id/signet/internal/nodeattest/sshpop/sshpoptest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func verifier(t *testing.T, lines ...string) *sshpop.Verifier {
	t.Helper()
	cas, err := sshpop.ParseAuthorities([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	v, err := sshpop.NewVerifier(sshpop.VerifierConfig{TrustDomain: td, Authorities: cas})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func attestor(t *testing.T, h *sshpoptest.Host) *sshpop.Attestor {
	t.Helper()
	keyPath, certPath := h.WriteFiles(t, t.TempDir())
	a, err := sshpop.NewAttestor(sshpop.AgentConfig{HostKeyPath: keyPath, HostCertPath: certPath})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type responder struct{ r nodeattest.Responder }

func (r responder) Challenge(ctx context.Context, c []byte) ([]byte, error) {
	return r.r.Respond(ctx, c)
}

type challengerFunc func([]byte) ([]byte, error)

func (f challengerFunc) Challenge(_ context.Context, c []byte) ([]byte, error) { return f(c) }

// attestCert runs an attestation of cert, answering with signer.
func attestCert(t *testing.T, v *sshpop.Verifier, cert *ssh.Certificate, signer ssh.Signer) (nodeattest.Result, error) {
	t.Helper()
	return v.Attest(t.Context(), cert.Marshal(), challengerFunc(func(c []byte) ([]byte, error) { return sshpop.Sign(signer, c) }))
}

func TestAttestIDAndSelectors(t *testing.T) {
	ca := sshpoptest.NewCA(t)
	v := verifier(t, "@cert-authority * "+ca.AuthorizedKey())
	h := ca.Issue(t, "host-1", []string{"host-1.example.org", "10.0.0.1"})
	a := attestor(t, h)
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Attest(t.Context(), p, responder{a})
	if err != nil {
		t.Fatalf("Attest() error = %v", err)
	}
	sum := sha256.Sum256(h.Cert.Key.Marshal())
	if want := "spiffe://example.org/signet/agent/sshpop/" + hex.EncodeToString(sum[:]); res.AgentID.String() != want {
		t.Errorf("AgentID = %s, want %s", res.AgentID, want)
	}
	if !res.CanReattest {
		t.Errorf("CanReattest = false, want true")
	}
	want := model.SortSelectors([]model.Selector{
		{Type: "sshpop", Value: "principal:host-1.example.org"},
		{Type: "sshpop", Value: "principal:10.0.0.1"},
		{Type: "sshpop", Value: "key_id:host-1"},
	})
	if diff := cmp.Diff(want, res.Selectors); diff != "" {
		t.Errorf("Selectors mismatch (-want +got):\n%s", diff)
	}
}

func TestAttestRSAHostKey(t *testing.T) {
	ca := sshpoptest.NewCA(t)
	v := verifier(t, ca.AuthorizedKey())
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h := ca.IssueFor(t, key, "rsa-host", []string{"rsa.example.org"})
	a := attestor(t, h)
	p, _ := a.Payload(t.Context())
	if _, err := v.Attest(t.Context(), p, responder{a}); err != nil {
		t.Fatalf("Attest(RSA host key) error = %v", err)
	}
	// A SHA-1 signature of the right challenge is still refused.
	s := h.Signer(t)
	_, err = v.Attest(t.Context(), p, challengerFunc(func(c []byte) ([]byte, error) {
		sig, err := s.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, sshpop.Message(c), ssh.KeyAlgoRSA)
		return sshpop.MarshalResponse(sig), err
	}))
	if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "SHA-1") {
		t.Errorf("Attest(ssh-rsa signature) error = %v, want PermissionDenied naming SHA-1", err)
	}
}

func TestAttestRefusals(t *testing.T) {
	ca := sshpoptest.NewCA(t)
	other := sshpoptest.NewCA(t)
	v := verifier(t, "@cert-authority *.example.org,!bastion.example.org "+ca.AuthorizedKey())
	revokedHost := ca.Issue(t, "revoked", []string{"r.example.org"})
	vRevoked := verifier(t, ca.AuthorizedKey(), "@revoked * "+string(ssh.MarshalAuthorizedKey(revokedHost.Cert.Key)))
	for _, tc := range []struct {
		name string
		v    *sshpop.Verifier
		host *sshpoptest.Host
		want string
	}{
		{"expired", v, ca.Issue(t, "h", []string{"h.example.org"}, func(c *ssh.Certificate) {
			c.ValidAfter, c.ValidBefore = uint64(time.Now().Add(-2*time.Hour).Unix()), uint64(time.Now().Add(-time.Hour).Unix())
		}), "expired"},
		{"not yet valid", v, ca.Issue(t, "h", []string{"h.example.org"}, func(c *ssh.Certificate) {
			c.ValidAfter = uint64(time.Now().Add(time.Hour).Unix())
		}), "not yet valid"},
		{"unknown ca", v, other.Issue(t, "h", []string{"h.example.org"}), "not in cert_authorities_path"},
		{"user certificate", v, ca.Issue(t, "h", []string{"h.example.org"}, func(c *ssh.Certificate) { c.CertType = ssh.UserCert }),
			"is a user certificate"},
		{"no principals", v, ca.Issue(t, "h", nil), "names no principals"},
		{"principal outside the ca's patterns", v, ca.Issue(t, "h", []string{"h.example.org", "db.elsewhere.net"}),
			`principal "db.elsewhere.net" is outside the host patterns`},
		{"negated pattern", v, ca.Issue(t, "h", []string{"bastion.example.org"}), "outside the host patterns"},
		{"unsupported critical option", v, ca.Issue(t, "h", []string{"h.example.org"}, func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"force-command": "/bin/true"}
		}), "unsupported critical option"},
		{"revoked host key", vRevoked, revokedHost, "@revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attestCert(t, tc.v, tc.host.Cert, tc.host.Signer(t))
			if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Attest(%s) error = %v, want PermissionDenied containing %q", tc.name, err, tc.want)
			}
		})
	}
	t.Run("wrong signature", func(t *testing.T) {
		h := ca.Issue(t, "h", []string{"h.example.org"})
		_, err := attestCert(t, v, h.Cert, sshpoptest.NewSigner(t))
		if !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "does not verify with the host key") {
			t.Errorf("Attest(signed by another key) error = %v, want PermissionDenied", err)
		}
	})
	t.Run("tampered certificate", func(t *testing.T) {
		h := ca.Issue(t, "h", []string{"h.example.org"})
		forged := *h.Cert
		forged.ValidPrincipals = []string{"admin.example.org"}
		_, err := attestCert(t, v, &forged, h.Signer(t))
		if !errkind.Is(err, errkind.PermissionDenied) {
			t.Errorf("Attest(principals changed after signing) error = %v, want PermissionDenied", err)
		}
	})
	t.Run("bare key", func(t *testing.T) {
		_, err := v.Attest(t.Context(), sshpoptest.NewSigner(t).PublicKey().Marshal(), nil)
		if !errkind.Is(err, errkind.InvalidArgument) {
			t.Errorf("Attest(bare public key) error = %v, want InvalidArgument", err)
		}
	})
	t.Run("garbage answer", func(t *testing.T) {
		h := ca.Issue(t, "h", []string{"h.example.org"})
		_, err := v.Attest(t.Context(), h.Cert.Marshal(), challengerFunc(func([]byte) ([]byte, error) { return []byte("nope"), nil }))
		if !errkind.Is(err, errkind.PermissionDenied) {
			t.Errorf("Attest(garbage answer) error = %v, want PermissionDenied", err)
		}
	})
}

func TestParseAuthorities(t *testing.T) {
	ca := sshpoptest.NewCA(t).AuthorizedKey()
	host := sshpoptest.NewCA(t).Issue(t, "h", []string{"h"})
	certLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(host.Cert)))
	for _, tc := range []struct {
		name, src string
		n         int
		want      string
	}{
		{"known_hosts marker", "@cert-authority *.example.org " + ca + " ca@example\n", 1, ""},
		{"authorized_keys option", "cert-authority " + ca + "\n", 1, ""},
		{"bare key, comments and blanks", "# host CA\n\n" + ca + "\n", 1, ""},
		{"several", ca + "\n@cert-authority * " + ca + "\n", 2, ""},
		{"empty", "# nothing\n", 0, "no host CA key"},
		{"known host without marker", "host1.example.org " + ca + "\n", 0, "line 1: a known_hosts host key, not a CA"},
		{"unknown marker", "@trusted * " + ca + "\n", 0, "line 1: unknown marker @trusted"},
		{"unsupported option", `principals="a" ` + ca + "\n", 0, `option "principals=\"a\"" is not supported`},
		{"certificate", "\n" + certLine + "\n", 0, "line 2: a certificate"},
		{"garbage", "ssh-ed25519 !!!\n", 0, "line 1: not a public key line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := sshpop.ParseAuthorities([]byte(tc.src))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ParseAuthorities() error = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil || a.Len() != tc.n {
				t.Fatalf("ParseAuthorities() = %v CAs, %v; want %d", a, err, tc.n)
			}
		})
	}
}

func TestAttestorConfig(t *testing.T) {
	ca := sshpoptest.NewCA(t)
	h := ca.Issue(t, "h", []string{"h.example.org"})
	dir := t.TempDir()
	keyPath, certPath := h.WriteFiles(t, dir)
	otherKey, _ := ca.Issue(t, "o", []string{"o"}).WriteFiles(t, t.TempDir())
	loose := filepath.Join(dir, "loose_key")
	data, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, data, 0o644); err != nil {
		t.Fatal(err)
	}
	userCert := filepath.Join(dir, "user-cert.pub")
	u := ca.IssueFor(t, h.Key, "u", []string{"alice"}, func(c *ssh.Certificate) { c.CertType = ssh.UserCert })
	if err := os.WriteFile(userCert, ssh.MarshalAuthorizedKey(u.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare.pub")
	if err := os.WriteFile(bare, ssh.MarshalAuthorizedKey(h.Cert.Key), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  sshpop.AgentConfig
		want []string
	}{
		{"empty", sshpop.AgentConfig{}, []string{"host_key_path: required", "host_cert_path: required"}},
		{"missing key", sshpop.AgentConfig{HostKeyPath: filepath.Join(dir, "nope"), HostCertPath: certPath}, []string{"host_key_path:", "nope"}},
		{"missing cert", sshpop.AgentConfig{HostKeyPath: keyPath, HostCertPath: filepath.Join(dir, "nope.pub")}, []string{"host_cert_path:", "nope.pub"}},
		{"loose key", sshpop.AgentConfig{HostKeyPath: loose, HostCertPath: certPath}, []string{"host_key_path:", loose, "mode 0644", "chmod 600 " + loose}},
		{"cert of another key", sshpop.AgentConfig{HostKeyPath: otherKey, HostCertPath: certPath}, []string{"for another key"}},
		{"user certificate", sshpop.AgentConfig{HostKeyPath: keyPath, HostCertPath: userCert}, []string{"is a user certificate"}},
		{"bare public key", sshpop.AgentConfig{HostKeyPath: keyPath, HostCertPath: bare}, []string{"not a certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sshpop.NewAttestor(tc.cfg)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("NewAttestor(%s) error = %v, want it to contain %q", tc.name, err, w)
				}
			}
		})
	}
	t.Run("wrong-size challenges are not signed", func(t *testing.T) {
		if _, err := attestor(t, h).Respond(t.Context(), []byte("x")); err == nil {
			t.Errorf("Respond(1 byte) error = nil")
		}
	})
}
