// Package remotetest holds test doubles of the remote token services the
// broker's cloud and SaaS providers call — AWS STS, an OAuth 2.0
// authorization server (which Entra ID's token endpoint is) — and a JWT-SVID
// issuer that publishes its keys through Signet's own OIDC discovery
// handler. The fakes speak the services' real wire formats and verify the
// JWT-SVIDs they are given through discovery alone, with coreos/go-oidc, as
// the real services do. Keys are generated when a test starts.
package remotetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/oidcdiscovery"
)

// Issuer signs JWT-SVIDs of trust domain example.org with iss set to its
// URL, and serves OIDC discovery for them over TLS.
type Issuer struct {
	URL    string
	srv    *httptest.Server
	signer jose.Signer
}

// NewIssuer starts an issuer, stopped when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "test-jwt-key"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b := spiffebundle.New(spiffeid.RequireTrustDomainFromString("example.org"))
	if err := b.AddJWTAuthority(kid, key.Public()); err != nil {
		t.Fatal(err)
	}
	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	d, err := oidcdiscovery.New(oidcdiscovery.Config{Issuer: srv.URL, Bundle: func() *spiffebundle.Bundle { return b }, KeyLead: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h = d
	return &Issuer{URL: srv.URL, srv: srv, signer: signer}
}

// SignJWTSVID has the signature of provider.Deps.SignJWTSVID.
func (i *Issuer) SignJWTSVID(_ context.Context, subject spiffeid.ID, aud string, ttl time.Duration) (string, error) {
	now := time.Now()
	return jwt.Signed(i.signer).Claims(jwt.Claims{
		Issuer: i.URL, Subject: subject.String(), Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
}

// verifier checks JWT-SVIDs for audience aud through the issuer's
// discovery document, as a relying party configured with its URL does.
type verifier struct {
	v      *oidc.IDTokenVerifier
	client *http.Client
}

func (i *Issuer) verifier(t testing.TB, aud string) *verifier {
	t.Helper()
	ctx := oidc.ClientContext(context.Background(), i.srv.Client())
	p, err := oidc.NewProvider(ctx, i.URL)
	if err != nil {
		t.Fatalf("discover %s: %v", i.URL, err)
	}
	return &verifier{v: p.Verifier(&oidc.Config{ClientID: aud}), client: i.srv.Client()}
}

// verify returns the token's subject, or an error the way a relying party
// words it.
func (v *verifier) verify(ctx context.Context, token string) (string, error) {
	idt, err := v.v.Verify(oidc.ClientContext(ctx, v.client), token)
	if err != nil {
		return "", err
	}
	return idt.Subject, nil
}
