package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// The agent makes one kind of request and key: a P-256 key
// (id-ecPublicKey, prime256v1), the request with an empty subject and no
// attributes, signed with ecdsa-with-SHA256. Their DER is fixed but for the
// point, the scalar and the signature, so csrFor and pkcs8For write it from
// these templates (every length below is the definite short or one-byte
// long form DER requires). The tests compare both with the standard
// library's encodings byte for byte.
var (
	// p256SPKIPrefix is SubjectPublicKeyInfo up to the 65-byte point:
	// SEQUENCE(89) { SEQUENCE(19) { OID id-ecPublicKey, OID prime256v1 },
	// BIT STRING(66), no unused bits }, as x509.MarshalPKIXPublicKey
	// writes it.
	p256SPKIPrefix = []byte{0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00}
	// csrInfoPrefix is CertificationRequestInfo up to the SPKI:
	// SEQUENCE(98) { INTEGER 0 (version), SEQUENCE(0) (the empty subject);
	// the attributes, [0](0), follow the SPKI.
	csrInfoPrefix = []byte{0x30, 0x62, 0x02, 0x01, 0x00, 0x30, 0x00}
	csrInfoSuffix = []byte{0xa0, 0x00}
	// ecdsaWithSHA256 is the AlgorithmIdentifier SEQUENCE(10) { OID
	// ecdsa-with-SHA256 }.
	ecdsaWithSHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	// pkcs8Prefix is PrivateKeyInfo up to the scalar: SEQUENCE(135) {
	// INTEGER 0, SEQUENCE(19) { OID id-ecPublicKey, OID prime256v1 },
	// OCTET STRING(109) { SEQUENCE(107) { INTEGER 1, OCTET STRING(32) …
	pkcs8Prefix = []byte{0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20}
	// pkcs8Middle follows the scalar: publicKey [1](68) { BIT STRING(66),
	// no unused bits }, then the point.
	pkcs8Middle = []byte{0xa1, 0x44, 0x03, 0x42, 0x00}
)

// csrTBSLen is the length of the CertificationRequestInfo csrFor writes.
const csrTBSLen = 2 + 0x62

// maxP256Sig is the longest DER ECDSA P-256 signature.
const maxP256Sig = 72

// csrFor returns the DER CertificationRequest (RFC 2986) of key with an
// empty subject and no attributes, signed by key: the request
// x509.CreateCertificateRequest makes from an empty template (the tests
// compare them byte for byte), written from templates. The reflective
// encoding costs about as much as the request's signature, which counts on
// a node signing thousands at once; newKeyAndCSR uses it.
func csrFor(key *ecdsa.PrivateKey) ([]byte, error) {
	if key.Curve != elliptic.P256() {
		return nil, errNotP256
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 3, 3+csrTBSLen+len(ecdsaWithSHA256)+3+maxP256Sig)
	out = append(out, csrInfoPrefix...)
	out = append(out, p256SPKIPrefix...)
	out = append(out, point...)
	out = append(out, csrInfoSuffix...)
	if len(out)-3 != csrTBSLen {
		return nil, errNotP256
	}
	digest := sha256.Sum256(out[3:])
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return nil, err
	}
	if len(sig) > maxP256Sig {
		return nil, errors.New("ecdsa signature longer than a P-256 signature")
	}
	out = append(out, ecdsaWithSHA256...)
	out = append(out, 0x03, byte(len(sig)+1), 0x00) // BIT STRING, no unused bits
	out = append(out, sig...)
	// The outer SEQUENCE's content is at most 187 bytes: a one-byte long
	// form length, or the short form below 128 (which only a signature of
	// implausibly small r and s would give).
	n := len(out) - 3
	if n < 128 {
		out = out[1:]
		out[0], out[1] = 0x30, byte(n)
		return out, nil
	}
	out[0], out[1], out[2] = 0x30, 0x81, byte(n)
	return out, nil
}

// pkcs8For returns key as x509.MarshalPKCS8PrivateKey encodes it (the
// tests compare them byte for byte): a PrivateKeyInfo (RFC 5208) holding the
// RFC 5915 ECPrivateKey with its public key and without the curve
// parameters (the algorithm identifier names the curve), written from a
// template for the same reason as csrFor. The cache holds every workload
// key in this form, as the Workload API serves it; its last 65 bytes are
// the public point.
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
	if len(d) != 32 || len(point) != 65 {
		return nil, errNotP256
	}
	out := make([]byte, 0, len(pkcs8Prefix)+32+len(pkcs8Middle)+65)
	out = append(out, pkcs8Prefix...)
	out = append(out, d...)
	out = append(out, pkcs8Middle...)
	return append(out, point...), nil
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
