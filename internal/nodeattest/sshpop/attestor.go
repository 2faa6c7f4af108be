package sshpop

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/nodeattest"
)

// AgentConfig is the agent half's configuration, the value of
// node_attestor.sshpop in the agent's file.
type AgentConfig struct {
	// HostKeyPath is the host's private key, such as
	// /etc/ssh/ssh_host_ed25519_key (OpenSSH or PEM format, unencrypted,
	// readable by its owner only). Required.
	HostKeyPath string `yaml:"host_key_path"`
	// HostCertPath is the host certificate of that key, such as
	// /etc/ssh/ssh_host_ed25519_key-cert.pub. Required.
	HostCertPath string `yaml:"host_cert_path"`
}

// Validate reports every missing path.
func (c AgentConfig) Validate() error {
	var errs []error
	if c.HostKeyPath == "" {
		errs = append(errs, errors.New("host_key_path: required: the host's private key, e.g. /etc/ssh/ssh_host_ed25519_key"))
	}
	if c.HostCertPath == "" {
		errs = append(errs, errors.New("host_cert_path: required: the host key's certificate, e.g. /etc/ssh/ssh_host_ed25519_key-cert.pub"))
	}
	return errors.Join(errs...)
}

// Attestor is the agent side of sshpop. Create it with NewAttestor; it is
// safe for concurrent use. It re-reads its files on every Payload, so a
// host certificate renewed on disk is used at the next attestation, and it
// answers challenges with the key read last.
type Attestor struct {
	cfg AgentConfig
	cur atomic.Pointer[hostCredential]
}

type hostCredential struct {
	cert   *ssh.Certificate
	signer ssh.Signer
}

var (
	_ nodeattest.Attestor  = (*Attestor)(nil)
	_ nodeattest.Responder = (*Attestor)(nil)
	_ slog.LogValuer       = (*Attestor)(nil)
	_ fmt.Stringer         = (*Attestor)(nil)
	_ fmt.GoStringer       = (*Attestor)(nil)
)

// NewAttestor reads the host key and certificate cfg names and checks
// that they belong together. Errors name the configuration key and path.
func NewAttestor(cfg AgentConfig) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := loadHost(cfg)
	if err != nil {
		return nil, err
	}
	a := &Attestor{cfg: cfg}
	a.cur.Store(c)
	return a, nil
}

// Name returns "sshpop".
func (a *Attestor) Name() string { return Name }

// Payload re-reads the host key and certificate and returns the
// certificate in SSH wire format.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sshpop payload: %w", err)
	}
	c, err := loadHost(a.cfg)
	if err != nil {
		return nil, err
	}
	a.cur.Store(c)
	return c.cert.Marshal(), nil
}

// Respond signs Message(challenge) with the host key.
func (a *Attestor) Respond(ctx context.Context, challenge []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sshpop respond: %w", err)
	}
	if len(challenge) != ChallengeSize {
		return nil, fmt.Errorf("sshpop respond: the challenge is %d bytes, want %d", len(challenge), ChallengeSize)
	}
	return Sign(a.cur.Load().signer, challenge)
}

// String describes the attestor by its files.
func (a *Attestor) String() string {
	return fmt.Sprintf("sshpop(host_key_path=%s, host_cert_path=%s)", a.cfg.HostKeyPath, a.cfg.HostCertPath)
}

// GoString is String, for %#v: the key never shows.
func (a *Attestor) GoString() string { return a.String() }

// LogValue is String, for log/slog.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }

// Sign signs Message(challenge) with signer and returns the signature in
// the form ParseResponse reads. RSA keys sign with rsa-sha2-512.
func Sign(signer ssh.Signer, challenge []byte) ([]byte, error) {
	var (
		sig *ssh.Signature
		err error
	)
	if as, ok := signer.(ssh.AlgorithmSigner); ok && signer.PublicKey().Type() == ssh.KeyAlgoRSA {
		sig, err = as.SignWithAlgorithm(rand.Reader, Message(challenge), ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, Message(challenge))
	}
	if err != nil {
		return nil, fmt.Errorf("sshpop sign: %w", err)
	}
	return MarshalResponse(sig), nil
}

// loadHost reads and matches the host key and certificate of cfg.
func loadHost(cfg AgentConfig) (*hostCredential, error) {
	signer, err := readHostKey(cfg.HostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("host_key_path: %w", err)
	}
	cert, err := readHostCert(cfg.HostCertPath)
	if err != nil {
		return nil, fmt.Errorf("host_cert_path: %w", err)
	}
	if !bytes.Equal(cert.Key.Marshal(), signer.PublicKey().Marshal()) {
		return nil, fmt.Errorf("host_cert_path: the certificate in %s is for another key than %s", cfg.HostCertPath, cfg.HostKeyPath)
	}
	return &hostCredential{cert: cert, signer: signer}, nil
}

// readHostCert reads an OpenSSH host certificate (a -cert.pub file).
func readHostCert(path string) (*ssh.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OpenSSH certificate: %v", path, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s holds a bare %s public key, not a certificate: sign it with ssh-keygen -s CA -h", path, pub.Type())
	}
	if cert.CertType != ssh.HostCert {
		return nil, fmt.Errorf("%s is a user certificate: sshpop needs a host certificate (ssh-keygen -s CA -h)", path)
	}
	return cert, nil
}

// readHostKey reads an unencrypted private key that only its owner may
// read.
func readHostKey(path string) (ssh.Signer, error) {
	data, err := keyfile.ReadPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	defer clear(data)
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, fmt.Errorf("%s is encrypted: sshpop needs the unencrypted host key", path)
	case err != nil:
		return nil, fmt.Errorf("%s: parse private key: %v", path, err)
	}
	return signer, nil
}

// readFile reads a bounded file.
func readFile(path string) ([]byte, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("read host certificate: %w", err)
	}
	return data, nil
}
