package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// CSR limits.
const (
	maxCSRSize    = 64 << 10
	minRSABits    = 2048
	maxRSABits    = 8192
	maxDNSNameLen = 253
)

var (
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
)

// X509Params says what an X509-SVID certifies. The identity comes only from
// here, never from the CSR.
type X509Params struct {
	// ID is the SVID's SPIFFE ID: in the CA's trust domain, with a path.
	ID spiffeid.ID
	// TTL is the requested lifetime; the SVID never outlives its CA, and
	// Config.MaxSVIDTTL caps it when set.
	TTL time.Duration
	// DNSNames are added as DNS SANs; the first is also the subject CN.
	DNSNames []string
}

// ParseCSR parses a DER PKCS#10 certificate request and checks everything
// the CA relies on: a supported public key (ECDSA P-256/P-384/P-521, RSA of
// 2048 to 8192 bits, Ed25519), no request for a CA certificate, and a valid
// self-signature (proof of possession of the private key). The requested
// subject and SANs are not checked: SignX509SVID ignores them. Every
// failure is InvalidArgument naming the problem.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "parse csr: empty certificate request")
	}
	if len(der) > maxCSRSize {
		return nil, errkind.New(errkind.InvalidArgument, "parse csr: %d bytes is larger than the %d allowed", len(der), maxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, errkind.Wrap(errkind.InvalidArgument, err, "parse csr: malformed PKCS#10 certificate request")
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, errkind.New(errkind.InvalidArgument,
				"parse csr: ECDSA curve %s is not supported: use P-256, P-384 or P-521", pub.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, errkind.New(errkind.InvalidArgument,
				"parse csr: RSA key of %d bits is not allowed: use %d to %d bits", bits, minRSABits, maxRSABits)
		}
	case ed25519.PublicKey:
	default:
		return nil, errkind.New(errkind.InvalidArgument,
			"parse csr: public key type %T is not supported: use ECDSA, RSA or Ed25519", csr.PublicKey)
	}
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidExtBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) > 0 {
				return nil, errkind.New(errkind.InvalidArgument, "parse csr: malformed basic constraints extension")
			}
			if bc.IsCA {
				return nil, errkind.New(errkind.InvalidArgument,
					"parse csr: the request is for a CA certificate: only leaf X509-SVIDs are issued")
			}
		case ext.Id.Equal(oidExtKeyUsage):
			var ku asn1.BitString
			if rest, err := asn1.Unmarshal(ext.Value, &ku); err != nil || len(rest) > 0 {
				return nil, errkind.New(errkind.InvalidArgument, "parse csr: malformed key usage extension")
			}
			// Bits 5 and 6 are keyCertSign and cRLSign (RFC 5280 4.2.1.3).
			if ku.At(5) == 1 || ku.At(6) == 1 {
				return nil, errkind.New(errkind.InvalidArgument,
					"parse csr: the request asks for keyCertSign or cRLSign: only leaf X509-SVIDs are issued")
			}
		}
	}
	// Last, as it is the expensive step.
	if err := csr.CheckSignature(); err != nil {
		return nil, errkind.Wrap(errkind.InvalidArgument, err,
			"parse csr: signature does not verify (no proof of possession of the private key)")
	}
	return csr, nil
}

// SignX509SVID mints an X509-SVID for the public key of a PKCS#10 request
// (see ParseCSR), signed by this server's active X.509 CA. It returns the
// chain to present: [leaf] when the CA is self-signed (it is in the bundle
// itself), or [leaf, CA, upstream intermediates…] when an upstream
// authority signed it (the bundle holds the upstream roots).
//
// The leaf follows the X509-SVID specification: exactly one URI SAN (p.ID),
// CA=false, critical key usage digitalSignature (plus keyEncipherment for RSA
// keys), extended key usage serverAuth and clientAuth, a 128-bit random
// serial, NotBefore 10s in the past, NotAfter at now+TTL or the CA's end,
// whichever is first. Subject is Config.Subject with CN = the first DNS name.
//
// MintX509SVID does the same without parsing the new leaf back.
func (m *Manager) SignX509SVID(ctx context.Context, csrDER []byte, p X509Params) ([]*x509.Certificate, error) {
	der, _, s, err := m.mint(csrDER, p)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sign x509-svid for %s: parse minted certificate: %w", p.ID, err)
	}
	chain := make([]*x509.Certificate, 0, 2+len(s.upstream))
	chain = append(chain, cert)
	if s.signedUpstream {
		chain = append(chain, s.cert)
		chain = append(chain, s.upstream...)
	}
	return chain, nil
}

