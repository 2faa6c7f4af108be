package ci_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/ci"
	"github.com/signet-id/signet/internal/ci/citest"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/tokenapi"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func openStore(t *testing.T) *store.Store {
	st, err := store.Open(t.Context(), store.Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newVerifier(t *testing.T, st *store.Store, issuers map[string]config.OIDCIssuer) *ci.Verifier {
	v, err := ci.New(ci.Config{TrustDomain: td, Issuers: issuers, Replay: st})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func selectorStrings(sub *tokenapi.Subject) []string {
	var out []string
	for _, s := range sub.Selectors {
		out = append(out, s.String())
	}
	return out
}

func TestGitHubAndGitLab(t *testing.T) {
	gh := citest.New(t, func() map[string]any { return citest.GitHubClaims("acme/app", "refs/heads/main") })
	gl := citest.New(t, func() map[string]any { return citest.GitLabClaims("group/proj", "main") })
	v := newVerifier(t, openStore(t), map[string]config.OIDCIssuer{
		"github": {Issuer: gh.URL, Kind: "github", CABundlePath: gh.CAFile},
		"gitlab": {Issuer: gl.URL, Kind: "gitlab", CABundlePath: gl.CAFile, Audience: "https://signet.example.org"},
	})
	ctx := context.Background()

	sub, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, gh.Mint(t, "spiffe://example.org", time.Now(), 5*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main")))
	if err != nil {
		t.Fatalf("github token: %v", err)
	}
	got := selectorStrings(sub)
	for _, want := range []string{"github:repository:acme/app", "github:ref:refs/heads/main", "github:environment:production",
		"github:repository_owner:acme", "github:repository_id:4242", "github:ref_type:branch", "github:event_name:push",
		"github:actor:octocat", "github:runner_environment:github-hosted", "github:sha:e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
		"github:workflow_ref:acme/app/.github/workflows/deploy.yml@refs/heads/main", "github:job_workflow_ref:acme/app/.github/workflows/deploy.yml@refs/heads/main"} {
		if !slices.Contains(got, want) {
			t.Errorf("github selectors %v lack %s", got, want)
		}
	}
	if len(got) != 12 {
		t.Errorf("github selectors = %d %v, want exactly the 12 of the table", len(got), got)
	}
	if sub.Parent.String() != "spiffe://example.org/signet/ci/github" || sub.Detail["repository"] != "acme/app" {
		t.Errorf("subject parent %s detail %v", sub.Parent, sub.Detail)
	}

	sub, err = v.VerifySubject(ctx, tokenapi.TokenTypeJWT, gl.Mint(t, "https://signet.example.org", time.Now(), 5*time.Minute, citest.GitLabClaims("group/proj", "main")))
	if err != nil {
		t.Fatalf("gitlab token: %v", err)
	}
	got = selectorStrings(sub)
	for _, want := range []string{"gitlab:project_path:group/proj", "gitlab:project_id:20", "gitlab:namespace_path:group", "gitlab:ref:main",
		"gitlab:ref_type:branch", "gitlab:ref_protected:true", "gitlab:environment:production", "gitlab:pipeline_source:push", "gitlab:user_login:alice"} {
		if !slices.Contains(got, want) {
			t.Errorf("gitlab selectors %v lack %s", got, want)
		}
	}
	if len(got) != 9 {
		t.Errorf("gitlab selectors = %v, want exactly the 9 of the table", got)
	}
}

func TestGeneric(t *testing.T) {
	is := citest.New(t, nil)
	v := newVerifier(t, openStore(t), map[string]config.OIDCIssuer{
		"corp": {Issuer: is.URL, Kind: "generic", CABundlePath: is.CAFile, Claims: []string{"team", "level"}},
	})
	sub, err := v.VerifySubject(context.Background(), tokenapi.TokenTypeIDToken,
		is.Mint(t, "spiffe://example.org", time.Now(), time.Minute, map[string]any{"sub": "svc-1", "team": "pay", "level": 3, "other": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := selectorStrings(sub); !slices.Equal(got, []string{"corp:sub:svc-1", "corp:claim:team:pay", "corp:claim:level:3"}) {
		t.Errorf("generic selectors = %v", got)
	}
}

func TestRefused(t *testing.T) {
	is := citest.New(t, nil)
	st := openStore(t)
	v := newVerifier(t, st, map[string]config.OIDCIssuer{"github": {Issuer: is.URL, Kind: "github", CABundlePath: is.CAFile}})
	ctx := context.Background()
	aud := "spiffe://example.org"
	claims := citest.GitHubClaims("acme/app", "refs/heads/main")
	now := time.Now()
	hmac := citest.Sign(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "key-1",
		map[string]any{"iss": is.URL, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "sub": "x"})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign := citest.Sign(t, jose.ES256, ecKey, "key-1",
		map[string]any{"iss": is.URL, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "sub": "x"})
	for _, tc := range []struct {
		name, token, code, want string
	}{
		{"expired", is.Mint(t, aud, now.Add(-20*time.Minute), 10*time.Minute, claims), tokenapi.ErrInvalidGrant, "expired"},
		{"other audience", is.Mint(t, "spiffe://other.org", now, time.Minute, claims), tokenapi.ErrInvalidGrant, "audience"},
		{"alg none", citest.Unsigned(map[string]any{"iss": is.URL, "aud": aud, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()}), tokenapi.ErrInvalidGrant, "refused"},
		{"hmac", hmac, tokenapi.ErrInvalidGrant, "refused"},
		{"foreign key, known kid", foreign, tokenapi.ErrInvalidGrant, "refused"},
		{"lives too long", is.Mint(t, aud, now, 2*time.Hour, claims), tokenapi.ErrInvalidGrant, "longer than"},
		{"issued in the future", is.Mint(t, aud, now.Add(10*time.Minute), time.Hour, claims), tokenapi.ErrInvalidGrant, "nbf"},
		{"iat in the future", is.Mint(t, aud, now, time.Hour, map[string]any{"sub": "x", "iat": now.Add(3 * time.Minute).Unix()}), tokenapi.ErrInvalidGrant, "iat is in the future"},
		{"no iat", is.Mint(t, aud, now, time.Minute, map[string]any{"sub": "x", "iat": nil}), tokenapi.ErrInvalidGrant, "iat"},
		{"not a jwt", "hello", tokenapi.ErrInvalidRequest, "not a signed JWT"},
		{"payload not json", "a.bm90IGpzb24.c", tokenapi.ErrInvalidRequest, "JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, tc.token)
			oe, ok := err.(*tokenapi.Error)
			if !ok || oe.Code != tc.code || !strings.Contains(oe.Description, tc.want) {
				t.Fatalf("VerifySubject = %v, want %s mentioning %q", err, tc.code, tc.want)
			}
		})
	}
	t.Run("other issuer is not mine", func(t *testing.T) {
		other := citest.New(t, nil)
		if _, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, other.Mint(t, aud, now, time.Minute, claims)); err != tokenapi.ErrNotMine {
			t.Fatalf("VerifySubject(unconfigured issuer) = %v, want ErrNotMine", err)
		}
	})
	t.Run("replay", func(t *testing.T) {
		tok := is.Mint(t, aud, now, time.Minute, claims)
		if _, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, tok); err != nil {
			t.Fatal(err)
		}
		// A second verifier on the same store stands for another replica.
		v2 := newVerifier(t, st, map[string]config.OIDCIssuer{"github": {Issuer: is.URL, Kind: "github", CABundlePath: is.CAFile}})
		for _, vv := range []*ci.Verifier{v, v2} {
			_, err := vv.VerifySubject(ctx, tokenapi.TokenTypeIDToken, tok)
			if oe, ok := err.(*tokenapi.Error); !ok || oe.Code != tokenapi.ErrInvalidGrant || !strings.Contains(oe.Description, "already used") {
				t.Fatalf("second use = %v, want invalid_grant already used", err)
			}
		}
	})
}

func TestKeyRotationRefetch(t *testing.T) {
	is := citest.New(t, nil)
	var skew atomic.Int64 // the verifier's clock runs this far ahead
	v, err := ci.New(ci.Config{TrustDomain: td, Replay: openStore(t),
		Issuers: map[string]config.OIDCIssuer{"g": {Issuer: is.URL, Kind: "generic", CABundlePath: is.CAFile}},
		Now:     func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mint := func() string {
		return is.Mint(t, "spiffe://example.org", time.Now(), 5*time.Minute, map[string]any{"sub": "x"})
	}
	for range 3 {
		if _, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, mint()); err != nil {
			t.Fatal(err)
		}
	}
	if n := is.JWKSHits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for 3 tokens, want 1 (cached)", n)
	}
	// A token of a new key right after a fetch: the refetch is
	// rate-limited, so the token is refused without a request.
	is.Rotate(t)
	if _, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, mint()); err == nil {
		t.Fatal("token of a new key verified within the refetch interval")
	}
	if n := is.JWKSHits.Load(); n != 1 {
		t.Fatalf("JWKS refetched %d times within the interval, want rate-limited", n-1)
	}
	// Past the interval, the unknown kid makes the set refetch once.
	skew.Store(int64(11 * time.Second))
	if _, err := v.VerifySubject(ctx, tokenapi.TokenTypeIDToken, mint()); err != nil {
		t.Fatalf("token of the new key after the interval: %v", err)
	}
	if n := is.JWKSHits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

func TestKeysUnavailable(t *testing.T) {
	is := citest.New(t, nil)
	v := newVerifier(t, openStore(t), map[string]config.OIDCIssuer{"g": {Issuer: is.URL, Kind: "generic"}}) // no CA bundle: TLS fails
	_, err := v.VerifySubject(context.Background(), tokenapi.TokenTypeIDToken, is.Mint(t, "spiffe://example.org", time.Now(), time.Minute, map[string]any{"sub": "x"}))
	if oe, ok := err.(*tokenapi.Error); !ok || oe.Code != tokenapi.ErrTemporarilyUnavailable || !strings.Contains(oe.Description, "keys of issuer g") {
		t.Fatalf("VerifySubject with unreachable keys = %v, want temporarily_unavailable naming the issuer", err)
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := ci.New(ci.Config{TrustDomain: td, Issuers: map[string]config.OIDCIssuer{
		"Bad Name": {Issuer: "https://x"},
		"plain":    {Issuer: "http://x.example", Kind: "generic"},
		"nokind":   {Issuer: "https://ci.example"},
		"badkind":  {Issuer: "https://ci2.example", Kind: "jenkins"},
		"github":   {Issuer: "https://token.actions.githubusercontent.com"},
		"jwks":     {Issuer: "https://ci3.example", Kind: "generic", JWKSURL: "http://keys"},
		"claims":   {Issuer: "https://ci4.example", Kind: "generic", Claims: []string{"bad claim"}},
		"ca":       {Issuer: "https://ci5.example", Kind: "generic", CABundlePath: "/nonexistent/ca.pem"},
	}})
	if err == nil {
		t.Fatal("ci.New accepted bad issuers")
	}
	for _, want := range []string{"oidc_issuers.Bad Name", "oidc_issuers.plain.issuer", "oidc_issuers.nokind.kind is required",
		"oidc_issuers.badkind.kind \"jenkins\"", "oidc_issuers.jwks.jwks_url", "oidc_issuers.claims.claims", "oidc_issuers.ca.ca_bundle_path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "oidc_issuers.github") {
		t.Errorf("github's kind was not guessed: %v", err)
	}
}

// FuzzVerifySubject: any subject token is refused with an OAuth error, or
// passed on (ErrNotMine); never a panic, never accepted unsigned.
func FuzzVerifySubject(f *testing.F) {
	is := citest.New(f, nil)
	st, err := store.Open(context.Background(), store.Config{DSN: filepath.Join(f.TempDir(), "signet.db")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	v, err := ci.New(ci.Config{TrustDomain: td, Replay: st, Issuers: map[string]config.OIDCIssuer{"g": {Issuer: is.URL, Kind: "generic", CABundlePath: is.CAFile}}})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	f.Add(citest.Unsigned(map[string]any{"iss": is.URL, "aud": "spiffe://example.org", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add(strings.Repeat("A", 100))
	f.Fuzz(func(t *testing.T, tok string) {
		sub, err := v.VerifySubject(context.Background(), tokenapi.TokenTypeIDToken, tok)
		if err == nil {
			t.Fatalf("accepted a fuzzed token: %+v", sub)
		}
		if _, ok := err.(*tokenapi.Error); !ok && err != tokenapi.ErrNotMine {
			t.Fatalf("VerifySubject = %T %v, want an OAuth error or ErrNotMine", err, err)
		}
	})
}
