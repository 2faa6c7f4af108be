package workload

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// bundleSource serves bundles and no SVIDs: all ValidateJWTSVID needs.
type bundleSource []*spiffebundle.Bundle

func (bundleSource) Ready() bool                           { return true }
func (bundleSource) X509SVIDs([]model.Selector) []X509SVID { return nil }
func (bundleSource) FetchJWTSVIDs(context.Context, []model.Selector, spiffeid.ID, []string) ([]JWTSVID, error) {
	return nil, nil
}
func (b bundleSource) Bundles() []*spiffebundle.Bundle { return b }
func (bundleSource) Changed() <-chan struct{}          { return nil }

// FuzzValidateJWTSVID feeds arbitrary tokens and audiences to
// ValidateJWTSVID: it must never panic, must reject what it cannot validate
// with InvalidArgument, and must return a SPIFFE ID and claims otherwise.
func FuzzValidateJWTSVID(f *testing.F) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	b := spiffebundle.New(td)
	b.SetJWTAuthorities(map[string]crypto.PublicKey{"k1": key.Public()})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		f.Fatal(err)
	}
	sign := func(claims any) string {
		tok, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	exp := jwt.NewNumericDate(time.Now().Add(24 * time.Hour))
	f.Add(sign(jwt.Claims{Subject: "spiffe://example.org/web", Audience: jwt.Audience{"a"}, Expiry: exp}), "a")
	f.Add(sign(map[string]any{"sub": "spiffe://example.org/web", "aud": "a", "exp": exp,
		"nested": map[string]any{"n": 1.5, "list": []any{nil, true, "x"}}}), "a")
	f.Add(sign(jwt.Claims{Subject: "spiffe://other.org/web", Audience: jwt.Audience{"a"}, Expiry: exp}), "a")
	f.Add(sign(jwt.Claims{Subject: "not a spiffe id", Audience: jwt.Audience{"a"}, Expiry: exp}), "a")
	f.Add("a.b.c", "a")
	f.Add("", "")

	a := &api{s: &Server{src: bundleSource{b}, log: slog.New(slog.DiscardHandler)}}
	f.Fuzz(func(t *testing.T, token, audience string) {
		resp, err := a.ValidateJWTSVID(context.Background(), &workloadpb.ValidateJWTSVIDRequest{Svid: token, Audience: audience})
		if err != nil {
			if !errkind.Is(err, errkind.InvalidArgument) {
				t.Fatalf("ValidateJWTSVID(%q, %q) = %v, want InvalidArgument", token, audience, err)
			}
			return
		}
		if _, err := spiffeid.FromString(resp.SpiffeId); err != nil || resp.Claims == nil {
			t.Fatalf("ValidateJWTSVID(%q, %q) = %v with claims %v: want a SPIFFE ID and claims", token, audience, resp.SpiffeId, resp.Claims)
		}
	})
}
