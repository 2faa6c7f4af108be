package inventoryapi

import (
	"testing"

	"github.com/signet-id/signet/internal/errkind"
)

// FuzzOffsetToken: a page token of an in-memory listing or of the coverage
// history decodes to a non-negative position or an InvalidArgument error,
// never a panic, and issued tokens round-trip.
func FuzzOffsetToken(f *testing.F) {
	f.Add(offsetToken(0))
	f.Add(offsetToken(1234))
	f.Add("bzotMQ") // o:-1
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		n, err := parseOffsetToken(tok)
		if err != nil {
			if !errkind.Is(err, errkind.InvalidArgument) {
				t.Fatalf("parseOffsetToken(%q) error %v is not InvalidArgument", tok, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("parseOffsetToken(%q) = %d", tok, n)
		}
		if m, err := parseOffsetToken(offsetToken(n)); err != nil || m != n {
			t.Fatalf("round trip of %d: %d %v", n, m, err)
		}
	})
}
