package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/apiconv"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

// testCA is a self-signed X.509 authority for a trust domain, with the
// trust domain's SPIFFE ID as URI SAN like Signet's CA.
type testCA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

var serialMu sync.Mutex
var serialNext int64 = 1

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serialNext++
	return big.NewInt(serialNext)
}

func newTestCA(t testing.TB, td string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tdID := spiffeid.RequireTrustDomainFromString(td)
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: "test ca " + td},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{tdID.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{td: tdID, cert: cert, key: key}
}

// sign issues an X509-SVID leaf for id and pub.
func (ca *testCA) sign(t testing.TB, id spiffeid.ID, pub crypto.PublicKey, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (ca *testCA) bundle(seq uint64) *spiffebundle.Bundle {
	b := spiffebundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
	b.SetSequenceNumber(seq)
	return b
}

func (ca *testCA) bundleProto(t testing.TB, seq uint64) *commonv1.Bundle {
	t.Helper()
	pb, err := apiconv.BundleToProto(ca.bundle(seq))
	if err != nil {
		t.Fatal(err)
	}
	return pb
}

// newFakeClock returns a fake clock reading about now.
func newFakeClock() *testclock.Clock { return testclock.New(time.Now()) }

func testMetrics(t testing.TB) *metrics {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newTestCache(t testing.TB, ca *testCA, clock *testclock.Clock) *cache {
	t.Helper()
	return newCache(ca.td, ca.bundle(1), clock.Now, slog.New(slog.DiscardHandler), testMetrics(t))
}

// pe builds a wire entry; sels are "type:value" strings.
func pe(id, path string, sels ...string) *commonv1.Entry {
	e := &commonv1.Entry{Id: id, SpiffeId: "spiffe://example.org" + path, ParentId: "spiffe://example.org/agent"}
	for _, s := range sels {
		typ, val, _ := strings.Cut(s, ":")
		e.Selectors = append(e.Selectors, &commonv1.Selector{Type: typ, Value: val})
	}
	return e
}

// signAll signs every due entry of c with ca, valid from notBefore for
// ttl, as the sync loop would with the server.
func signAll(t testing.TB, c *cache, ca *testCA, notBefore time.Time, ttl time.Duration) int {
	t.Helper()
	n := 0
	for _, job := range c.due(c.now()) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		leaf := ca.sign(t, job.entry.SPIFFEID, key.Public(), notBefore, notBefore.Add(ttl))
		if err := c.storeSVID(job, []*x509.Certificate{leaf}, key, c.now()); err != nil {
			t.Fatalf("storeSVID(%s) = %v", job.entry.ID, err)
		}
		n++
	}
	return n
}
