package federation

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// specCA makes a certificate like the SPIFFE Trust Domain and Bundle
// spec's Appendix A: self-signed RSA, O = td, CA, URI SAN spiffe://td/.
func specCA(t testing.TB, td string, serial int64) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://" + td + "/")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{Organization: []string{td}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, URIs: []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// specBundle writes the spec's Appendix A trust bundle JSON for certs.
func specBundle(seq int, certs ...*x509.Certificate) []byte {
	var keys []string
	for _, c := range certs {
		pub := c.PublicKey.(*rsa.PublicKey)
		keys = append(keys, fmt.Sprintf(`{"kty": "RSA", "use": "x509-svid", "x5c": [%q], "n": %q, "e": "AQAB"}`,
			base64.StdEncoding.EncodeToString(c.Raw), base64.RawURLEncoding.EncodeToString(pub.N.Bytes())))
	}
	return fmt.Appendf(nil, `{
	"spiffe_sequence": %d,
	"spiffe_refresh_hint": 2419200,
	"keys": [%s]
}`, seq, strings.Join(keys, ","))
}

func TestParseBundleSpecExample(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.com")
	c1, _ := specCA(t, "example.com", 1)
	c2, _ := specCA(t, "example.com", 2)
	for _, tc := range []struct {
		name  string
		data  []byte
		seq   uint64
		certs []*x509.Certificate
	}{
		{"bundle #1", specBundle(1, c1), 1, []*x509.Certificate{c1}},
		{"bundle #2 (rotation)", specBundle(2, c1, c2), 2, []*x509.Certificate{c1, c2}},
	} {
		b, err := ParseBundle(td, tc.data)
		if err != nil {
			t.Fatalf("ParseBundle(%s) error = %v", tc.name, err)
		}
		if seq, ok := b.SequenceNumber(); !ok || seq != tc.seq {
			t.Errorf("ParseBundle(%s) sequence = %d, %v, want %d", tc.name, seq, ok, tc.seq)
		}
		if hint, ok := b.RefreshHint(); !ok || hint != 2419200*time.Second {
			t.Errorf("ParseBundle(%s) refresh hint = %v, want 28 days", tc.name, hint)
		}
		if got := b.X509Authorities(); len(got) != len(tc.certs) || !got[len(got)-1].Equal(tc.certs[len(tc.certs)-1]) {
			t.Errorf("ParseBundle(%s) has %d authorities, want %d", tc.name, len(got), len(tc.certs))
		}
	}
	// The same authorities as PEM.
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c1.Raw})
	b, err := ParseBundle(td, pemData)
	if err != nil || len(b.X509Authorities()) != 1 {
		t.Fatalf("ParseBundle(PEM) = %v, %v, want one authority", b, err)
	}
}

func TestParseBundleRefuses(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.com")
	other, _ := specCA(t, "other.org", 3)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty keys":         {[]byte(`{"spiffe_sequence": 4, "keys": []}`), "empty"},
		"not json":           {[]byte(`{"keys": [`), "not valid SPIFFE bundle JSON"},
		"not pem":            {[]byte("hello"), "neither"},
		"wrong trust domain": {specBundle(1, other), "wrong trust domain"},
		"too big":            {make([]byte, MaxBundleSize+1), "at most"},
	} {
		_, err := ParseBundle(td, tc.data)
		if errkind.Of(err) != errkind.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseBundle(%s) error = %v, want InvalidArgument with %q", name, err, tc.want)
		}
	}
}

type bundleSource struct{ b *spiffebundle.Bundle }

func (s bundleSource) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td != s.b.TrustDomain() {
		return nil, fmt.Errorf("no bundle for %s", td)
	}
	return s.b, nil
}