// MintedX509SVID is an X509-SVID as MintX509SVID returns it: the DER chain
// and what an issuance record needs, with no certificate parsed back.
type MintedX509SVID struct {
	// Chain is the chain to present, DER: [leaf] or [leaf, CA, upstream
	// intermediates…], as SignX509SVID's. The CA certificates are shared
	// and must not be modified.
	Chain [][]byte
	// Serial and NotAfter are the leaf's.
	Serial   *big.Int
	NotAfter time.Time
}

// MintX509SVID is SignX509SVID for callers that send the chain on as DER
// (the agent API): the same checks, the same certificate, one
// x509.ParseCertificate less per signing.
func (m *Manager) MintX509SVID(ctx context.Context, csrDER []byte, p X509Params) (MintedX509SVID, error) {
	der, f, s, err := m.mint(csrDER, p)
	if err != nil {
		return MintedX509SVID{}, err
	}
	chain := make([][]byte, 0, 2+len(s.upstream))
	chain = append(chain, der)
	if s.signedUpstream {
		chain = append(chain, s.cert.Raw)
		for _, c := range s.upstream {
			chain = append(chain, c.Raw)
		}
	}
	// The certificate holds NotAfter to the second, in UTC.
	return MintedX509SVID{Chain: chain, Serial: f.serial, NotAfter: f.notAfter.UTC().Truncate(time.Second)}, nil
}

// mint checks the request and signs the leaf: its DER, its variable
// fields, and the signer (the authority) that signed it.
//
// The leaf is encoded by leafTBS, which gives the DER x509.CreateCertificate
// gives for leafTemplate, and signed once: unlike x509.CreateCertificate,
// mint does not verify the signature it just made. The agent verifies the
// first leaf of each issuer in every SignX509SVIDs response in full
// against the bundle, which catches a signer that signs with the wrong key
// or not at all; later leaves of that response are checked for being what
// the agent asked for, and one in 64 of them at random for its signature
// too (internal/agent's chainVerifier argues why). A leaf with a bad
// signature among them is refused by every relying party at its
// handshake, as any certificate that does not verify.
func (m *Manager) mint(csrDER []byte, p X509Params) ([]byte, *leafFields, *x509Signer, error) {
	if err := m.checkSVIDParams(p.ID, p.TTL); err != nil {
		return nil, nil, nil, fmt.Errorf("sign x509-svid for %s: %w", p.ID, err)
	}
	if err := checkDNSNames(p.DNSNames); err != nil {
		return nil, nil, nil, fmt.Errorf("sign x509-svid for %s: %w", p.ID, err)
	}
	csr, err := ParseCSR(csrDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sign x509-svid for %s: %w", p.ID, err)
	}
	s := m.x509.Load()
	if s == nil {
		return nil, nil, nil, errkind.New(errkind.FailedPrecondition, "sign x509-svid for %s: ca not initialized", p.ID)
	}
	now := m.now()
	notAfter := now.Add(m.capTTL(p.TTL))
	if notAfter.After(s.cert.NotAfter) {
		notAfter = s.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, nil, errkind.New(errkind.Unavailable,
			"sign x509-svid for %s: active x509 authority %s has expired", p.ID, s.id)
	}
	ski, err := subjectKeyID(csr.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, nil, nil, errkind.Wrap(errkind.InvalidArgument, err, "sign x509-svid: malformed public key")
	}
	// The SubjectPublicKeyInfo as x509.CreateCertificate writes it: from the
	// parsed key, so a CSR whose encoding of the key is not canonical (the
	// parser tolerates a few such, e.g. trailing bytes after an RSA key)
	// still gets the canonical one.
	spki, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return nil, nil, nil, errkind.Wrap(errkind.InvalidArgument, err, "sign x509-svid: unsupported public key")
	}
	_, isRSA := csr.PublicKey.(*rsa.PublicKey)
	f := &leafFields{serial: randomSerial(), notBefore: now.Add(-clockSkew), notAfter: notAfter,
		id: p.ID, dnsNames: p.DNSNames, spki: spki, ski: ski, rsa: isRSA}
	tbs, err := m.leafTBS(s, f)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sign x509-svid for %s: encode certificate: %w", p.ID, err)
	}
	der, err := signLeaf(s, tbs)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sign x509-svid for %s: %w", p.ID, err)
	}
	return der, f, s, nil
}

