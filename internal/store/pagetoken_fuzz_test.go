package store

import (
	"testing"

	"github.com/signet-id/signet/internal/errkind"
)

// FuzzFindingToken: any page token a client sends decodes to a valid
// position or an InvalidArgument error, never a panic; tokens the store
// issues decode back to where they were made.
func FuzzFindingToken(f *testing.F) {
	f.Add(true, encodeFindingToken(true, &Finding{Fingerprint: "0123456789abcdef", Risk: 42}))
	f.Add(false, encodeFindingToken(false, &Finding{Fingerprint: "0123456789abcdef"}))
	f.Add(true, "cjo5OTk6YWFhYWFhYWEwMDAwMDAwMQ")
	f.Add(false, "")
	f.Add(true, "!!!")
	f.Fuzz(func(t *testing.T, byRisk bool, tok string) {
		r, fp, err := decodeFindingToken(byRisk, tok)
		if err != nil {
			if !errkind.Is(err, errkind.InvalidArgument) {
				t.Fatalf("decodeFindingToken(%q) error %v is not InvalidArgument", tok, err)
			}
			return
		}
		if _, nerr := NormalizeFingerprint("fp", fp); nerr != nil || r < 0 || r > 100 || (!byRisk && r != 0) {
			t.Fatalf("decodeFindingToken(%q) = %d, %q", tok, r, fp)
		}
		again := encodeFindingToken(byRisk, &Finding{Fingerprint: fp, Risk: r})
		if r2, fp2, err := decodeFindingToken(byRisk, again); err != nil || r2 != r || fp2 != fp {
			t.Fatalf("round trip of %q: %d %q %v", again, r2, fp2, err)
		}
	})
}
