package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestChainVerifierAgreesWithFullVerify: once a good leaf made an issuer
// known to a chainVerifier, later leaves take its short path, which must
// refuse everything the full x509svid.Verify refuses: a leaf of another
// CA with the same name, expired, a CA, with certificate signing, of
// another trust domain, with an unhandled critical extension; with or
// without what the agent asked for (leafWant) at hand.
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
	hk, err := holdKey(key)
	if err != nil {
		t.Fatal(err)
	}
	want := &leafWant{id: id, key: hk}
	v := c.newChainVerifier(now)
	for i := range 2 {
		_, got, _, err := v.verify(leaf(ca, "", nil), nil)
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
			if _, _, _, err := v.verify(tc.chain, nil); err == nil {
				t.Errorf("verify(%s) on the short path = nil, want an error", tc.name)
			}
			if _, _, _, err := v.verify(tc.chain, want); err == nil {
				t.Errorf("verify(%s) on the short path, as asked = nil, want an error", tc.name)
			}
			if _, _, _, err := c.newChainVerifier(now).verify(tc.chain, nil); err == nil {
				t.Errorf("verify(%s) on the full path = nil, want an error", tc.name)
			}
		})
	}
}

// TestChainVerifierSkipsOnlyTheSignature pins down when a leaf's own
// signature is not checked: after a leaf of the same issuer name, AKI and
// intermediates was verified in full in the same response, and only when
// the leaf is exactly what was asked for. Every leaf below but the good
// ones is signed by a forger: a key that is not the CA's, under a
// certificate with the CA's name and subject key ID, so the leaf carries
// the CA's issuer name and AKI and only its signature is wrong. A forged
// first leaf is refused (and makes no issuer known), a forged later leaf
// that differs from what was asked for in key, SPIFFE ID, DNS names,
// validity, signature algorithm, issuer name or AKI is refused, and one
// that differs in nothing but the signature is accepted: that is the
// policy (see chainVerifier).
func TestChainVerifierSkipsOnlyTheSignature(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	now := clock.Now()
	forger := func(subject pkix.Name, skid []byte) *testCA {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: subject, SubjectKeyId: skid,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return &testCA{td: ca.td, cert: cert, key: key}
	}
	if len(ca.cert.SubjectKeyId) == 0 {
		t.Fatal("test CA has no subject key ID")
	}
	twin := forger(ca.cert.Subject, ca.cert.SubjectKeyId)                         // the CA's name and AKI, another key
	otherAKI := forger(ca.cert.Subject, []byte{1, 2, 3, 4})                       // the CA's name, another AKI
	otherName := forger(pkix.Name{CommonName: "elsewhere"}, ca.cert.SubjectKeyId) // the CA's AKI, another name

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hk, err := holdKey(key)
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/w")
	want := &leafWant{id: id, key: hk, dnsNames: []string{"w.example.org"}}
	leaf := func(signer *testCA, mod func(*x509.Certificate)) [][]byte {
		tmpl := &x509.Certificate{SerialNumber: nextSerial(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, URIs: []*url.URL{id.URL()}, DNSNames: []string{"w.example.org"}}
		pub := key.Public()
		if mod != nil {
			mod(tmpl)
			if tmpl.PublicKey != nil {
				pub = tmpl.PublicKey
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, pub, signer.key)
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{der}
	}

	v := c.newChainVerifier(now)
	v.spotCheck = func() bool { return false } // the random spot checks are tested below
	if _, _, _, err := v.verify(leaf(twin, nil), want); err == nil {
		t.Fatal("verify(forged first leaf) = nil, want an error")
	}
	if len(v.issuers) != 0 {
		t.Fatalf("known issuers = %d after a forged first leaf, want 0", len(v.issuers))
	}
	for i := range 3 {
		if _, got, _, err := v.verify(leaf(ca, nil), want); err != nil || got != id {
			t.Fatalf("verify(good leaf %d) = %v, %v; want %s", i, got, err, id)
		}
	}
	if v.skipped != 2 {
		t.Fatalf("signatures skipped = %d after three good leaves, want 2 (all but the first)", v.skipped)
	}
	for _, tc := range []struct {
		name  string
		chain [][]byte
	}{
		{"another key", leaf(twin, func(c *x509.Certificate) { c.PublicKey = otherKey.Public() })},
		{"another spiffe id", leaf(twin, func(c *x509.Certificate) {
			c.URIs = []*url.URL{spiffeid.RequireFromString("spiffe://example.org/other").URL()}
		})},
		{"other dns names", leaf(twin, func(c *x509.Certificate) { c.DNSNames = []string{"other.example.org"} })},
		{"no dns names", leaf(twin, func(c *x509.Certificate) { c.DNSNames = nil })},
		{"an ip address", leaf(twin, func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)} })},
		{"past the issuer's end", leaf(twin, func(c *x509.Certificate) { c.NotAfter = ca.cert.NotAfter.Add(time.Hour) })},
		{"another signature algorithm", leaf(twin, func(c *x509.Certificate) { c.SignatureAlgorithm = x509.ECDSAWithSHA384 })},
		{"another AKI", leaf(otherAKI, nil)},
		{"another issuer name", leaf(otherName, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := v.skipped
			if _, _, _, err := v.verify(tc.chain, want); err == nil {
				t.Errorf("verify(forged leaf, %s) = nil, want an error", tc.name)
			}
			if v.skipped != before {
				t.Errorf("verify(forged leaf, %s) skipped its signature check", tc.name)
			}
		})
	}
	if _, _, _, err := v.verify(leaf(twin, nil), nil); err == nil {
		t.Error("verify(forged later leaf, nothing asked) = nil, want an error")
	}
	before := v.skipped
	if _, got, _, err := v.verify(leaf(twin, nil), want); err != nil || got != id || v.skipped != before+1 {
		t.Errorf("verify(later leaf as asked, bad signature) = %v, %v, skipped %d; want %s, nil, skipped (the policy)",
			got, err, v.skipped-before, id)
	}
	if _, _, _, err := c.newChainVerifier(now).verify(leaf(twin, nil), want); err == nil {
		t.Error("verify(the same leaf first in a new response) = nil, want an error")
	}
	// A spot check makes such a leaf get its signature checked after all.
	v.spotCheck = func() bool { return true }
	if _, _, _, err := v.verify(leaf(twin, nil), want); err == nil {
		t.Error("verify(later leaf as asked, bad signature, spot-checked) = nil, want an error")
	}
	// And the default spot check picks about one in spotCheckOneIn.
	picked := 0
	spot := c.newChainVerifier(now).spotCheck
	for range 64 * spotCheckOneIn {
		if spot() {
			picked++
		}
	}
	if picked < 32 || picked > 96 {
		t.Errorf("default spot check picked %d of %d, want about %d", picked, 64*spotCheckOneIn, 64)
	}
}
