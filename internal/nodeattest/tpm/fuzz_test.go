package tpm_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/signet-id/signet/internal/nodeattest/tpm"
)

// allowAll admits every EK, so that fuzzed payloads reach the credential
// code.
type allowAll struct{}

func (allowAll) EKAllowed(context.Context, string) (bool, error) { return true, nil }

// FuzzParsePayload feeds arbitrary payloads to the parser and to the whole
// server half: neither panics, a parsed payload re-encodes to its input, and
// the verifier refuses everything (the challenger never knows the secret).
// The seed corpus holds real payloads of swtpm, with and without an EK
// certificate.
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 1, 0xff, 0, 0, 0, 1, 0xff})
	v, err := tpm.NewVerifier(tpm.Config{}, tpm.VerifierDeps{TrustDomain: td, AllowList: allowAll{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tpm.ParsePayload(b)
		if err == nil {
			out, err := p.Marshal()
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("Marshal(ParsePayload(%x)) = %x, %v: want the input back", b, out, err)
			}
		}
		_, err = v.Attest(context.Background(), b, answer{b: make([]byte, 32)})
		if !refusal(err) {
			t.Fatalf("Attest(%x) error = %v, want a refusal", b, err)
		}
	})
}

// FuzzParseChallenge feeds arbitrary challenges to the agent's parser: it
// never panics, and a parsed challenge re-encodes to its input. The seed
// corpus holds a real challenge.
func FuzzParseChallenge(f *testing.F) {
	f.Add([]byte{1, 0, 1, 0, 0, 1, 0})
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := tpm.ParseChallenge(b)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("Marshal(ParseChallenge(%x)) = %x, %v: want the input back", b, out, err)
		}
	})
}
