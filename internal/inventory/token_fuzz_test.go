package inventory

import (
	"testing"

	"github.com/signet-id/signet/internal/errkind"
)

// FuzzPageToken: a caller's page token is either refused as InvalidArgument
// or a position that encodes back to a token parsing to the same position.
func FuzzPageToken(f *testing.F) {
	f.Add(pageToken{Kind: KindNode, After: "spiffe://example.org/node/a"}.encode())
	f.Add(pageToken{Kind: KindCredential, After: "lease-1", At: 1700000000000000000}.encode())
	f.Add(pageToken{Kind: KindFinding, After: "Zjpmb28"}.encode())
	f.Add("")
	f.Add("e30")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, kind := range append([]Kind{""}, Kinds...) {
			p, err := parsePageToken(tok, kind)
			if err != nil {
				if !errkind.Is(err, errkind.InvalidArgument) {
					t.Fatalf("parsePageToken(%q) error %v is not InvalidArgument", tok, err)
				}
				continue
			}
			if kind != "" && p.Kind != kind {
				t.Fatalf("parsePageToken(%q, %s) = kind %s", tok, kind, p.Kind)
			}
			if q, err := parsePageToken(p.encode(), kind); err != nil || q != p {
				t.Fatalf("round trip of %+v = %+v, %v", p, q, err)
			}
		}
	})
}
