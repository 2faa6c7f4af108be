package x509pop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/nodeattest"
)

// AgentConfig is the agent half's configuration, the value of
// node_attestor.x509pop in the agent's file.
type AgentConfig struct {
	// CertificatePath is a PEM file holding the node's certificate,
	// optionally followed by intermediates (leaf first). Required.
	CertificatePath string `yaml:"certificate_path"`
	// PrivateKeyPath is a PEM file holding the certificate's private key
	// (PKCS #8, SEC 1 or PKCS #1), readable by its owner only. Required.
	PrivateKeyPath string `yaml:"private_key_path"`
}

// Validate reports every missing path.
func (c AgentConfig) Validate() error {
	var errs []error
	if c.CertificatePath == "" {
		errs = append(errs, errors.New("certificate_path: required: the node's PEM certificate (leaf first, then intermediates)"))
	}
	if c.PrivateKeyPath == "" {
		errs = append(errs, errors.New("private_key_path: required: the PEM private key of the node's certificate"))
	}
	return errors.Join(errs...)
}

// Attestor is the agent side of x509pop. Create it with NewAttestor; it
// is safe for concurrent use. It re-reads its files on every Payload, so a
// certificate renewed on disk is used at the next attestation, and it
// answers challenges with the key read last.
type Attestor struct {
	cfg AgentConfig
	cur atomic.Pointer[credential]
}

// credential is a certificate chain and its key, read together.
type credential struct {
	chain []*x509.Certificate
	key   crypto.Signer
}

var (
	_ nodeattest.Attestor  = (*Attestor)(nil)
	_ nodeattest.Responder = (*Attestor)(nil)
	_ slog.LogValuer       = (*Attestor)(nil)
	_ fmt.Stringer         = (*Attestor)(nil)
	_ fmt.GoStringer       = (*Attestor)(nil)
)

// NewAttestor reads the certificate and key cfg names and checks that
// they belong together. Errors name the configuration key and path.
func NewAttestor(cfg AgentConfig) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Attestor{cfg: cfg}
	c, err := loadCredential(cfg)
	if err != nil {
		return nil, err
	}
	a.cur.Store(c)
	return a, nil
}

// Name returns "x509pop".
func (a *Attestor) Name() string { return Name }

// Payload re-reads the certificate and key and returns the chain (see
// ParsePayload). A file that has become unreadable is an error naming it.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("x509pop payload: %w", err)
	}
	c, err := loadCredential(a.cfg)
	if err != nil {
		return nil, err
	}
	a.cur.Store(c)
	return MarshalPayload(c.chain), nil
}

// Respond signs Message(challenge) with the node's key.
func (a *Attestor) Respond(ctx context.Context, challenge []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("x509pop respond: %w", err)
	}
	if len(challenge) != ChallengeSize {
		return nil, fmt.Errorf("x509pop respond: the challenge is %d bytes, want %d", len(challenge), ChallengeSize)
	}
	return Sign(a.cur.Load().key, challenge)
}

// String describes the attestor by its files.
func (a *Attestor) String() string {
	return fmt.Sprintf("x509pop(certificate_path=%s, private_key_path=%s)", a.cfg.CertificatePath, a.cfg.PrivateKeyPath)
}

// GoString is String, for %#v: the key never shows.
func (a *Attestor) GoString() string { return a.String() }

// LogValue is String, for log/slog.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }

// Sign signs Message(challenge) with key as CheckSignature expects:
// ECDSA (ASN.1) and RSA-PSS over SHA-256, Ed25519 over the message.
func Sign(key crypto.Signer, challenge []byte) ([]byte, error) {
	msg := Message(challenge)
	var (
		sig []byte
		err error
	)
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256)
	case *rsa.PublicKey:
		d := sha256.Sum256(msg)
		sig, err = key.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	case ed25519.PublicKey:
		sig, err = key.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		return nil, fmt.Errorf("x509pop sign: unsupported key type %T: use ECDSA, RSA or Ed25519", key.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("x509pop sign: %w", err)
	}
	return sig, nil
}

// loadCredential reads and matches the certificate and key of cfg.
func loadCredential(cfg AgentConfig) (*credential, error) {
	chain, err := readChain(cfg.CertificatePath)
	if err != nil {
		return nil, fmt.Errorf("certificate_path: %w", err)
	}
	key, err := readKey(cfg.PrivateKeyPath)
	if err != nil {
		return nil, fmt.Errorf("private_key_path: %w", err)
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("private_key_path: the key in %s does not belong to the certificate in %s", cfg.PrivateKeyPath, cfg.CertificatePath)
	}
	if _, err := signatureAlgorithm(key.Public()); err != nil {
		return nil, fmt.Errorf("private_key_path %s: %w", cfg.PrivateKeyPath, err)
	}
	return &credential{chain: chain, key: key}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// readChain reads every CERTIFICATE block of a PEM file, leaf first.
func readChain(path string) ([]*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
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
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	switch {
	case len(chain) == 0:
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE block", path)
	case len(chain) > MaxChain:
		return nil, fmt.Errorf("%s holds %d certificates, at most %d (the leaf and its intermediates)", path, len(chain), MaxChain)
	}
	return chain, nil
}

// readKey reads a PEM private key that only its owner may read.
func readKey(path string) (crypto.Signer, error) {
	data, err := keyfile.ReadPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	defer clear(data)
	return keyfile.Signer(path, data)
}

// readFile reads a bounded file.
func readFile(path string) ([]byte, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	return data, nil
}
