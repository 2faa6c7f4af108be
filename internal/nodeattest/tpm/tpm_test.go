package tpm_test

import (
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestAttestAllowListedEK(t *testing.T) {
	sim := tpmtest.Start(t)
	a, err := tpm.New(tpm.AgentConfig{Device: sim.Path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := tpm.EKHash(sim.EKPublic(t))
	if err != nil {
		t.Fatal(err)
	}
	v, err := tpm.NewVerifier(tpm.Config{AllowedEKHashes: []string{h}}, tpm.VerifierDeps{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Attest(t.Context(), p, challenger{a})
	if err != nil {
		t.Fatalf("Attest() error = %v", err)
	}
	if want := spiffeid.RequireFromSegments(td, "signet", "agent", "tpm", h); res.AgentID != want {
		t.Errorf("Attest().AgentID = %v, want %v", res.AgentID, want)
	}
	if want := []model.Selector{{Type: "tpm", Value: "ek_hash:" + h}}; !slices.Equal(res.Selectors, want) {
		t.Errorf("Attest().Selectors = %v, want %v", res.Selectors, want)
	}
	if !res.CanReattest {
		t.Errorf("Attest().CanReattest = false, want true")
	}
}
