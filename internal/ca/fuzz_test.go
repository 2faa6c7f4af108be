package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
)

// FuzzParseCSR feeds arbitrary bytes to ParseCSR: it must never panic,
// must refuse with InvalidArgument, and whatever it accepts must carry a
// supported key and a valid signature.
func FuzzParseCSR(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	u, _ := url.Parse("spiffe://example.org/web")
	for _, k := range []crypto.Signer{p256, p384, rsaKey, ed} {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: "web"},
			DNSNames: []string{"web.example.org"},
			URIs:     []*url.URL{u},
		}, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})

	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ParseCSR(der)
		if err != nil {
			if k := errkind.Of(err); k != errkind.InvalidArgument {
				t.Fatalf("ParseCSR() error kind = %s (%v), want invalid argument", k, err)
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("ParseCSR() accepted a CSR whose signature fails: %v", err)
		}
		switch pub := csr.PublicKey.(type) {
		case *ecdsa.PublicKey, ed25519.PublicKey:
		case *rsa.PublicKey:
			if pub.N.BitLen() < 2048 {
				t.Fatalf("ParseCSR() accepted RSA-%d", pub.N.BitLen())
			}
		default:
			t.Fatalf("ParseCSR() accepted key type %T", pub)
		}
	})
}
