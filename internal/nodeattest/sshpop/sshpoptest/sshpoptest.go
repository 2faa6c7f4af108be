// Package sshpoptest makes what sshpop tests need with
// golang.org/x/crypto/ssh: host CAs, host keys and their certificates, and
// the files an agent and a server are configured with.
package sshpoptest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// CA is an SSH certificate authority made for a test.
type CA struct {
	Signer ssh.Signer
}

// NewCA returns an Ed25519 CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	return &CA{Signer: NewSigner(t)}
}

// AuthorizedKey is the CA's public key as one authorized_keys line,
// without its newline.
func (ca *CA) AuthorizedKey() string {
	b := ssh.MarshalAuthorizedKey(ca.Signer.PublicKey())
	return string(b[:len(b)-1])
}

// Host is a host key with its certificate.
type Host struct {
	Key  crypto.Signer
	Cert *ssh.Certificate
}

// Signer returns the host key as an ssh.Signer.
func (h *Host) Signer(t testing.TB) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromSigner(h.Key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Issue certifies a fresh Ed25519 host key as a host certificate with key
// ID keyID for principals, valid from a minute ago for an hour; mods
// change the certificate before signing.
func (ca *CA) Issue(t testing.TB, keyID string, principals []string, mods ...func(*ssh.Certificate)) *Host {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return ca.IssueFor(t, key, keyID, principals, mods...)
}

// IssueFor is Issue for key.
func (ca *CA) IssueFor(t testing.TB, key crypto.Signer, keyID string, principals []string, mods ...func(*ssh.Certificate)) *Host {
	t.Helper()
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Key: pub, Serial: uint64(time.Now().UnixNano()), CertType: ssh.HostCert, KeyId: keyID,
		ValidPrincipals: principals,
		ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
	}
	for _, m := range mods {
		m(cert)
	}
	if err := cert.SignCert(rand.Reader, ca.Signer); err != nil {
		t.Fatal(err)
	}
	return &Host{Key: key, Cert: cert}
}

// WriteFiles writes the host key (OpenSSH format, 0600) and certificate
// (0644) in dir and returns their paths.
func (h *Host) WriteFiles(t testing.TB, dir string) (keyPath, certPath string) {
	t.Helper()
	keyPath, certPath = filepath.Join(dir, "ssh_host_key"), filepath.Join(dir, "ssh_host_key-cert.pub")
	b, err := ssh.MarshalPrivateKey(h.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, ssh.MarshalAuthorizedKey(h.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyPath, certPath
}

// WriteAuthorities writes lines, each followed by a newline, to path.
func WriteAuthorities(t testing.TB, path string, lines ...string) {
	t.Helper()
	var out []byte
	for _, l := range lines {
		out = append(out, l+"\n"...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// NewSigner returns a fresh Ed25519 ssh.Signer.
func NewSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
