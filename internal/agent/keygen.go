package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

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
	if key.Curve != elliptic.P256() {
		return nil, errNotP256
	}
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

// errNotP256 is the refusal of a key that is not a P-256 key.
var errNotP256 = errors.New("not an ECDSA P-256 key")

// heldKey is a workload key as the agent holds it from its CSR until its
// SVID arrives, and then in the cache: the PKCS#8 encoding the Workload API
// serves (pkcs8For), and the public point, the last 65 bytes of it, to
// check the SVID against. The live key object (big integers, the crypto
// library's own cached form) is dropped as soon as the CSR is signed.
type heldKey struct {
	der   []byte
	point []byte // aliases the end of der
}

// holdKey encodes key for the cache.
func holdKey(key *ecdsa.PrivateKey) (heldKey, error) {
	der, err := pkcs8For(key)
	if err != nil {
		return heldKey{}, err
	}
	// pkcs8For ends with the ECPrivateKey's publicKey BIT STRING, whose
	// contents end with the 65-byte point.
	return heldKey{der: der, point: der[len(der)-65:]}, nil
}

// p256SPKIPrefix is the DER SubjectPublicKeyInfo of a P-256 key up to its
// point: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING
// (no unused bits) }, as x509.MarshalPKIXPublicKey writes it.
var p256SPKIPrefix = []byte{0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00}

// certifies reports whether cert certifies k: its SubjectPublicKeyInfo is
// k's public key, byte for byte (the CA writes the canonical encoding).
func (k heldKey) certifies(cert *x509.Certificate) bool {
	spki := cert.RawSubjectPublicKeyInfo
	return len(spki) == len(p256SPKIPrefix)+len(k.point) && len(k.point) == 65 &&
		bytes.Equal(spki[:len(p256SPKIPrefix)], p256SPKIPrefix) && bytes.Equal(spki[len(p256SPKIPrefix):], k.point)
}

// newHeldKeyAndCSR is newKeyAndCSR for workload keys: the key comes back
// as the cache holds it.
func newHeldKeyAndCSR() (heldKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return heldKey{}, nil, fmt.Errorf("generate key: %w", err)
	}
	csr, err := csrFor(key)
	if err != nil {
		return heldKey{}, nil, fmt.Errorf("create csr: %w", err)
	}
	k, err := holdKey(key)
	if err != nil {
		return heldKey{}, nil, fmt.Errorf("encode key: %w", err)
	}
	return k, csr, nil
}
