package scan_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/scan"
)

func FuzzParseBaseline(f *testing.F) {
	f.Add(`{"version":1,"findings":[{"fingerprint":"0011223344556677","location":{"path":"a/b"}}],"errors":[],"stats":{}}`)
	f.Add(`{"version":1,"findings":[]}`)
	f.Add(`{"version":1,"findings":[{}]}`)
	f.Add(`[{"RuleID":"generic-api-key"}]`)
	f.Fuzz(func(t *testing.T, doc string) {
		b, err := scan.ParseBaseline(strings.NewReader(doc))
		if err == nil && b.Contains(scan.Finding{}) {
			t.Fatalf("ParseBaseline(%q) accepted a finding without fingerprint or path", doc)
		}
	})
}
