package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

// jwtMinter mints real ES256 JWT-SVIDs, as the server would.
type jwtMinter struct {
	signer jose.Signer
}

func newJWTMinter(t testing.TB) *jwtMinter {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return &jwtMinter{signer: s}
}

func (m *jwtMinter) mint(id spiffeid.ID, audience []string, exp time.Time) (string, error) {
	return jwt.Signed(m.signer).Claims(jwt.Claims{
		Subject:  id.String(),
		Audience: audience,
		Expiry:   jwt.NewNumericDate(exp),
		IssuedAt: jwt.NewNumericDate(time.Now()),
	}).Serialize()
}

func TestFetchJWTSVIDs(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	minter := newJWTMinter(t)
	calls := 0
	var fail error
	ids := map[string]spiffeid.ID{}
	c.signJWT = func(ctx context.Context, entryID string, aud []string) (string, time.Time, error) {
		calls++
		if fail != nil {
			return "", time.Time{}, fail
		}
		exp := clock.Now().Add(10 * time.Minute)
		tok, err := minter.mint(ids[entryID], aud, exp)
		return tok, exp, err
	}
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{
		pe("a", "/a", "unix:uid:1"), pe("b", "/b", "unix:uid:1", "unix:gid:1"), pe("c", "/c", "unix:uid:2"),
	}})
	for _, id := range []string{"a", "b", "c"} {
		ids[id] = spiffeid.RequireFromString("spiffe://example.org/" + id)
	}
	ctx := context.Background()
	caller := sels("unix:gid:1", "unix:uid:1")

	got, err := c.FetchJWTSVIDs(ctx, caller, spiffeid.ID{}, []string{"aud1"})
	if err != nil || len(got) != 2 || calls != 2 {
		t.Fatalf("FetchJWTSVIDs(all) = %d svids, %v after %d calls; want 2 svids from 2 calls", len(got), err, calls)
	}
	if got[0].ID != ids["a"] || got[1].ID != ids["b"] || got[0].Token == "" {
		t.Errorf("FetchJWTSVIDs(all) ids = %s, %s; want a, b", got[0].ID, got[1].ID)
	}

	// Only the requested ID; cached in the first half of the lifetime.
	got, err = c.FetchJWTSVIDs(ctx, caller, ids["b"], []string{"aud1"})
	if err != nil || len(got) != 1 || got[0].ID != ids["b"] || calls != 2 {
		t.Fatalf("FetchJWTSVIDs(b, cached) = %v, %v after %d calls; want b from cache", got, err, calls)
	}
	// The audience set is the key: order and duplicates do not matter.
	if _, err := c.FetchJWTSVIDs(ctx, caller, ids["b"], []string{"x", "aud1"}); err != nil || calls != 3 {
		t.Fatalf("FetchJWTSVIDs(new audience) = %v after %d calls, want a new token", err, calls)
	}
	if _, err := c.FetchJWTSVIDs(ctx, caller, ids["b"], []string{"aud1", "x", "x"}); err != nil || calls != 3 {
		t.Fatalf("FetchJWTSVIDs(same audience set) = %v after %d calls, want the cached token", err, calls)
	}
	// An entry the caller does not match yields nothing.
	if got, err := c.FetchJWTSVIDs(ctx, caller, ids["c"], []string{"aud1"}); err != nil || len(got) != 0 {
		t.Errorf("FetchJWTSVIDs(unmatched id) = %v, %v; want nothing", got, err)
	}

	// Past half-life a new token is minted.
	clock.Add(5 * time.Minute)
	if _, err := c.FetchJWTSVIDs(ctx, caller, ids["a"], []string{"aud1"}); err != nil || calls != 4 {
		t.Fatalf("FetchJWTSVIDs(past half-life) = %v after %d calls, want a new token", err, calls)
	}

	// Server unavailable: a cached, unexpired token is served.
	fail = errkind.New(errkind.Unavailable, "server down")
	clock.Add(6 * time.Minute)
	got, err = c.FetchJWTSVIDs(ctx, caller, ids["a"], []string{"aud1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("FetchJWTSVIDs(server down, cached) = %v, %v; want the cached token", got, err)
	}
	// ... but not an expired one, and not when the server refuses.
	if _, err := c.FetchJWTSVIDs(ctx, caller, ids["b"], []string{"aud1"}); !errkind.Is(err, errkind.Unavailable) {
		t.Errorf("FetchJWTSVIDs(server down, expired) = %v, want Unavailable", err)
	}
	fail = errkind.New(errkind.PermissionDenied, "not yours")
	clock.Add(-6 * time.Minute)
	if got, err := c.FetchJWTSVIDs(ctx, caller, ids["b"], []string{"x", "aud1"}); !errkind.Is(err, errkind.PermissionDenied) {
		t.Errorf("FetchJWTSVIDs(refused) = %v, %v; want PermissionDenied, not the cached token", got, err)
	}

	if _, err := c.FetchJWTSVIDs(ctx, caller, spiffeid.ID{}, nil); !errkind.Is(err, errkind.InvalidArgument) {
		t.Errorf("FetchJWTSVIDs(no audience) = %v, want InvalidArgument", err)
	}

	// Sweeping drops tokens of deleted entries and expired tokens.
	mustApply(t, c, &agentv1.SyncResponse{Revision: 2, EntryIds: []string{"a"}, EntryIdsSet: true})
	clock.Add(time.Minute)
	c.sweep(clock.Now())
	for k := range c.jwts {
		if k.entryID != "a" {
			t.Errorf("token of deleted entry %s still cached", k.entryID)
		}
	}
}

func TestFetchJWTSVIDsRejectsBadTokens(t *testing.T) {
	ca := newTestCA(t, "example.org")
	clock := newFakeClock()
	c := newTestCache(t, ca, clock)
	minter := newJWTMinter(t)
	mustApply(t, c, &agentv1.SyncResponse{Revision: 1, Full: true, Entries: []*commonv1.Entry{pe("a", "/a", "unix:uid:1")}})
	for _, tc := range []struct {
		name string
		id   string
		aud  []string
	}{
		{"other subject", "spiffe://example.org/b", []string{"aud"}},
		{"other audience", "spiffe://example.org/a", []string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.signJWT = func(ctx context.Context, entryID string, aud []string) (string, time.Time, error) {
				exp := clock.Now().Add(time.Minute)
				tok, err := minter.mint(spiffeid.RequireFromString(tc.id), tc.aud, exp)
				return tok, exp, err
			}
			if got, err := c.FetchJWTSVIDs(context.Background(), sels("unix:uid:1"), spiffeid.ID{}, []string{"aud"}); err == nil {
				t.Errorf("FetchJWTSVIDs(%s) = %v, want an error", tc.name, got)
			}
		})
	}
}

func TestAudienceKey(t *testing.T) {
	if audienceKey([]string{"a", "b"}) == audienceKey([]string{"a\x00b"}) ||
		audienceKey([]string{"a", "b"}) == audienceKey([]string{"1:a1:b"}) {
		t.Errorf("audienceKey collides for different audience lists")
	}
	if audienceKey([]string{"b", "a", "a"}) != audienceKey([]string{"a", "b"}) {
		t.Errorf("audienceKey differs for the same audience set")
	}
}
