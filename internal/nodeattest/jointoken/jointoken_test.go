package jointoken_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/nodeattesttest"
)

func TestConformance(t *testing.T) {
	nodeattesttest.Run(t, func(t *testing.T) nodeattest.Attestor {
		tok, err := jointoken.Generate()
		if err != nil {
			t.Fatal(err)
		}
		a, err := jointoken.New(tok)
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok, err := jointoken.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != jointoken.TokenLen {
			t.Fatalf("Generate() = %d chars, want %d", len(tok), jointoken.TokenLen)
		}
		if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("Generate() = %q, not URL-safe", tok)
		}
		if err := jointoken.Check(tok); err != nil {
			t.Fatalf("Check(Generate()) = %v", err)
		}
		if seen[tok] {
			t.Fatalf("Generate() repeated %q", tok)
		}
		seen[tok] = true
	}
}

func TestHash(t *testing.T) {
	want := sha256.Sum256([]byte("abc"))
	if got := jointoken.Hash("abc"); hex.EncodeToString(got) != hex.EncodeToString(want[:]) {
		t.Errorf("Hash(%q) = %x, want %x", "abc", got, want)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, token string
		ok          bool
	}{
		{"generated-like", "aZ09-_aZ09-_aZ09-_aZ09-_aZ09-_ab", true},
		{"empty", "", false},
		{"space", "abc def", false},
		{"newline", "abc\n", false},
		{"non-ascii", "tökén", false},
		{"too long", strings.Repeat("a", jointoken.MaxLen+1), false},
		{"max", strings.Repeat("a", jointoken.MaxLen), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := jointoken.Check(tc.token)
			if (err == nil) != tc.ok {
				t.Fatalf("Check(%q) = %v, want ok=%v", tc.token, err, tc.ok)
			}
			if err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("Check error %q contains the token", err)
			}
			if _, err := jointoken.New(tc.token); (err == nil) != tc.ok {
				t.Errorf("New(%q) error = %v, want ok=%v", tc.token, err, tc.ok)
			}
		})
	}
}

func TestAgentID(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	h := jointoken.Hash("secret-token")
	id, err := jointoken.AgentID(td, h)
	if err != nil {
		t.Fatal(err)
	}
	want := "spiffe://example.org/signet/agent/join_token/" + hex.EncodeToString(h[:16])
	if id.String() != want {
		t.Errorf("AgentID() = %s, want %s", id, want)
	}
	if strings.Contains(id.String(), "secret-token") {
		t.Errorf("AgentID() = %s leaks the token", id)
	}
	if _, err := jointoken.AgentID(td, []byte("short")); err == nil {
		t.Errorf("AgentID(short hash) error = nil, want an error")
	}
}

func TestName(t *testing.T) {
	a, err := jointoken.New("tok")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() != "join_token" {
		t.Errorf("Name() = %q, want join_token", a.Name())
	}
}
