package ca

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// jwtHeader decodes a compact JWS's protected header.
func jwtHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	return decodeSegment(t, tok, 0)
}

func decodeSegment(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3 (JWS compact)", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// validateJWT checks tok with go-spiffe against b's JWT authorities, for
// audience aud, at the real current time.
func validateJWT(t testing.TB, tok string, b jwtbundle.Source, aud string) *jwtsvid.SVID {
	t.Helper()
	svid, err := jwtsvid.ParseAndValidate(tok, b, []string{aud})
	if err != nil {
		t.Fatalf("jwtsvid.ParseAndValidate() = %v", err)
	}
	return svid
}

// verifyJWTAt checks tok's signature against b and its claims at now (a
// simulated time, which jwtsvid.ParseAndValidate cannot take).
func verifyJWTAt(tok string, b jwtbundle.Source, aud string, now time.Time) error {
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		return err
	}
	jb, err := b.GetJWTBundleForTrustDomain(testTD)
	if err != nil {
		return err
	}
	key, ok := jb.FindJWTAuthority(parsed.Headers[0].KeyID)
	if !ok {
		return errkind.New(errkind.NotFound, "kid %s not in bundle", parsed.Headers[0].KeyID)
	}
	var c jwt.Claims
	if err := parsed.Claims(key, &c); err != nil {
		return err
	}
	return c.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{aud}, Time: now}, 0)
}

func TestSignJWTSVID(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(c *Config) { c.Now = nil }) // jwtsvid validates at time.Now
	start := time.Now()
	tok, exp, err := e.m.SignJWTSVID(ctx, JWTParams{ID: workload, Audience: []string{"spiffe://example.org/reports"}, TTL: 5 * time.Minute})
	if err != nil {
		t.Fatalf("SignJWTSVID() = %v", err)
	}
	svid := validateJWT(t, tok, e.bundle(t), "spiffe://example.org/reports")
	if svid.ID != workload {
		t.Errorf("sub = %s, want %s", svid.ID, workload)
	}
	if !slices.Equal(svid.Audience, []string{"spiffe://example.org/reports"}) {
		t.Errorf("aud = %q", svid.Audience)
	}
	if !svid.Expiry.Equal(exp) {
		t.Errorf("exp claim = %s, returned expiry %s", svid.Expiry, exp)
	}
	if d := exp.Sub(start); d < 5*time.Minute-time.Second || d > 5*time.Minute+time.Second {
		t.Errorf("exp - now = %s, want 5m", d)
	}

	// Another audience is refused.
	if _, err := jwtsvid.ParseAndValidate(tok, e.bundle(t), []string{"spiffe://example.org/billing"}); err == nil {
		t.Error("jwtsvid.ParseAndValidate(other audience) = nil, want error")
	}

	// Header: alg, kid, typ and nothing else (JWT-SVID section 2).
	h := jwtHeader(t, tok)
	want := map[string]any{"alg": "ES256", "kid": e.active(t, model.AuthorityJWT).ID, "typ": "JWT"}
	if !maps.Equal(h, want) {
		t.Errorf("header = %v, want %v", h, want)
	}
	// Claims: sub, aud, exp, iat, jti.
	c := decodeSegment(t, tok, 1)
	keys := slices.Sorted(maps.Keys(c))
	if !slices.Equal(keys, []string{"aud", "exp", "iat", "jti", "sub"}) {
		t.Errorf("claims = %v, want aud, exp, iat, jti, sub", keys)
	}
	if c["sub"] != workload.String() {
		t.Errorf("sub = %v", c["sub"])
	}
}

func TestSignJWTSVIDMultipleAudiences(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Now = nil })
	tok, _, err := e.m.SignJWTSVID(context.Background(), JWTParams{ID: workload, Audience: []string{"a", "b"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, aud := range []string{"a", "b"} {
		validateJWT(t, tok, e.bundle(t), aud)
	}
	if _, err := jwtsvid.ParseAndValidate(tok, e.bundle(t), []string{"c"}); err == nil {
		t.Error("jwtsvid.ParseAndValidate(aud c) = nil, want error")
	}
}

func TestSignJWTSVIDCappedAtKeyEnd(t *testing.T) {
	// The key is created 23h58m ago, so it ends in two minutes.
	clock := &fakeClock{t: time.Now().Add(-DefaultJWTKeyTTL + 2*time.Minute)}
	e := newEnv(t, func(c *Config) { c.Now = clock.Now })
	clock.Set(time.Now())
	tok, exp, err := e.m.SignJWTSVID(context.Background(), JWTParams{ID: workload, Audience: []string{"a"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	keyEnd := e.m.jwt.Load().notAfter
	if exp.After(keyEnd) || keyEnd.Sub(exp) >= time.Second {
		t.Errorf("exp = %s, want the key's end %s", exp, keyEnd)
	}
	if svid := validateJWT(t, tok, e.bundle(t), "a"); !svid.Expiry.Equal(exp) {
		t.Errorf("exp claim = %s, want %s", svid.Expiry, exp)
	}
}

func TestSignJWTSVIDRejectsParams(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name string
		p    JWTParams
		want string
	}{
		{"no audience", JWTParams{ID: workload, TTL: time.Minute}, "audience is required"},
		{"empty audience", JWTParams{ID: workload, TTL: time.Minute, Audience: []string{"a", ""}}, "empty audience"},
		{"no ttl", JWTParams{ID: workload, Audience: []string{"a"}}, "ttl"},
		{"zero id", JWTParams{Audience: []string{"a"}, TTL: time.Minute}, "required"},
		{"root id", JWTParams{ID: testTD.ID(), Audience: []string{"a"}, TTL: time.Minute}, "no path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.m.SignJWTSVID(context.Background(), tt.p)
			wantKind(t, "SignJWTSVID()", err, errkind.InvalidArgument, tt.want)
		})
	}
}
