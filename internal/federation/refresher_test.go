package federation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/store"
)

// spiffeEndpoint is a bundle endpoint of trust domain td under
// https_spiffe: a real TLS server presenting an X509-SVID with ID
// spiffe://td/endpoint, answering whatever body holds.
type spiffeEndpoint struct {
	srv      *httptest.Server
	ca       *x509.Certificate
	body     atomic.Value // []byte
	redirect atomic.Bool  // answer 302 to /elsewhere instead
	id       spiffeid.ID
	bundle   *spiffebundle.Bundle // td's bundle: the CA
}

func newSPIFFEEndpoint(t *testing.T, td spiffeid.TrustDomain) *spiffeEndpoint {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	e := &spiffeEndpoint{ca: ca, id: spiffeid.RequireFromPath(td, "/endpoint")}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, URIs: []*url.URL{e.id.URL()}}
	leaf, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	e.bundle = spiffebundle.FromX509Authorities(td, []*x509.Certificate{ca})
	e.body.Store([]byte{})
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.redirect.Load() && r.URL.Path != "/elsewhere" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		_, _ = w.Write(e.body.Load().([]byte))
	}))
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf, caDER}, PrivateKey: key}}}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// serve makes the endpoint answer b (with sequence seq and refresh hint).
func (e *spiffeEndpoint) serve(t *testing.T, b *spiffebundle.Bundle, seq uint64, hint time.Duration) {
	t.Helper()
	b = b.Clone()
	b.SetSequenceNumber(seq)
	b.SetRefreshHint(hint)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e.body.Store(data)
}

// TestRefresherKeepsLastGood drives a refresher against a real https_spiffe
// endpoint and a real store: a good bundle is taken at its (bounded)
// refresh hint; an empty, unparsable or other-trust-domain bundle, or an
// endpoint that is gone, is refused with the last good bundle kept and the
// retry backed off.
func TestRefresherKeepsLastGood(t *testing.T) {
	st, err := store.Open(t.Context(), store.Config{DSN: filepath.Join(t.TempDir(), "s.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	td := spiffeid.RequireTrustDomainFromString("partner.org")
	ep := newSPIFFEEndpoint(t, td)
	initial, _ := ep.bundle.Marshal()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	must(st.CreateFederation(t.Context(), store.Federation{TrustDomain: td, BundleEndpointURL: ep.srv.URL + Path,
		Profile: store.ProfileHTTPSSPIFFE, EndpointSPIFFEID: ep.id, Bundle: initial, CreatedAt: now}))
	r := &Refresher{Store: st, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
		MinRefresh: time.Minute, MaxRefresh: time.Hour, Retry: 10 * time.Second, MaxRetry: time.Minute}

	ep.serve(t, ep.bundle, 5, time.Second) // a hint below MinRefresh
	r.RefreshDue(t.Context())
	f, err := st.GetFederation(t.Context(), td)
	must(err)
	if f.BundleSequence != 5 || f.LastError != "" || !f.NextRefresh.Equal(now.Add(time.Minute)) {
		t.Fatalf("after a good fetch: %+v, want sequence 5 and the next refresh at MinRefresh", f)
	}
	good := f.Bundle

	// Not due yet: nothing is fetched.
	ep.serve(t, ep.bundle, 6, 2*time.Hour)
	r.RefreshDue(t.Context())
	if f, _ = st.GetFederation(t.Context(), td); f.BundleSequence != 5 || string(f.Bundle) != string(good) {
		t.Fatalf("a fetch before the refresh was due: sequence %d", f.BundleSequence)
	}
	now = now.Add(time.Minute)
	r.RefreshDue(t.Context())
	if f, _ = st.GetFederation(t.Context(), td); f.BundleSequence != 6 || !f.NextRefresh.Equal(now.Add(time.Hour)) {
		t.Fatalf("after the refresh hint of 2h: %+v, want sequence 6 and the next refresh at MaxRefresh", f)
	}
	good = f.Bundle

	other := newSPIFFEEndpoint(t, spiffeid.RequireTrustDomainFromString("evil.org"))
	for i, tc := range []struct {
		name string
		set  func()
		want string
	}{
		{"empty bundle", func() { ep.body.Store([]byte(`{"spiffe_sequence": 7, "keys": []}`)) }, "empty"},
		{"unparsable bundle", func() { ep.body.Store([]byte(`{"keys": [`)) }, "fetch"},
		{"redirect", func() { ep.serve(t, ep.bundle, 9, time.Hour); ep.redirect.Store(true) }, "302 Found (redirects are not followed)"},
		{"oversized answer", func() { ep.redirect.Store(false); ep.body.Store(make([]byte, MaxBundleSize+1)) }, "larger than"},
		{"bundle of another trust domain", func() {
			ep.serve(t, spiffebundle.FromX509Authorities(td, other.bundle.X509Authorities()), 8, time.Hour)
		}, "wrong trust domain"},
		{"endpoint gone", func() { ep.srv.Close() }, "fetch"},
	} {
		tc.set()
		now = now.Add(2 * time.Hour)
		r.RefreshDue(t.Context())
		f, err := st.GetFederation(t.Context(), td)
		must(err)
		if string(f.Bundle) != string(good) || f.BundleSequence != 6 {
			t.Errorf("%s: the bundle changed to sequence %d, want the last good one (6) kept", tc.name, f.BundleSequence)
		}
		if !strings.Contains(f.LastError, tc.want) || f.Failures != i+1 {
			t.Errorf("%s: last_error %q, failures %d; want %q and %d", tc.name, f.LastError, f.Failures, tc.want, i+1)
		}
		// Backoff: 10s doubling per failure up to 1m, jittered down to half.
		wait := f.NextRefresh.Sub(now)
		limit := min(10*time.Second<<i, time.Minute)
		if wait < limit/2 || wait > limit {
			t.Errorf("%s: retry in %v, want within [%v, %v]", tc.name, wait, limit/2, limit)
		}
	}
}
