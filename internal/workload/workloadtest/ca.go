package workloadtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/workload"
)

// CA is a trust domain's test authority: a self-signed X.509 CA whose
// certificate is itself an SVID of the trust domain (X509-SVID, 3.2), and a
// JWT signing key. Keys are ECDSA P-256.
type CA struct {
	TD       spiffeid.TrustDomain
	Cert     *x509.Certificate
	Key      crypto.Signer
	JWTKey   crypto.Signer
	JWTKeyID string
	now      func() time.Time
}

// NewCA returns a CA for td valid from an hour ago for a day.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{Organization: []string{"Signet test"}, CommonName: td.Name() + " CA"},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse CA certificate: %v", err)
	}
	jwtKey := newKey(tb)
	kid := make([]byte, 8)
	if _, err := rand.Read(kid); err != nil {
		tb.Fatal(err)
	}
	return &CA{TD: td, Cert: cert, Key: key, JWTKey: jwtKey, JWTKeyID: hex.EncodeToString(kid), now: time.Now}
}

// Bundle returns the trust domain's bundle: the CA certificate and the JWT
// key.
func (ca *CA) Bundle() *spiffebundle.Bundle {
	b := spiffebundle.New(ca.TD)
	b.AddX509Authority(ca.Cert)
	b.SetJWTAuthorities(map[string]crypto.PublicKey{ca.JWTKeyID: ca.JWTKey.Public()})
	return b
}

// X509SVID mints a leaf X509-SVID for id (X509-SVID, 3.1 and 4), valid for
// an hour, with a fresh key. id must be in the CA's trust domain.
func (ca *CA) X509SVID(tb testing.TB, id spiffeid.ID) workload.X509SVID {
	tb.Helper()
	if id.TrustDomain() != ca.TD {
		tb.Fatalf("X509SVID(%s): not in trust domain %s", id, ca.TD)
	}
	key := newKey(tb)
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		tb.Fatalf("create x509-svid for %s: %v", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse x509-svid for %s: %v", id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return workload.X509SVID{EntryID: id.Path(), ID: id, ChainDER: cert.Raw, KeyDER: keyDER, ExpiresAt: cert.NotAfter}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	return key
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// jwtAlgorithm picks the JWS algorithm for key among those JWT-SVID allows.
func jwtAlgorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("jwt signer: unsupported key type %T", key.Public())
}