func TestHandlerServesSpecFormat(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.com")
	c1, _ := specCA(t, "example.com", 1)
	b := spiffebundle.FromX509Authorities(td, []*x509.Certificate{c1})
	b.SetSequenceNumber(9)
	b.SetRefreshHint(5 * time.Minute)
	lim := denyAfter(2)
	h, err := NewHandler(td, bundleSource{b}, &lim)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Sequence    *uint64 `json:"spiffe_sequence"`
		RefreshHint *int64  `json:"spiffe_refresh_hint"`
		Keys        []struct {
			Use string   `json:"use"`
			X5C []string `json:"x5c"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decode served bundle: %v", err)
	}
	if resp.Header.Get("Content-Type") != "application/json" || doc.Sequence == nil || *doc.Sequence != 9 ||
		doc.RefreshHint == nil || *doc.RefreshHint != 300 || len(doc.Keys) != 1 || doc.Keys[0].Use != "x509-svid" || len(doc.Keys[0].X5C) != 1 {
		t.Errorf("served bundle = %+v (content type %q), want sequence 9, hint 300 and one x509-svid key", doc, resp.Header.Get("Content-Type"))
	}
	post, err := http.Post(srv.URL+Path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s = %d, want 405", Path, post.StatusCode)
	}
	limited, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	limited.Body.Close()
	if limited.StatusCode != http.StatusTooManyRequests {
		t.Errorf("GET %s past the limit = %d, want 429", Path, limited.StatusCode)
	}
}

// denyAfter admits n requests, then refuses.
type denyAfter int

func (d *denyAfter) AllowAddr(string) bool {
	*d--
	return *d >= 0
}

func TestRelationshipValidate(t *testing.T) {
	own := spiffeid.RequireTrustDomainFromString("example.org")
	c, _ := specCA(t, "partner.org", 1)
	bundle := specBundle(3, c)
	good := Relationship{TrustDomain: "partner.org", BundleEndpointURL: "https://signet.partner.org:8443/bundle",
		Profile: store.ProfileHTTPSSPIFFE, EndpointSPIFFEID: "spiffe://partner.org/signet/server", TrustBundle: bundle}
	f, err := good.Validate(own)
	if err != nil {
		t.Fatalf("Validate(good) error = %v", err)
	}
	if f.TrustDomain.Name() != "partner.org" || f.BundleSequence != 3 || len(f.Bundle) == 0 || f.EndpointSPIFFEID.String() != good.EndpointSPIFFEID {
		t.Errorf("Validate(good) = %+v", f)
	}
	web := Relationship{TrustDomain: "cloud.org", BundleEndpointURL: "https://bundles.cloud.org/bundle", Profile: store.ProfileHTTPSWeb}
	if _, err := web.Validate(own); err != nil {
		t.Errorf("Validate(https_web) error = %v", err)
	}
	for name, tc := range map[string]struct {
		mut  func(*Relationship)
		want string
	}{
		"own trust domain": {func(r *Relationship) { r.TrustDomain = "example.org" }, "trust_domain example.org: is this server's own"},
		"bad trust domain": {func(r *Relationship) { r.TrustDomain = "Bad Domain" }, "trust_domain \"Bad Domain\""},
		"http url":         {func(r *Relationship) { r.BundleEndpointURL = "http://partner.org/bundle" }, "bundle_endpoint_url \"http://partner.org/bundle\": want an https:// URL"},
		"no host":          {func(r *Relationship) { r.BundleEndpointURL = "https:///bundle" }, "bundle_endpoint_url"},
		"unknown profile":  {func(r *Relationship) { r.Profile = "https_magic" }, "profile \"https_magic\": use https_web or https_spiffe"},
		"no endpoint id":   {func(r *Relationship) { r.EndpointSPIFFEID = "" }, "endpoint_spiffe_id: required"},
		"foreign endpoint": {func(r *Relationship) { r.EndpointSPIFFEID = "spiffe://evil.org/x" }, "endpoint_spiffe_id spiffe://evil.org/x: must be in trust domain partner.org"},
		"no trust bundle":  {func(r *Relationship) { r.TrustBundle = nil }, "trust_bundle: required"},
		"wrong td bundle":  {func(r *Relationship) { r.TrustDomain, r.EndpointSPIFFEID = "other.org", "spiffe://other.org/s" }, "wrong trust domain"},
	} {
		r := good
		tc.mut(&r)
		_, err := r.Validate(own)
		if errkind.Of(err) != errkind.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) error = %v, want InvalidArgument with %q", name, err, tc.want)
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	r := &Refresher{Retry: time.Second, MaxRetry: 10 * time.Second}
	for failures, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		for range 20 {
			if d := r.backoff(failures); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", failures, d, want/2, want)
			}
		}
	}
	if d := r.backoff(1000); d > 10*time.Second {
		t.Errorf("backoff(1000) = %v, want at most 10s", d)
	}
}

func FuzzParseBundle(f *testing.F) {
	c, _ := specCA(f, "example.com", 1)
	f.Add(specBundle(1, c))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	f.Add([]byte(`{"keys":[{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-256","x":"","y":""}]}`))
	td := spiffeid.RequireTrustDomainFromString("example.com")
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBundle(td, data)
		if err != nil {
			if errkind.Of(err) != errkind.InvalidArgument {
				t.Fatalf("ParseBundle error kind = %v, want InvalidArgument: %v", errkind.Of(err), err)
			}
			return
		}
		if len(b.X509Authorities()) == 0 && len(b.JWTAuthorities()) == 0 {
			t.Fatal("ParseBundle accepted an empty bundle")
		}
	})
}
