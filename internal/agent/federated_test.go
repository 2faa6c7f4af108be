package agent

import (
	"testing"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

// TestCacheFederatedBundles: the federated bundles of a Sync are held
// after the own bundle, sorted by trust domain; bad ones (own trust domain, repeated, without
// authorities, malformed) are skipped; a response without them removes
// them.
func TestCacheFederatedBundles(t *testing.T) {
	ca, clock := newTestCA(t, "example.org"), newFakeClock()
	c := newTestCache(t, ca, clock)
	partner, other := newTestCA(t, "partner.org"), newTestCA(t, "other.org")
	resp := &agentv1.SyncResponse{Revision: 1, Full: true, FederatedBundles: []*commonv1.Bundle{
		partner.bundleProto(t, 3),
		ca.bundleProto(t, 9),          // the own trust domain: refused
		partner.bundleProto(t, 4),     // repeats partner.org: refused
		{TrustDomain: "empty.org"},    // no authorities: refused
		{TrustDomain: "Not A Domain"}, // malformed: refused
		other.bundleProto(t, 1),
	}}
	if res := mustApply(t, c, resp); !res.federated {
		t.Error("applySync(with federated bundles).federated = false, want true")
	}
	got := c.Bundles()
	if len(got) != 3 || got[0].TrustDomain() != ca.td || got[1].TrustDomain() != other.td || got[2].TrustDomain() != partner.td {
		t.Fatalf("Bundles() = %v, want example.org, other.org, partner.org", got)
	}
	if seq, _ := got[2].SequenceNumber(); seq != 3 {
		t.Errorf("partner.org bundle sequence = %d, want 3 (the first one sent)", seq)
	}
	if !got[0].Equal(ca.bundle(1)) {
		t.Error("the own bundle was replaced by a federated one")
	}
	// The same set again is no change.
	resp.Revision = 2
	if res := mustApply(t, c, resp); res.federated {
		t.Error("applySync(same federated bundles).federated = true, want false")
	}
	// Absent: no longer federated.
	if res := mustApply(t, c, &agentv1.SyncResponse{Revision: 3, Full: true}); !res.federated {
		t.Error("applySync(no federated bundles).federated = false, want true")
	}
	if got := c.Bundles(); len(got) != 1 {
		t.Errorf("Bundles() after removal = %d bundles, want the own one", len(got))
	}
}
