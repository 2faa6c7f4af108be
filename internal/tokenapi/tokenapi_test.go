package tokenapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/errkind"
)

// fakeVerifier claims tokens that start with its prefix.
type fakeVerifier struct{ prefix string }

func (v fakeVerifier) VerifySubject(_ context.Context, typ, tok string) (*Subject, error) {
	if !strings.HasPrefix(tok, v.prefix) {
		return nil, ErrNotMine
	}
	switch strings.TrimPrefix(tok, v.prefix) {
	case "good":
		return &Subject{Kind: SubjectOIDC, Issuer: v.prefix, Claims: map[string]any{"sub": "job"}, Via: typ, ExpiresAt: time.Now().Add(time.Hour)}, nil
	case "expired":
		return &Subject{Kind: SubjectOIDC, Issuer: v.prefix, Via: typ, ExpiresAt: time.Now().Add(-time.Second)}, nil
	case "panic":
		panic("boom")
	}
	return nil, errkind.New(errkind.Unauthenticated, "subject_token: signature does not verify")
}

// echo issues a token naming the subject, or fails as the resource says.
func echo(_ context.Context, req *Request, sub *Subject) (*Response, error) {
	switch strings.Join(req.Resource, ",") {
	case "deny":
		return nil, errkind.New(errkind.PermissionDenied, "resource deny: not for you")
	case "internal":
		return nil, errors.New("database on fire")
	case "oauth":
		return nil, Errorf(ErrInvalidTarget, "resource oauth: unknown credential")
	}
	peer := ""
	if req.Peer != nil {
		peer = req.Peer.ID.String()
	}
	return &Response{AccessToken: sub.Name(), ExpiresAt: time.Now().Add(time.Minute), Extra: map[string]any{"peer": peer}}, nil
}

type pki struct {
	bundle *x509bundle.Bundle
	client tls.Certificate
}

