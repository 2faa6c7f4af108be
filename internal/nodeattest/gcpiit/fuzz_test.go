package gcpiit_test

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest/gcpiit"
)

// answer answers every challenge with the same bytes.
type answer []byte

func (a answer) Challenge(context.Context, []byte) ([]byte, error) { return a, nil }

// FuzzToken feeds arbitrary identity tokens to the verifier (JWS parsing,
// claims decoding): nothing may panic, and every failure is a refusal.
func FuzzToken(f *testing.F) {
	inst := cloudtest.NewGCPInstance(f)
	f.Add([]byte(cloudtest.SignJWT(f, cloudtest.Key(f, "gcp"), cloudtest.GCPKeyID, cloudtest.GCPClaims(inst, "x", time.Now()))))
	f.Add([]byte("eyJhbGciOiJub25lIn0.e30."))
	v := newVerifier(f)
	f.Fuzz(func(t *testing.T, tok []byte) {
		_, err := v.Attest(context.Background(), []byte(gcpiit.Hello), answer(tok))
		if k := errkind.Of(err); err == nil || (k != errkind.PermissionDenied && k != errkind.InvalidArgument) {
			t.Fatalf("Attest(fuzzed token) = %v, want a refusal", err)
		}
	})
}

// FuzzParseClaims feeds arbitrary claim sets to the claims parser.
func FuzzParseClaims(f *testing.F) {
	f.Add([]byte(`{"email":"a@b","email_verified":true,"google":{"compute_engine":{"project_id":"p","zone":"z","instance_id":"1","instance_name":"n"}}}`))
	f.Add([]byte(`{"google":{"compute_engine":{"project_id":1}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := gcpiit.ParseClaims(b)
		if err != nil {
			return
		}
		if _, err := gcpiit.AgentID(td, c.Google.ComputeEngine); err != nil {
			t.Fatalf("ParseClaims accepted claims whose agent ID is invalid: %v", err)
		}
		for _, s := range gcpiit.Selectors(c) {
			if err := s.Validate(); err != nil {
				t.Fatalf("ParseClaims accepted claims with a bad selector: %v", err)
			}
		}
	})
}

// FuzzCheckAudience feeds arbitrary challenges to the agent's check.
func FuzzCheckAudience(f *testing.F) {
	f.Add("signet:example.org:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) { _ = gcpiit.CheckAudience(s) })
}
