package azuremsi_test

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest/azuremsi"
)

// FuzzToken feeds arbitrary tokens to the verifier (JWS parsing, claims
// decoding): nothing may panic, and every failure is a refusal.
func FuzzToken(f *testing.F) {
	vm := cloudtest.NewAzureVM(f)
	f.Add([]byte(cloudtest.SignJWT(f, cloudtest.Key(f, "azure"), cloudtest.AzureKeyID, cloudtest.AzureClaims(vm, azuremsi.DefaultResource, time.Now()))))
	f.Add([]byte("eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiI3MmY5ODhiZi04NmYxLTQxYWYtOTFhYi0yZDdjZDAxMWRiNDcifQ.AA"))
	v := newVerifier(f, vm, &cloudtest.Nodes{})
	f.Fuzz(func(t *testing.T, tok []byte) {
		_, err := v.Attest(context.Background(), tok, nil)
		if err == nil {
			return // a valid token, replayed: the fuzz lookup admits nothing
		}
		if k := errkind.Of(err); k != errkind.PermissionDenied && k != errkind.InvalidArgument {
			t.Fatalf("Attest(fuzzed token) = %v, want a refusal", err)
		}
	})
}

// FuzzParseClaims feeds arbitrary claim sets to the claims parser.
func FuzzParseClaims(f *testing.F) {
	f.Add([]byte(`{"tid":"72f988bf-86f1-41af-91ab-2d7cd011db47","sub":"72f988bf-86f1-41af-91ab-2d7cd011db47",` +
		`"xms_mirid":"/subscriptions/72f988bf-86f1-41af-91ab-2d7cd011db47/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, vm, err := azuremsi.ParseClaims(b)
		if err != nil {
			return
		}
		if _, err := azuremsi.AgentID(td, c); err != nil {
			t.Fatalf("ParseClaims accepted claims whose agent ID is invalid: %v", err)
		}
		for _, s := range azuremsi.Selectors(c, vm) {
			if err := s.Validate(); err != nil {
				t.Fatalf("ParseClaims accepted claims with a bad selector: %v", err)
			}
		}
	})
}
