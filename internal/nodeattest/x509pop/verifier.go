package x509pop

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest"
)

// maxBundleSize bounds the CA bundle file.
const maxBundleSize = 4 << 20

// Config is the server half's configuration, the value of
// node_attestors.x509pop.
type Config struct {
	// CABundlePath is a PEM file of the root certificates node
	// certificates must chain to. Required.
	CABundlePath string `yaml:"ca_bundle_path"`
}

// Validate reports a missing bundle path.
func (c Config) Validate() error {
	if c.CABundlePath == "" {
		return errors.New("ca_bundle_path: required: a PEM file of the CA certificates node certificates chain to")
	}
	return nil
}

// ReadCABundle reads every CERTIFICATE block of the PEM file at path; a
// file with none is an error.
func ReadCABundle(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read x509pop ca bundle: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read x509pop ca bundle %s: %w", path, err)
	}
	if len(data) > maxBundleSize {
		return nil, fmt.Errorf("read x509pop ca bundle %s: larger than %d bytes", path, maxBundleSize)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("read x509pop ca bundle %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("read x509pop ca bundle %s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// Verifier is the server half of x509pop. Create it with NewVerifier; it
// is safe for concurrent use.
type Verifier struct {
	td    spiffeid.TrustDomain
	roots *x509.CertPool
	now   func() time.Time
	rand  io.Reader
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// VerifierConfig holds what NewVerifier needs besides the roots.
type VerifierConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Roots are the CA certificates node certificates must chain to.
	Roots []*x509.Certificate
	// Now is the clock (nil: time.Now); Rand the source of challenges
	// (nil: crypto/rand).
	Now  func() time.Time
	Rand io.Reader
}

// NewVerifier returns the verifier of node certificates chaining to
// cfg.Roots in trust domain cfg.TrustDomain.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.TrustDomain.IsZero() || len(cfg.Roots) == 0 {
		return nil, errors.New("x509pop verifier: a trust domain and at least one root are required")
	}
	pool := x509.NewCertPool()
	for _, c := range cfg.Roots {
		pool.AddCert(c)
	}
	v := &Verifier{td: cfg.TrustDomain, roots: pool, now: cfg.Now, rand: cfg.Rand}
	if v.now == nil {
		v.now = time.Now
	}
	if v.rand == nil {
		v.rand = rand.Reader
	}
	return v, nil
}

// Name returns "x509pop".
func (v *Verifier) Name() string { return Name }

// refuse is a refusal: the agent is told "node attestation failed", the
// server's log gets the reason.
func refuse(format string, args ...any) error {
	return errkind.New(errkind.PermissionDenied, "x509pop: "+format, args...)
}

// Attest verifies the chain in payload, then challenges the agent to sign
// a fresh nonce with the leaf's key (see the package doc).
func (v *Verifier) Attest(ctx context.Context, payload []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, fmt.Errorf("x509pop attest: %w", err)
	}
	certs, err := ParsePayload(payload)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "x509pop: %v", err)
	}
	leaf := certs[0]
	chains, err := v.verifyChain(leaf, certs[1:])
	if err != nil {
		return nodeattest.Result{}, err
	}
	nonce := make([]byte, ChallengeSize)
	if _, err := io.ReadFull(v.rand, nonce); err != nil {
		return nodeattest.Result{}, fmt.Errorf("x509pop attest: make challenge: %w", err)
	}
	answer, err := c.Challenge(ctx, nonce)
	if err != nil {
		if k := errkind.Of(err); k == errkind.PermissionDenied || k == errkind.InvalidArgument {
			return nodeattest.Result{}, err
		}
		return nodeattest.Result{}, fmt.Errorf("x509pop attest: challenge: %w", err)
	}
	if err := CheckSignature(leaf, nonce, answer); err != nil {
		return nodeattest.Result{}, refuse("certificate %s (serial %s): %v", Fingerprint(leaf), leaf.SerialNumber.Text(16), err)
	}
	id, err := AgentID(v.td, leaf)
	if err != nil {
		return nodeattest.Result{}, fmt.Errorf("x509pop attest: %w", err)
	}
	return nodeattest.Result{AgentID: id, Selectors: Selectors(leaf, chains), CanReattest: true}, nil
}

// verifyChain checks leaf against the roots, through intermediates.
func (v *Verifier) verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate) ([][]*x509.Certificate, error) {
	name := fmt.Sprintf("certificate %s (serial %s, subject %q)", Fingerprint(leaf), leaf.SerialNumber.Text(16), leaf.Subject.String())
	now := v.now()
	switch {
	case now.Before(leaf.NotBefore):
		return nil, refuse("%s is not valid before %s", name, leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, refuse("%s expired at %s", name, leaf.NotAfter.UTC().Format(time.RFC3339))
	case leaf.IsCA:
		return nil, refuse("%s is a CA certificate, not a node's", name)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return nil, refuse("%s lacks the digitalSignature key usage", name)
	}
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: v.roots, Intermediates: pool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, refuse("%s does not verify against ca_bundle_path: %v", name, err)
	}
	return chains, nil
}

// CheckSignature checks that sig is leaf's key's signature of
// Message(challenge): ECDSA (ASN.1) or RSA-PSS over SHA-256, or Ed25519.
func CheckSignature(leaf *x509.Certificate, challenge, sig []byte) error {
	alg, err := signatureAlgorithm(leaf.PublicKey)
	if err != nil {
		return err
	}
	if err := leaf.CheckSignature(alg, Message(challenge), sig); err != nil {
		return errors.New("challenge signature does not verify with the certificate's key")
	}
	return nil
}

// signatureAlgorithm is the scheme challenges are signed with, by key type.
func signatureAlgorithm(pub any) (x509.SignatureAlgorithm, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return x509.ECDSAWithSHA256, nil
	case *rsa.PublicKey:
		return x509.SHA256WithRSAPSS, nil
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	default:
		return 0, fmt.Errorf("unsupported certificate key type %T: use ECDSA, RSA or Ed25519", pub)
	}
}
