package x509pop_test

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/nodeattest/x509pop/x509poptest"
)

// BenchmarkVerifierAttest measures the server half alone, in parallel: the
// chain check (leaf and intermediate to the root), the challenge and the
// signature check, with the agent's signing in the loop. The server's own
// share is reported by BenchmarkX509popAttest in internal/server.
func BenchmarkVerifierAttest(b *testing.B) {
	root := x509poptest.NewCA(b, "root")
	leaf := root.Intermediate(b, "mid").Issue(b, "node")
	v, err := x509pop.NewVerifier(x509pop.VerifierConfig{TrustDomain: td, Roots: []*x509.Certificate{root.Cert}})
	if err != nil {
		b.Fatal(err)
	}
	payload := x509pop.MarshalPayload(leaf.Chain)
	c := challengerFunc(func(n []byte) ([]byte, error) { return x509pop.Sign(leaf.Key, n) })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Attest(context.Background(), payload, c); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
