package agent

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDs of the one kind of request the agent makes: a P-256 key
// (id-ecPublicKey, prime256v1) signed with ecdsa-with-SHA256.
var (
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256            = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

// csrFor returns the DER CertificationRequest (RFC 2986) of key with an
// empty subject and no attributes, signed by key: the request
// x509.CreateCertificateRequest makes from an empty template (the tests
// compare them byte for byte), built directly with cryptobyte. The
// reflective encoding costs about as much as the request's signature, which
// counts on a node signing thousands at once; newKeyAndCSR uses it.
func csrFor(key *ecdsa.PrivateKey) ([]byte, error) {
	point, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	info := cryptobyte.NewBuilder(make([]byte, 0, 160))
	info.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)                                        // version
		b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {}) // subject: the empty RDNSequence
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // subjectPKInfo
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidECPublicKey)
				b.AddASN1ObjectIdentifier(oidP256)
			})
			b.AddASN1BitString(point)
		})
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(*cryptobyte.Builder) {}) // attributes: none
	})
	tbs, err := info.Bytes()
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	out := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+32))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidECDSAWithSHA256) })
		b.AddASN1BitString(sig)
	})
	return out.Bytes()
}

// pkcs8For returns key as x509.MarshalPKCS8PrivateKey encodes it (the
// tests compare them byte for byte): a PrivateKeyInfo (RFC 5208) holding the
// RFC 5915 ECPrivateKey with its public key and without the curve
// parameters (the algorithm identifier names the curve), built directly
// with cryptobyte for the same reason as csrFor. The cache holds every
// workload key in this form, as the Workload API serves it.
func pkcs8For(key *ecdsa.PrivateKey) ([]byte, error) {
	point, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	d, err := key.Bytes()
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 140))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidECPublicKey)
			b.AddASN1ObjectIdentifier(oidP256)
		})
		b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1OctetString(d)
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1BitString(point)
				})
			})
		})
	})
	return b.Bytes()
}
