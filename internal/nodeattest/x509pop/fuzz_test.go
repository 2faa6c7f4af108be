package x509pop_test

import (
	"crypto/x509"
	"testing"

	"github.com/signet-id/signet/internal/nodeattest/x509pop"
)

// FuzzParsePayload checks that the payload parser never panics, and that
// what it accepts re-marshals to the same bytes. Seeds are in
// testdata/fuzz/FuzzParsePayload (a leaf, a leaf and an intermediate, and
// damaged copies).
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		certs, err := x509pop.ParsePayload(p)
		if err != nil {
			return
		}
		if len(certs) == 0 || len(certs) > x509pop.MaxChain {
			t.Fatalf("ParsePayload accepted %d certificates", len(certs))
		}
		if got := x509pop.MarshalPayload(certs); string(got) != string(p) {
			t.Fatalf("MarshalPayload(ParsePayload(p)) differs from p")
		}
		_ = x509pop.Selectors(certs[0], [][]*x509.Certificate{certs})
	})
}
