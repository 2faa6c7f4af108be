// Package x509poptest makes the PKI x509pop tests need: CAs, intermediates
// and node certificates generated at test time, and the files an agent and
// a server are configured with.
package x509poptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for a test.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// chain is the CA's own chain up to, and without, the root (empty for
	// a root).
	chain []*x509.Certificate
}

// NewCA returns a self-signed root CA named name, valid from a minute ago
// for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	return &CA{Cert: create(t, tmpl, tmpl, key.Public(), key), Key: key}
}

// Intermediate returns a CA named name signed by ca.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	c := create(t, tmpl, ca.Cert, key.Public(), ca.Key)
	return &CA{Cert: c, Key: key, chain: append([]*x509.Certificate{c}, ca.chain...)}
}

// Leaf is a node certificate with its chain (leaf first, without the root)
// and key.
type Leaf struct {
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// Cert returns the leaf certificate.
func (l *Leaf) Cert() *x509.Certificate { return l.Chain[0] }

// Issue returns a node certificate for a fresh P-256 key with common name
// cn, the digitalSignature key usage and the clientAuth extended key
// usage, valid from a minute ago for an hour; mods change the template
// before signing.
func (ca *CA) Issue(t testing.TB, cn string, mods ...func(*x509.Certificate)) *Leaf {
	t.Helper()
	return ca.IssueFor(t, NewKey(t), cn, mods...)
}

// IssueFor is Issue for key.
func (ca *CA) IssueFor(t testing.TB, key crypto.Signer, cn string, mods ...func(*x509.Certificate)) *Leaf {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn + ".nodes.example.org"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, m := range mods {
		m(tmpl)
	}
	c := create(t, tmpl, ca.Cert, key.Public(), ca.Key)
	return &Leaf{Chain: append([]*x509.Certificate{c}, ca.chain...), Key: key}
}

// WriteFiles writes the leaf's chain (PEM, 0644) and key (PKCS #8 PEM,
// 0600) in dir and returns their paths.
func (l *Leaf) WriteFiles(t testing.TB, dir string) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = filepath.Join(dir, "node.pem"), filepath.Join(dir, "node.key")
	WritePEM(t, certPath, l.Chain...)
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// WritePEM writes certs as PEM to path, 0644.
func WritePEM(t testing.TB, path string, certs ...*x509.Certificate) {
	t.Helper()
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// NewKey returns a fresh P-256 key.
func NewKey(t testing.TB) crypto.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func create(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
