package adminapi

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseTokenCursor(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	c, err := parseTokenCursor(fmt.Sprintf("%d.%s", int64(1700000000123456789), hash))
	if err != nil || !c.CreatedAt.Equal(time.Unix(0, 1700000000123456789)) || len(c.Hash) != 32 {
		t.Errorf("parseTokenCursor(valid) = %+v, %v", c, err)
	}
	if c, err := parseTokenCursor(""); err != nil || len(c.Hash) != 0 {
		t.Errorf("parseTokenCursor(\"\") = %+v, %v; want the start", c, err)
	}
	for _, tok := range []string{"x", "1." + hash[:10], "x." + hash, "1." + strings.Repeat("zz", 32), "1" + hash} {
		if _, err := parseTokenCursor(tok); err == nil || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("parseTokenCursor(%q) = %v, want an error naming page_token", tok, err)
		}
	}
	for _, tt := range []struct {
		size int32
		want int
	}{{0, defaultPageSize}, {5, 5}, {maxPageSize + 1, maxPageSize}} {
		if got, err := pageLimit(tt.size); err != nil || got != tt.want {
			t.Errorf("pageLimit(%d) = %d, %v; want %d", tt.size, got, err, tt.want)
		}
	}
	if _, err := pageLimit(-1); err == nil || !strings.Contains(err.Error(), "page_size -1") {
		t.Errorf("pageLimit(-1) = %v", err)
	}
}

// FuzzParseTokenCursor: any page token is refused or read as a full
// hash, never a panic.
func FuzzParseTokenCursor(f *testing.F) {
	f.Add("1700000000123456789." + strings.Repeat("ab", 32))
	f.Add("")
	f.Add("-1.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseTokenCursor(tok)
		if err == nil && tok != "" && len(c.Hash) != 32 {
			t.Errorf("parseTokenCursor(%q) = a %d-byte hash, want 32", tok, len(c.Hash))
		}
	})
}

func TestParseAuthorityCursor(t *testing.T) {
	c, err := parseAuthorityCursor("x509.1700000000000000000.ab12")
	if err != nil || c.Kind != "x509" || c.ID != "ab12" || c.NotBefore.UnixNano() != 1700000000000000000 {
		t.Errorf("parseAuthorityCursor(valid) = %+v, %v", c, err)
	}
	for _, tok := range []string{"x509", "x509.1", "rsa.1.a", "x509.z.a", "jwt.1."} {
		if _, err := parseAuthorityCursor(tok); err == nil || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("parseAuthorityCursor(%q) = %v, want an error naming page_token", tok, err)
		}
	}
}

// FuzzParseAuthorityCursor: any page token is refused or read with a known
// kind and an ID, never a panic.
func FuzzParseAuthorityCursor(f *testing.F) {
	f.Add("x509.1700000000000000000.ab12")
	f.Add("jwt.0.kid-1")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseAuthorityCursor(tok)
		if err == nil && tok != "" && (c.ID == "" || (c.Kind != "x509" && c.Kind != "jwt")) {
			t.Errorf("parseAuthorityCursor(%q) = %+v", tok, c)
		}
	})
}
