package tpm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest"
)

// EKAllowList is the dynamic allow list of EKs the server half consults
// for TPMs without a certificate chaining to a configured root (the server's
// store, once it keeps one). ekHash is as EKHash returns it.
type EKAllowList interface {
	EKAllowed(ctx context.Context, ekHash string) (bool, error)
}

// Config is the server half's configuration, the value of
// node_attestors.tpm. A TPM is admitted when its EK certificate chains to a
// root in EKCAPath, or its EK hash is in AllowedEKHashes (or the server's
// dynamic allow list).
type Config struct {
	// EKCAPath is a PEM (or DER) file, or a directory of them, holding the
	// TPM manufacturers' EK roots; certificates in it that are not
	// self-signed are used as intermediates.
	EKCAPath string `yaml:"ek_ca_path"`
	// AllowedEKHashes lists EKs admitted without a certificate, by EKHash.
	AllowedEKHashes []string `yaml:"allowed_ek_hashes"`
}

// Validate reports malformed EK hashes, each by its index.
func (c Config) Validate() error {
	var errs []error
	for i, h := range c.AllowedEKHashes {
		if !isHexSHA256(strings.ToLower(h)) {
			errs = append(errs, fmt.Errorf("allowed_ek_hashes[%d]: %q is not a SHA-256 in hex (64 hex digits, as in the agent ID)", i, h))
		}
	}
	if c.EKCAPath != "" && strings.TrimSpace(c.EKCAPath) != c.EKCAPath {
		errs = append(errs, fmt.Errorf("ek_ca_path: %q has leading or trailing spaces", c.EKCAPath))
	}
	return errors.Join(errs...)
}

// VerifierDeps is what NewVerifier needs besides the configuration.
type VerifierDeps struct {
	TrustDomain spiffeid.TrustDomain
	// AllowList is consulted for EKs that neither a root nor the static
	// list admits; nil: none.
	AllowList EKAllowList
	// Now is the clock EK certificates are checked against; nil: time.Now.
	Now func() time.Time
	// Rand is the source of credential secrets; nil: crypto/rand.
	Rand io.Reader
}

// Verifier is the server half of tpm attestation. It is safe for
// concurrent use. Create it with NewVerifier.
type Verifier struct {
	td      spiffeid.TrustDomain
	roots   *x509.CertPool // nil: no ek_ca_path
	inter   *x509.CertPool
	allowed map[string]bool
	dynamic EKAllowList
	now     func() time.Time
	rand    io.Reader
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// NewVerifier returns the verifier of cfg, loading the EK roots of
// cfg.EKCAPath. A configuration that could admit no TPM at all (no roots,
// no allowed hashes, no dynamic allow list) is an error.
func NewVerifier(cfg Config, d VerifierDeps) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.TrustDomain.IsZero() {
		return nil, errors.New("tpm verifier: a trust domain is required")
	}
	v := &Verifier{td: d.TrustDomain, allowed: map[string]bool{}, dynamic: d.AllowList, now: d.Now, rand: d.Rand}
	if v.now == nil {
		v.now = time.Now
	}
	if v.rand == nil {
		v.rand = rand.Reader
	}
	for _, h := range cfg.AllowedEKHashes {
		v.allowed[strings.ToLower(h)] = true
	}
	if cfg.EKCAPath != "" {
		roots, inter, err := LoadEKRoots(cfg.EKCAPath)
		if err != nil {
			return nil, fmt.Errorf("ek_ca_path: %w", err)
		}
		v.roots, v.inter = roots, inter
	}
	if v.roots == nil && len(v.allowed) == 0 && v.dynamic == nil {
		return nil, errors.New("ek_ca_path, allowed_ek_hashes: give at least one: with neither, no TPM can be admitted")
	}
	return v, nil
}

// Name returns "tpm".
func (v *Verifier) Name() string { return Name }

// deny and malformed build the method's refusals. Their text names what
// failed (the server logs it; the agent only learns "node attestation
// failed"); nothing in a TPM exchange is secret but the credential, which
// no error holds.
func deny(format string, args ...any) error {
	return errkind.New(errkind.PermissionDenied, "tpm: "+format, args...)
}

func malformed(format string, args ...any) error {
	return errkind.New(errkind.InvalidArgument, "tpm: "+format, args...)
}

