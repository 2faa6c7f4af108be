// Package upstreamtest makes throw-away enterprise PKIs for tests of
// upstream authorities: a corporate root, intermediates under it, and the
// PEM files an operator would point upstream_authority.disk at.
//
// It does not import package ca, so ca's own tests can use it.
package upstreamtest

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

// CA is a certificate authority of a test PKI.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Template adjusts a certificate before it is signed, for tests of bad
// upstream material (expired, not a CA, no keyCertSign, ...).
type Template func(*x509.Certificate)

// Validity sets a certificate's validity period, for tests on a fake clock.
func Validity(notBefore, notAfter time.Time) Template {
	return func(c *x509.Certificate) { c.NotBefore, c.NotAfter = notBefore, notAfter }
}

// NewRoot makes a self-signed P-256 root CA named cn, valid for ten years
// from an hour ago unless mods say otherwise.
func NewRoot(t testing.TB, cn string, mods ...Template) *CA {
	t.Helper()
	return issue(t, nil, cn, mods)
}

// NewIntermediate makes a P-256 CA named cn signed by c, valid for a year
// from an hour ago unless mods say otherwise (always within c's validity
// unless mods change it).
func (c *CA) NewIntermediate(t testing.TB, cn string, mods ...Template) *CA {
	t.Helper()
	return issue(t, c, cn, mods)
}

func issue(t testing.TB, parent *CA, cn string, mods []Template) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{Organization: []string{"Example Corp"}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent != nil {
		tmpl.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	for _, m := range mods {
		m(tmpl)
	}
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatalf("create certificate %s: %v", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// Files are the paths of upstream material written by WriteFiles.
type Files struct {
	CertFile, KeyFile, BundleFile string
}

// WriteFiles writes, into dir, signing's certificate followed by chain
// (cert_file), signing's key as PKCS#8 (key_file) and roots (bundle_file;
// not written, and left empty in the result, when roots is empty).
func WriteFiles(t testing.TB, dir string, signing *CA, chain []*x509.Certificate, roots []*x509.Certificate) Files {
	t.Helper()
	f := Files{CertFile: filepath.Join(dir, "upstream.crt"), KeyFile: filepath.Join(dir, "upstream.key")}
	WriteCerts(t, f.CertFile, append([]*x509.Certificate{signing.Cert}, chain...)...)
	WriteKey(t, f.KeyFile, signing.Key)
	if len(roots) > 0 {
		f.BundleFile = filepath.Join(dir, "roots.crt")
		WriteCerts(t, f.BundleFile, roots...)
	}
	return f
}

// WriteCerts writes certs to path as PEM CERTIFICATE blocks.
func WriteCerts(t testing.TB, path string, certs ...*x509.Certificate) {
	t.Helper()
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	write(t, path, data)
}

// WriteKey writes key to path as a PKCS#8 PEM "PRIVATE KEY" block.
func WriteKey(t testing.TB, path string, key crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