// caCertificate self-signs the CA certificate of X.509 authority a: CA=true,
// keyCertSign and cRLSign, URI SAN = the trust domain's SPIFFE ID, subject
// Config.Subject with serialNumber = the authority id.
func (m *Manager) caCertificate(a model.Authority, ski []byte, key crypto.Signer) ([]byte, error) {
	subject := m.subject
	subject.SerialNumber = a.ID
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               subject,
		NotBefore:             a.NotBefore,
		NotAfter:              a.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{m.td.ID().URL()},
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign ca certificate: %w", err)
	}
	return der, nil
}

// newX509Signer parses authority a's certificate once, for every mint.
func newX509Signer(a model.Authority, key privateKey) (*x509Signer, error) {
	cert, err := x509.ParseCertificate(a.Certificate)
	if err != nil {
		return nil, fmt.Errorf("parse certificate of x509 authority %s: %w", a.ID, err)
	}
	pub, ok := key.signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("x509 authority %s: key does not match certificate", a.ID)
	}
	leaf, err := newLeafSigning(key.signer.Public(), cert.SubjectKeyId)
	if err != nil {
		return nil, fmt.Errorf("x509 authority %s: %w", a.ID, err)
	}
	s := &x509Signer{id: a.ID, cert: cert, key: key, signedUpstream: len(a.UpstreamRoots) > 0, leaf: leaf}
	if len(a.UpstreamChain) > 0 {
		if s.upstream, err = x509.ParseCertificates(a.UpstreamChain); err != nil {
			return nil, fmt.Errorf("parse upstream chain of x509 authority %s: %w", a.ID, err)
		}
	}
	return s, nil
}

// checkSVIDParams checks what both SVID kinds need: an ID with a path in
// this trust domain and a positive TTL.
func (m *Manager) checkSVIDParams(id spiffeid.ID, ttl time.Duration) error {
	switch {
	case id.IsZero():
		return errkind.New(errkind.InvalidArgument, "spiffe id is required")
	case !id.MemberOf(m.td):
		return errkind.New(errkind.InvalidArgument, "spiffe id %s is not in trust domain %s", id, m.td)
	case id.Path() == "":
		return errkind.New(errkind.InvalidArgument,
			"spiffe id %s has no path: SVIDs name workloads, not the trust domain", id)
	case ttl <= 0:
		return errkind.New(errkind.InvalidArgument, "ttl %s must be positive", ttl)
	}
	return nil
}

// capTTL applies Config.MaxSVIDTTL.
func (m *Manager) capTTL(ttl time.Duration) time.Duration {
	if m.maxSVIDTTL > 0 && ttl > m.maxSVIDTTL {
		return m.maxSVIDTTL
	}
	return ttl
}

// checkDNSNames accepts host names made of letters, digits, '-' and '.',
// optionally with a leading "*." wildcard label.
func checkDNSNames(names []string) error {
	for _, n := range names {
		h := n
		if len(h) > 2 && h[:2] == "*." {
			h = h[2:]
		}
		ok := h != "" && len(n) <= maxDNSNameLen && h[0] != '.' && h[len(h)-1] != '.'
		for i := 0; ok && i < len(h); i++ {
			c := h[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' ||
				c == '.' && h[i-1] != '.'
		}
		if !ok {
			return errkind.New(errkind.InvalidArgument,
				"dns name %q is invalid: use dot-separated labels of ASCII letters, digits and '-', optionally starting with \"*.\", such as web.example.org", n)
		}
	}
	return nil
}

// subjectKeyID computes a key identifier from a DER SubjectPublicKeyInfo
// by RFC 7093 section 2 method 1: the leftmost 160 bits of the SHA-256 of
// the subjectPublicKey bits.
func subjectKeyID(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(spki, &info)
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("subject key id: trailing data after public key")
	}
	h := sha256.Sum256(info.PublicKey.Bytes)
	return h[:20], nil
}

// randomSerial returns a positive 128-bit random serial number.
func randomSerial() *big.Int {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	n := new(big.Int).SetBytes(b[:])
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n
}