// Attest checks the EK of payload, then runs one credential challenge
// through c: a fresh secret, bound to the AK's name and sealed to the EK,
// which the agent must return. The node is admitted as the EK's agent ID,
// and may re-attest at any time.
func (v *Verifier) Attest(ctx context.Context, payload []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, err
	}
	p, err := ParsePayload(payload)
	if err != nil {
		return nodeattest.Result{}, malformed("%v", err)
	}
	ek, ekHash, err := checkEK(p.EKPublic)
	if err != nil {
		return nodeattest.Result{}, err
	}
	akName, err := checkAK(p.AKPublic)
	if err != nil {
		return nodeattest.Result{}, err
	}
	manufacturer, err := v.trust(ctx, ek, ekHash, p.EKCert)
	if err != nil {
		return nodeattest.Result{}, err
	}
	id, err := AgentID(v.td, ekHash)
	if err != nil {
		return nodeattest.Result{}, err
	}

	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nodeattest.Result{}, malformed("EK %s cannot seal a credential: %v", ekHash, err)
	}
	secret := make([]byte, secretSize)
	if _, err := io.ReadFull(v.rand, secret); err != nil {
		return nodeattest.Result{}, fmt.Errorf("tpm: draw credential secret: %w", err)
	}
	blob, encSecret, err := tpm2.CreateCredential(v.rand, key, akName, secret)
	if err != nil {
		return nodeattest.Result{}, malformed("make credential for EK %s: %v", ekHash, err)
	}
	challenge, err := Challenge{CredentialBlob: blob, EncryptedSecret: encSecret}.Marshal()
	if err != nil {
		return nodeattest.Result{}, fmt.Errorf("tpm: encode challenge: %w", err)
	}
	answer, err := c.Challenge(ctx, challenge)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nodeattest.Result{}, ctxErr
		}
		if k := errkind.Of(err); k == errkind.PermissionDenied || k == errkind.InvalidArgument {
			return nodeattest.Result{}, err
		}
		return nodeattest.Result{}, deny("EK %s: the agent did not answer the credential challenge: %v", ekHash, err)
	}
	if subtle.ConstantTimeCompare(answer, secret) != 1 {
		return nodeattest.Result{}, deny("EK %s: wrong answer to the credential challenge", ekHash)
	}
	return nodeattest.Result{AgentID: id, Selectors: Selectors(ekHash, manufacturer), CanReattest: true}, nil
}

// minRSABits and maxRSABits bound the size of RSA EKs accepted (the TCG
// EK templates are RSA 2048 and 3072).
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// checkEK parses an EK public area and checks it is a storage-style
// (restricted decryption) key of a usable kind.
func checkEK(b []byte) (*tpm2.TPMTPublic, string, error) {
	ek, err := parsePublic(b)
	if err != nil {
		return nil, "", malformed("EK: %v", err)
	}
	a := ek.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM {
		return nil, "", malformed("EK is not a fixed-TPM restricted decryption key")
	}
	if _, err := ek.NameAlg.Hash(); err != nil {
		return nil, "", malformed("EK name algorithm: %v", err)
	}
	pub, err := tpm2.Pub(*ek)
	if err != nil {
		return nil, "", malformed("EK public key: %v", err)
	}
	if k, ok := pub.(*rsa.PublicKey); ok {
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return nil, "", malformed("EK is RSA %d: want %d to %d bits", n, minRSABits, maxRSABits)
		}
		if k.E != 65537 {
			return nil, "", malformed("EK has RSA exponent %d: want 65537, the EK templates' default", k.E)
		}
	}
	h, err := EKHash(pub)
	if err != nil {
		return nil, "", malformed("EK public key: %v", err)
	}
	return ek, h, nil
}

// checkAK parses an AK public area, checks it is a TPM-resident restricted
// signing key, and returns its name.
func checkAK(b []byte) ([]byte, error) {
	ak, err := parsePublic(b)
	if err != nil {
		return nil, malformed("AK: %v", err)
	}
	a := ak.ObjectAttributes
	if !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return nil, malformed("AK is not a fixed-TPM, TPM-generated restricted signing key")
	}
	if _, err := tpm2.Pub(*ak); err != nil {
		return nil, malformed("AK public key: %v", err)
	}
	// The name is the name algorithm and the digest of the public area's
	// marshalling, which parsePublic checked b is (as tpm2.ObjectName
	// computes it, without marshalling it again).
	h, err := ak.NameAlg.Hash()
	if err != nil {
		return nil, malformed("AK name algorithm: %v", err)
	}
	d := h.New()
	d.Write(b)
	return d.Sum(binary.BigEndian.AppendUint16(make([]byte, 0, 2+h.Size()), uint16(ak.NameAlg))), nil
}

// trust decides whether the EK may attest: its certificate chains to a
// configured root (and then names the manufacturer, returned), or its hash
// is allowed statically or dynamically. A certificate only ever adds
// trust: one that fails leaves the allow lists to decide.
func (v *Verifier) trust(ctx context.Context, ek *tpm2.TPMTPublic, ekHash string, certDER []byte) (string, error) {
	var certErr error
	switch {
	case len(certDER) == 0:
		certErr = errors.New("no EK certificate")
	case v.roots == nil:
		certErr = errors.New("an EK certificate, but no ek_ca_path configured")
	default:
		m, err := v.verifyEKCert(ek, certDER)
		if err == nil {
			return m, nil
		}
		certErr = err
	}
	if v.allowed[ekHash] {
		return "", nil
	}
	if v.dynamic != nil {
		ok, err := v.dynamic.EKAllowed(ctx, ekHash)
		if err != nil {
			return "", fmt.Errorf("tpm: look EK %s up in the allow list: %w", ekHash, err)
		}
		if ok {
			return "", nil
		}
	}
	return "", deny("EK %s is not allowed (%v) and its hash is not in the allow list", ekHash, certErr)
}
