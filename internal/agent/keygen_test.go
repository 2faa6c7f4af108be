package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"testing"
)

// TestCSRForMatchesStandardLibrary: csrFor's request is the one
// x509.CreateCertificateRequest makes from an empty template (same
// to-be-signed bytes, same algorithm), it parses and its signature checks.
func TestCSRForMatchesStandardLibrary(t *testing.T) {
	key, _, err := newKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ec := key.(*ecdsa.PrivateKey)
	der, err := csrFor(ec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("ParseCertificateRequest(csrFor()) = %v", err)
	}
	if err := got.CheckSignature(); err != nil {
		t.Errorf("csrFor() signature: %v", err)
	}
	stdDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ec)
	if err != nil {
		t.Fatal(err)
	}
	want, err := x509.ParseCertificateRequest(stdDER)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.RawTBSCertificateRequest, want.RawTBSCertificateRequest) {
		t.Errorf("csrFor() to-be-signed = %x, want the standard library's %x", got.RawTBSCertificateRequest, want.RawTBSCertificateRequest)
	}
	if got.SignatureAlgorithm != want.SignatureAlgorithm || !ec.PublicKey.Equal(got.PublicKey) {
		t.Errorf("csrFor() = %v with %T, want %v with the key's public key", got.SignatureAlgorithm, got.PublicKey, want.SignatureAlgorithm)
	}
}

// TestPKCS8ForMatchesStandardLibrary: pkcs8For encodes a key exactly as
// x509.MarshalPKCS8PrivateKey does, and it parses back to the key.
func TestPKCS8ForMatchesStandardLibrary(t *testing.T) {
	for range 20 { // scalars with leading zero bytes must keep their length
		key, _, err := newKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		ec := key.(*ecdsa.PrivateKey)
		got, err := pkcs8For(ec)
		if err != nil {
			t.Fatal(err)
		}
		want, err := x509.MarshalPKCS8PrivateKey(ec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("pkcs8For() = %x, want %x", got, want)
		}
		back, err := x509.ParsePKCS8PrivateKey(got)
		if err != nil || !ec.Equal(back) {
			t.Fatalf("ParsePKCS8PrivateKey(pkcs8For()) = %v, %v; want the key", back, err)
		}
		held, err := holdKey(ec)
		point, _ := ec.PublicKey.Bytes()
		if err != nil || !bytes.Equal(held.der, want) || !bytes.Equal(held.point, point) {
			t.Fatalf("holdKey() = %x, point %x, %v; want %x, point %x", held.der, held.point, err, want, point)
		}
		spki, err := x509.MarshalPKIXPublicKey(ec.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !held.certifies(&x509.Certificate{RawSubjectPublicKeyInfo: spki}) {
			t.Fatalf("heldKey.certifies(a certificate of its key, SPKI %x) = false", spki)
		}
		other, _, _ := newKeyAndCSR()
		otherSPKI, _ := x509.MarshalPKIXPublicKey(other.Public())
		if held.certifies(&x509.Certificate{RawSubjectPublicKeyInfo: otherSPKI}) {
			t.Fatal("heldKey.certifies(a certificate of another key) = true")
		}
	}
}
