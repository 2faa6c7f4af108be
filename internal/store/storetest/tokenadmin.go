package storetest

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// tokenAdminTests cover the operator's view of join tokens: listing them
// (never the secrets) and revoking one by its ref.
var tokenAdminTests = map[string]func(t *testing.T, s *store.Store){
	"ListUnexpired":  testTokenListUnexpired,
	"RevokeByPrefix": testTokenRevokeByPrefix,
	"RevokeErrors":   testTokenRevokeErrors,
}

func testTokenListUnexpired(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	must(t, "CreateJoinToken", s.CreateJoinToken(ctx, store.JoinToken{Hash: tokenHash("a"), SPIFFEID: id("spiffe://example.org/node/a"),
		ExpiresAt: epoch.Add(time.Hour), CreatedAt: epoch}))
	must(t, "CreateJoinToken", s.CreateJoinToken(ctx, store.JoinToken{Hash: tokenHash("b"), ExpiresAt: epoch.Add(2 * time.Hour),
		CreatedAt: epoch.Add(time.Second)}))
	must(t, "CreateJoinToken", s.CreateJoinToken(ctx, store.JoinToken{Hash: tokenHash("old"), ExpiresAt: epoch.Add(-time.Minute),
		CreatedAt: epoch.Add(-time.Hour)}))
	got, err := s.ListJoinTokens(ctx, epoch)
	must(t, "ListJoinTokens", err)
	if len(got) != 2 || string(got[0].Hash) != string(tokenHash("a")) || string(got[1].Hash) != string(tokenHash("b")) {
		t.Fatalf("ListJoinTokens() = %v, want tokens a and b, oldest first", got)
	}
	if got[0].SPIFFEID != id("spiffe://example.org/node/a") || !got[1].SPIFFEID.IsZero() || got[0].ExpiresAt.Unix() != epoch.Add(time.Hour).Unix() {
		t.Errorf("ListJoinTokens() fields = %+v", got)
	}
	// A page at a time, after the last token of the previous page.
	page, err := s.ListJoinTokensPage(ctx, epoch, store.JoinTokenCursor{}, 1)
	must(t, "ListJoinTokensPage(first)", err)
	if len(page) != 1 || string(page[0].Hash) != string(tokenHash("a")) {
		t.Fatalf("ListJoinTokensPage(first, 1) = %v, want token a", page)
	}
	page, err = s.ListJoinTokensPage(ctx, epoch, store.JoinTokenCursor{CreatedAt: page[0].CreatedAt, Hash: page[0].Hash}, 1)
	must(t, "ListJoinTokensPage(next)", err)
	if len(page) != 1 || string(page[0].Hash) != string(tokenHash("b")) {
		t.Fatalf("ListJoinTokensPage(after a, 1) = %v, want token b", page)
	}
	if page, _ = s.ListJoinTokensPage(ctx, epoch, store.JoinTokenCursor{CreatedAt: page[0].CreatedAt, Hash: page[0].Hash}, 1); len(page) != 0 {
		t.Errorf("ListJoinTokensPage(after b) = %v, want none", page)
	}
	// Consumed tokens are gone from the list.
	if _, err := s.ConsumeJoinToken(ctx, tokenHash("a"), epoch); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ListJoinTokens(ctx, epoch); len(got) != 1 {
		t.Errorf("after consuming a: ListJoinTokens() = %v", got)
	}
}

func testTokenRevokeByPrefix(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	h := tokenHash("revoke-me")
	must(t, "CreateJoinToken", s.CreateJoinToken(ctx, store.JoinToken{Hash: h, SPIFFEID: id("spiffe://example.org/node/r"), ExpiresAt: epoch.Add(time.Hour)}))
	ref := store.TokenRef(h)
	if ref != hex.EncodeToString(h)[:8] {
		t.Fatalf("TokenRef() = %q", ref)
	}
	got, err := s.RevokeJoinToken(ctx, strings.ToUpper(ref[:6]))
	must(t, "RevokeJoinToken", err)
	if string(got.Hash) != string(h) || got.SPIFFEID != id("spiffe://example.org/node/r") {
		t.Errorf("RevokeJoinToken() = %+v", got)
	}
	if _, err := s.LookupJoinToken(ctx, h, epoch); !errkind.Is(err, errkind.NotFound) {
		t.Errorf("revoked token still there: %v", err)
	}
	if _, err := s.ConsumeJoinToken(ctx, h, epoch); !errkind.Is(err, errkind.NotFound) {
		t.Errorf("revoked token consumed: %v", err)
	}
	recs, err := s.ListAudit(ctx, store.AuditFilter{Action: "token.revoke"})
	must(t, "ListAudit", err)
	if len(recs) != 1 || recs[0].Object != ref || recs[0].Detail["spiffe_id"] != "spiffe://example.org/node/r" {
		t.Errorf("token.revoke audit = %+v", recs)
	}
}

func testTokenRevokeErrors(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	// Find two tokens whose hashes share their first 4 hex digits.
	seen := map[string]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		secret := "t" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + hex.EncodeToString([]byte{byte(i), byte(i >> 8)})
		p := hex.EncodeToString(tokenHash(secret))[:4]
		if other, ok := seen[p]; ok {
			a, b = other, secret
		}
		seen[p] = secret
	}
	for _, sec := range []string{a, b} {
		must(t, "CreateJoinToken", s.CreateJoinToken(ctx, store.JoinToken{Hash: tokenHash(sec), ExpiresAt: epoch.Add(time.Hour)}))
	}
	prefix := hex.EncodeToString(tokenHash(a))[:4]
	for _, tt := range []struct {
		prefix string
		kind   errkind.Kind
		want   string
	}{
		{prefix, errkind.InvalidArgument, "matches 2 tokens"},
		{"abc", errkind.InvalidArgument, "want 4 to 64 hex digits"},
		{"zzzz", errkind.InvalidArgument, "hex digits"},
		{"", errkind.InvalidArgument, "hex digits"},
	} {
		_, err := s.RevokeJoinToken(ctx, tt.prefix)
		if !errkind.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RevokeJoinToken(%q) = %v, want %v containing %q", tt.prefix, err, tt.kind, tt.want)
		}
	}
	// A prefix that matches nothing.
	var none string
	for _, c := range []string{"0000", "1111", "2222", "3333", "4444", "5555"} {
		if !strings.HasPrefix(hex.EncodeToString(tokenHash(a)), c) && !strings.HasPrefix(hex.EncodeToString(tokenHash(b)), c) {
			none = c
			break
		}
	}
	if _, err := s.RevokeJoinToken(ctx, none); !errkind.Is(err, errkind.NotFound) {
		t.Errorf("RevokeJoinToken(%q) = %v, want NotFound", none, err)
	}
	// The ambiguous prefix deleted nothing.
	if got, _ := s.ListJoinTokens(ctx, epoch); len(got) != 2 {
		t.Errorf("after refused revokes: %d tokens, want 2", len(got))
	}
}
