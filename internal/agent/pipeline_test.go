package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestChainVerifierAgreesWithFullVerify: once a good leaf made an issuer
// known to a chainVerifier, later leaves take its short path, which must
// refuse everything the full x509svid.Verify refuses: a leaf of another
// CA with the same name, expired, a CA, with certificate signing, of
// another trust domain, with an unhandled critical extension.
func TestChainVerifierAgreesWithFullVerify(t *testing.T) {
	ca := newTestCA(t, "example.org")
	impostor := newTestCA(t, "example.org") // same subject name, other key
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	now := clock.Now()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := spiffeid.RequireFromString("spiffe://example.org/w")
	leaf := func(signer *testCA, uri string, mod func(*x509.Certificate)) [][]byte {
		tmpl := &x509.Certificate{SerialNumber: nextSerial(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/w"}}}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		if mod != nil {
			mod(tmpl)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, key.Public(), signer.key)
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{der}
	}
	v := c.newChainVerifier(now)
	for i := range 2 {
		_, got, _, err := v.verify(leaf(ca, "", nil))
		if err != nil || got != id {
			t.Fatalf("verify(good leaf %d) = %v, %v; want %s", i, got, err, id)
		}
	}
	if len(v.issuers) != 1 {
		t.Fatalf("known issuers = %d after two leaves of one CA, want 1", len(v.issuers))
	}
	for _, tc := range []struct {
		name  string
		chain [][]byte
	}{
		{"other CA, same name", leaf(impostor, "", nil)},
		{"expired", leaf(ca, "", func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour) })},
		{"not yet valid", leaf(ca, "", func(c *x509.Certificate) { c.NotBefore = now.Add(time.Hour); c.NotAfter = now.Add(2 * time.Hour) })},
		{"a CA", leaf(ca, "", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = true, true })},
		{"cert signing", leaf(ca, "", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign })},
		{"other trust domain", leaf(ca, "spiffe://other.org/w", nil)},
		{"no spiffe id", leaf(ca, "https://example.org/w", nil)},
		{"unhandled critical extension", leaf(ca, "", func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}}
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := v.verify(tc.chain); err == nil {
				t.Errorf("verify(%s) on the short path = nil, want an error", tc.name)
			}
			if _, _, _, err := c.newChainVerifier(now).verify(tc.chain); err == nil {
				t.Errorf("verify(%s) on the full path = nil, want an error", tc.name)
			}
		})
	}
}
