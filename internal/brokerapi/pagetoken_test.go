package brokerapi

import (
	"strings"
	"testing"
)

func TestParseLeaseCursor(t *testing.T) {
	c, err := parseLeaseCursor("1700000000000000001.lease.with.dots")
	if err != nil || c.ID != "lease.with.dots" || c.IssuedAt.UnixNano() != 1700000000000000001 {
		t.Errorf("parseLeaseCursor(valid) = %+v, %v", c, err)
	}
	for _, tok := range []string{"x", "1.", "z.id", "1." + strings.Repeat("a", 129)} {
		if _, err := parseLeaseCursor(tok); err == nil || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("parseLeaseCursor(%q) = %v, want an error naming page_token", tok, err)
		}
	}
}

// FuzzParseLeaseCursor: any page token is refused or read with a bounded
// ID, never a panic.
func FuzzParseLeaseCursor(f *testing.F) {
	f.Add("1700000000000000001.l-1")
	f.Add(".")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseLeaseCursor(tok)
		if err == nil && tok != "" && (c.ID == "" || len(c.ID) > 128) {
			t.Errorf("parseLeaseCursor(%q) = %+v", tok, c)
		}
	})
}