func newPKI(t *testing.T, id string) pki {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{spiffeid.RequireFromString(id).URL()}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pki{bundle: x509bundle.FromX509Authorities(td, []*x509.Certificate{caCert}),
		client: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func startEndpoint(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(New(cfg))
	srv.Config = edge.HTTPServer(srv.Config.Handler, MaxBodySize)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// withCert is a client of srv that presents cert.
func withCert(srv *httptest.Server, cert tls.Certificate) *http.Client {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &http.Client{Transport: tr}
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := c.Post(u+Path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	return resp.StatusCode, resp.Header, body
}

func TestHandler(t *testing.T) {
	p := newPKI(t, "spiffe://example.org/workload")
	srv := startEndpoint(t, Config{
		Verifiers: []SubjectVerifier{fakeVerifier{"a:"}, fakeVerifier{"b:"}},
		Issuers:   map[string]Issuer{"urn:test:echo": IssuerFunc(echo)},
		Peers:     p.bundle,
	})
	plain := srv.Client()
	mtls := withCert(srv, p.client)

	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {GrantTokenExchange}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	tok := func(token string, kv ...string) url.Values {
		return form(append([]string{"subject_token", token, "subject_token_type", TokenTypeIDToken, "requested_token_type", "urn:test:echo"}, kv...)...)
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		form   url.Values
		status int
		code   string // error code; "" = success
		want   string // access_token, or a fragment of the error description
	}{
		{"first verifier", plain, tok("a:good"), 200, "", "a::job"},
		{"second verifier", plain, tok("b:good"), 200, "", "b::job"},
		{"mtls subject", mtls, form("requested_token_type", "urn:test:echo"), 200, "", "spiffe://example.org/workload"},
		{"token over mtls", mtls, tok("a:good"), 200, "", "a::job"},
		{"no subject", plain, form("requested_token_type", "urn:test:echo"), 400, ErrInvalidRequest, "subject_token is required"},
		{"no requested type", plain, form("subject_token", "a:good", "subject_token_type", TokenTypeJWT), 400, ErrInvalidRequest, "requested_token_type is required: use one of urn:test:echo"},
		{"unknown requested type", plain, tok("a:good", "requested_token_type", "x"), 400, ErrInvalidRequest, `"requested_token_type" is sent 2 times`},
		{"unserved requested type", plain, form("subject_token", "a:good", "subject_token_type", TokenTypeJWT, "requested_token_type", "urn:x"), 400, ErrInvalidRequest, `requested_token_type "urn:x" is not served`},
		{"bad token", plain, tok("a:forged"), 400, ErrInvalidGrant, "signature does not verify"},
		{"untrusted issuer", plain, tok("c:good"), 400, ErrInvalidGrant, "not from an issuer this server trusts"},
		{"unknown token type", plain, form("subject_token", "c:x", "subject_token_type", "urn:weird", "requested_token_type", "urn:test:echo"), 400, ErrInvalidRequest, `subject_token_type "urn:weird" is not accepted`},
		{"expired subject", plain, tok("a:expired"), 400, ErrInvalidGrant, "expired"},
		{"issuer denies", plain, tok("a:good", "resource", "deny"), 400, ErrUnauthorizedClient, "not for you"},
		{"issuer oauth error", plain, tok("a:good", "resource", "oauth"), 400, ErrInvalidTarget, "unknown credential"},
		{"internal error hidden", plain, tok("a:good", "resource", "internal"), 500, ErrServerError, "internal error (id="},
		{"panic contained", plain, tok("a:panic"), 500, ErrServerError, "internal error (id="},
		{"wrong grant", plain, url.Values{"grant_type": {"password"}}, 400, ErrUnsupportedGrantType, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := post(t, tc.client, srv.URL, tc.form)
			if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("headers = %v, want Cache-Control no-store and JSON", hdr)
			}
			if status != tc.status {
				t.Errorf("status = %d, want %d (%v)", status, tc.status, body)
			}
			if tc.code == "" {
				if body["access_token"] != tc.want || body["token_type"] != "N_A" || body["issued_token_type"] != "urn:test:echo" {
					t.Errorf("body = %v, want access_token %q, token_type N_A", body, tc.want)
				}
				if e, _ := body["expires_in"].(float64); e < 50 || e > 60 {
					t.Errorf("expires_in = %v, want about 60", body["expires_in"])
				}
				return
			}
			desc, _ := body["error_description"].(string)
			if body["error"] != tc.code || !strings.Contains(desc, tc.want) {
				t.Errorf("body = %v, want error %s with %q", body, tc.code, tc.want)
			}
		})
	}

	t.Run("mtls peer seen with token", func(t *testing.T) {
		_, _, body := post(t, mtls, srv.URL, tok("a:good"))
		if body["peer"] != "spiffe://example.org/workload" {
			t.Errorf("peer = %v, want the client's SPIFFE ID", body["peer"])
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		resp, err := plain.Post(srv.URL+Path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != 415 || body["error"] != ErrInvalidRequest || !strings.Contains(body["error_description"], "Content-Type") {
			t.Errorf("status %d body %v, want 415 invalid_request naming Content-Type", resp.StatusCode, body)
		}
	})
	t.Run("oversized body", func(t *testing.T) {
		resp, err := plain.Post(srv.URL+Path, "application/x-www-form-urlencoded", strings.NewReader(exchange+"&x="+strings.Repeat("a", 2*MaxBodySize)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d, want 413", resp.StatusCode)
		}
	})
	t.Run("get refused", func(t *testing.T) {
		resp, err := plain.Get(srv.URL + Path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Errorf("status %d Allow %q, want 405 and Allow POST", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}

func TestHandlerUntrustedClientCert(t *testing.T) {
	trusted := newPKI(t, "spiffe://example.org/a")
	other := newPKI(t, "spiffe://example.org/a") // same ID, another CA
	srv := startEndpoint(t, Config{Issuers: map[string]Issuer{"urn:test:echo": IssuerFunc(echo)}, Peers: trusted.bundle})
	c := withCert(srv, other.client)
	status, hdr, body := post(t, c, srv.URL, url.Values{"grant_type": {GrantTokenExchange}, "requested_token_type": {"urn:test:echo"}})
	if status != 401 || body["error"] != ErrInvalidClient || hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("status %d body %v, want 401 invalid_client", status, body)
	}
}

func TestHandlerRateLimit(t *testing.T) {
	srv := startEndpoint(t, Config{Issuers: map[string]Issuer{"urn:test:echo": IssuerFunc(echo)}, Limit: edge.NewPeerLimiter(0.001, 2)})
	var last int
	for range 3 {
		last, _, _ = post(t, srv.Client(), srv.URL, url.Values{"grant_type": {GrantTokenExchange}})
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("third request: status %d, want 429", last)
	}
}

// swapSource is an x509bundle.Source whose bundle the test replaces.
type swapSource struct {
	mu sync.Mutex
	b  *x509bundle.Bundle
}

func (s *swapSource) set(b *x509bundle.Bundle) { s.mu.Lock(); s.b = b; s.mu.Unlock() }

func (s *swapSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.GetX509BundleForTrustDomain(td)
}

// TestHandlerPeerCache checks that a client certificate verified once on
// a keep-alive connection stops being accepted on that connection as soon
// as the bundle no longer holds its CA, or it has expired.
func TestHandlerPeerCache(t *testing.T) {
	p := newPKI(t, "spiffe://example.org/a")
	other := newPKI(t, "spiffe://example.org/b")
	src := &swapSource{b: p.bundle}
	var mu sync.Mutex
	now := time.Now()
	h := New(Config{Issuers: map[string]Issuer{"urn:test:echo": IssuerFunc(echo)}, Peers: src,
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	srv := httptest.NewUnstartedServer(h)
	srv.Config = edge.HTTPServer(srv.Config.Handler, MaxBodySize)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := withCert(srv, p.client) // one connection, kept alive
	form := url.Values{"grant_type": {GrantTokenExchange}, "requested_token_type": {"urn:test:echo"}}
	want := func(step string, status int) {
		t.Helper()
		got, _, body := post(t, c, srv.URL, form)
		if got != status {
			t.Fatalf("%s: status %d (%v), want %d", step, got, body, status)
		}
		if status == 200 && body["peer"] != "spiffe://example.org/a" {
			t.Fatalf("%s: peer %v, want spiffe://example.org/a", step, body["peer"])
		}
	}
	want("first request", 200)
	want("second request, remembered", 200)
	h.peers.mu.Lock()
	n := len(h.peers.peers)
	h.peers.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d verified peers remembered, want 1", n)
	}
	// A bundle with the same authority, rebuilt: still the same CA.
	src.set(x509bundle.FromX509Authorities(p.bundle.TrustDomain(), p.bundle.X509Authorities()))
	want("same authorities in a new bundle", 200)
	src.set(other.bundle) // the CA is gone from the trust domain's bundle
	want("CA removed from the bundle", 401)
	src.set(p.bundle)
	want("CA back", 200)
	mu.Lock()
	now = now.Add(2 * time.Hour) // past the leaf's NotAfter
	mu.Unlock()
	want("certificate expired", 401)
}
