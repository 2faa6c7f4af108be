package logsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	long := strings.Repeat("a", MaxLen)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"short", "entry-1", "entry-1"},
		{"exactly max", long, long},
		{"one over", long + "b", long + "…"},
		{"huge", strings.Repeat("x", 50<<20), strings.Repeat("x", MaxLen) + "…"},
		// "é" is two bytes: the cut at MaxLen would split it.
		{"multi-byte at the cut", strings.Repeat("a", MaxLen-1) + "éé", strings.Repeat("a", MaxLen-1) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Truncate(tt.in); got != tt.want {
				t.Errorf("Truncate(%.40q…) = %.40q… (%d bytes), want %d bytes", tt.in, got, len(got), len(tt.want))
			}
		})
	}
}

// FuzzTruncate: the result is bounded, a prefix of the input plus "…", and
// valid UTF-8 whenever the input is.
func FuzzTruncate(f *testing.F) {
	for _, s := range []string{"", "abc", strings.Repeat("é", 100), strings.Repeat("a", 127) + "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Truncate(s)
		if len(got) > MaxLen+len("…") {
			t.Fatalf("Truncate(%q) is %d bytes", s, len(got))
		}
		if got != s && !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
			t.Fatalf("Truncate(%q) = %q: not a prefix", s, got)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Truncate(%q) = %q: invalid UTF-8", s, got)
		}
	})
}
