package sshpop

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest"
)

// Config is the server half's configuration, the value of
// node_attestors.sshpop.
type Config struct {
	// CertAuthoritiesPath is a file of host CA public keys, one a line
	// (see ParseAuthorities). Required.
	CertAuthoritiesPath string `yaml:"cert_authorities_path"`
}

// Validate reports a missing path.
func (c Config) Validate() error {
	if c.CertAuthoritiesPath == "" {
		return errors.New("cert_authorities_path: required: a file of SSH host CA public keys (authorized_keys or @cert-authority lines)")
	}
	return nil
}

// Verifier is the server half of sshpop. Create it with NewVerifier; it is
// safe for concurrent use.
type Verifier struct {
	td   spiffeid.TrustDomain
	cas  *Authorities
	now  func() time.Time
	rand io.Reader
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// VerifierConfig holds what NewVerifier needs.
type VerifierConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Authorities are the host CAs whose certificates are admitted.
	Authorities *Authorities
	// Now is the clock (nil: time.Now); Rand the source of challenges
	// (nil: crypto/rand).
	Now  func() time.Time
	Rand io.Reader
}

// NewVerifier returns the verifier of host certificates signed by
// cfg.Authorities, in trust domain cfg.TrustDomain.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.TrustDomain.IsZero() || cfg.Authorities == nil || cfg.Authorities.Len() == 0 {
		return nil, errors.New("sshpop verifier: a trust domain and at least one host CA are required")
	}
	v := &Verifier{td: cfg.TrustDomain, cas: cfg.Authorities, now: cfg.Now, rand: cfg.Rand}
	if v.now == nil {
		v.now = time.Now
	}
	if v.rand == nil {
		v.rand = rand.Reader
	}
	return v, nil
}

// Name returns "sshpop".
func (v *Verifier) Name() string { return Name }

// refuse is a refusal: the agent is told "node attestation failed", the
// server's log gets the reason.
func refuse(format string, args ...any) error {
	return errkind.New(errkind.PermissionDenied, "sshpop: "+format, args...)
}

// Attest verifies the host certificate in payload, then challenges the
// agent to sign a fresh nonce with the host key (see the package doc).
func (v *Verifier) Attest(ctx context.Context, payload []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, fmt.Errorf("sshpop attest: %w", err)
	}
	cert, err := ParsePayload(payload)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "sshpop: %v", err)
	}
	if err := v.checkCert(cert); err != nil {
		return nodeattest.Result{}, err
	}
	nonce := make([]byte, ChallengeSize)
	if _, err := io.ReadFull(v.rand, nonce); err != nil {
		return nodeattest.Result{}, fmt.Errorf("sshpop attest: make challenge: %w", err)
	}
	answer, err := c.Challenge(ctx, nonce)
	if err != nil {
		if k := errkind.Of(err); k == errkind.PermissionDenied || k == errkind.InvalidArgument {
			return nodeattest.Result{}, err
		}
		return nodeattest.Result{}, fmt.Errorf("sshpop attest: challenge: %w", err)
	}
	if err := CheckSignature(cert.Key, nonce, answer); err != nil {
		return nodeattest.Result{}, refuse("host certificate %q (serial %d): %v", cert.KeyId, cert.Serial, err)
	}
	id, err := AgentID(v.td, cert.Key)
	if err != nil {
		return nodeattest.Result{}, fmt.Errorf("sshpop attest: %w", err)
	}
	return nodeattest.Result{AgentID: id, Selectors: Selectors(cert), CanReattest: true}, nil
}

// checkCert checks a host certificate: type, CA, principals, revocation,
// validity and signature.
func (v *Verifier) checkCert(cert *ssh.Certificate) error {
	name := fmt.Sprintf("certificate %q (serial %d, host key SHA256 %s)", cert.KeyId, cert.Serial, Fingerprint(cert.Key))
	switch {
	case cert.CertType != ssh.HostCert:
		return refuse("%s is a user certificate, not a host certificate (sign it with ssh-keygen -h)", name)
	case !v.cas.isCA(cert.SignatureKey):
		return refuse("%s is signed by %s, which is not in cert_authorities_path", name, ssh.FingerprintSHA256(cert.SignatureKey))
	case len(cert.ValidPrincipals) == 0:
		return refuse("%s names no principals", name)
	case v.cas.revokedKey(cert.Key) || v.cas.revokedKey(cert.SignatureKey):
		return refuse("%s: its host key or CA is marked @revoked", name)
	}
	for _, p := range cert.ValidPrincipals {
		if !v.cas.trusts(cert.SignatureKey, p) {
			return refuse("%s: principal %q is outside the host patterns of its CA", name, p)
		}
	}
	checker := ssh.CertChecker{Clock: v.now}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		return refuse("%s: %s", name, strings.TrimPrefix(err.Error(), "ssh: "))
	}
	return nil
}

// CheckSignature checks that answer (see ParseResponse) is key's signature
// of Message(challenge). SHA-1 RSA signatures (ssh-rsa) are refused.
func CheckSignature(key ssh.PublicKey, challenge, answer []byte) error {
	sig, err := ParseResponse(answer)
	if err != nil {
		return err
	}
	if sig.Format == ssh.KeyAlgoRSA {
		return errors.New("challenge signed with ssh-rsa (SHA-1): sign with rsa-sha2-256 or rsa-sha2-512")
	}
	if len(sig.Rest) > 0 && !strings.HasPrefix(key.Type(), "sk-") {
		return errors.New("challenge signature has trailing data")
	}
	if err := key.Verify(Message(challenge), sig); err != nil {
		return errors.New("challenge signature does not verify with the host key")
	}
	return nil
}
