package storetest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var nodeAddressTests = map[string]func(t *testing.T, s *store.Store){
	"RecordList":      testNodeAddressRecordList,
	"KeepsMostRecent": testNodeAddressKeepsMostRecent,
	"UnknownNode":     testNodeAddressUnknownNode,
	"GoneWithNode":    testNodeAddressGoneWithNode,
}

func addrs(as []store.NodeAddress) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Addr.String()
	}
	return out
}

func testNodeAddressRecordList(t *testing.T, s *store.Store) {
	n, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	other, err := s.CreateNode(ctxFor(t), node("n2"))
	must(t, "CreateNode", err)
	rev, nAudit := revision(t, s), len(auditLog(t, s))
	got, err := s.NodeAddresses(t.Context(), n.SPIFFEID)
	must(t, "NodeAddresses", err)
	if len(got) != 0 {
		t.Fatalf("NodeAddresses(new node) = %v, want none", got)
	}
	v4, v6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")
	must(t, "RecordNodeAddress", s.RecordNodeAddress(t.Context(), n.SPIFFEID, v4, epoch))
	must(t, "RecordNodeAddress", s.RecordNodeAddress(t.Context(), n.SPIFFEID, v6, epoch.Add(time.Minute)))
	// The same address again, later, advances LastSeen; earlier does not move it back.
	must(t, "RecordNodeAddress(again)", s.RecordNodeAddress(t.Context(), n.SPIFFEID, v4, epoch.Add(2*time.Minute)))
	must(t, "RecordNodeAddress(older)", s.RecordNodeAddress(t.Context(), n.SPIFFEID, v4, epoch.Add(-time.Hour)))
	// An IPv4-mapped IPv6 address and a zone are stored canonically.
	must(t, "RecordNodeAddress(other)", s.RecordNodeAddress(t.Context(), other.SPIFFEID, netip.MustParseAddr("::ffff:198.51.100.1"), epoch))
	must(t, "RecordNodeAddress(zone)", s.RecordNodeAddress(t.Context(), other.SPIFFEID, netip.MustParseAddr("fe80::1%eth0"), epoch.Add(time.Second)))

	got, err = s.NodeAddresses(t.Context(), n.SPIFFEID)
	must(t, "NodeAddresses", err)
	want := []store.NodeAddress{
		{Addr: v4, FirstSeen: epoch, LastSeen: epoch.Add(2 * time.Minute)},
		{Addr: v6, FirstSeen: epoch.Add(time.Minute), LastSeen: epoch.Add(time.Minute)},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("NodeAddresses() (-want +got):\n%s", diff)
	}
	got, err = s.NodeAddresses(t.Context(), other.SPIFFEID)
	must(t, "NodeAddresses(other)", err)
	if diff := cmp.Diff([]string{"fe80::1", "198.51.100.1"}, addrs(got)); diff != "" {
		t.Errorf("NodeAddresses(other) (-want +got):\n%s", diff)
	}
	if revision(t, s) != rev || len(auditLog(t, s)) != nAudit {
		t.Errorf("RecordNodeAddress changed the revision or wrote audit records")
	}
	wantKind(t, "RecordNodeAddress(zero address)", s.RecordNodeAddress(t.Context(), n.SPIFFEID, netip.Addr{}, epoch), errkind.InvalidArgument)
}

func testNodeAddressKeepsMostRecent(t *testing.T, s *store.Store) {
	n, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	for i := range 6 {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		must(t, "RecordNodeAddress", s.RecordNodeAddress(t.Context(), n.SPIFFEID, a, epoch.Add(time.Duration(i)*time.Minute)))
	}
	got, err := s.NodeAddresses(t.Context(), n.SPIFFEID)
	must(t, "NodeAddresses", err)
	if diff := cmp.Diff([]string{"10.0.0.6", "10.0.0.5", "10.0.0.4", "10.0.0.3"}, addrs(got)); diff != "" {
		t.Errorf("NodeAddresses() after 6 addresses (-want +got):\n%s", diff)
	}
	// Seeing an old address again brings it back as the most recent.
	must(t, "RecordNodeAddress", s.RecordNodeAddress(t.Context(), n.SPIFFEID, netip.MustParseAddr("10.0.0.3"), epoch.Add(time.Hour)))
	must(t, "RecordNodeAddress", s.RecordNodeAddress(t.Context(), n.SPIFFEID, netip.MustParseAddr("10.0.0.1"), epoch.Add(2*time.Hour)))
	got, err = s.NodeAddresses(t.Context(), n.SPIFFEID)
	must(t, "NodeAddresses", err)
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.3", "10.0.0.6", "10.0.0.5"}, addrs(got)); diff != "" {
		t.Errorf("NodeAddresses() after re-seeing (-want +got):\n%s", diff)
	}
	if len(got) > store.MaxNodeAddresses {
		t.Errorf("%d addresses kept, want at most %d", len(got), store.MaxNodeAddresses)
	}
}

func testNodeAddressUnknownNode(t *testing.T, s *store.Store) {
	ghost := id("spiffe://example.org/agent/ghost")
	wantKind(t, "RecordNodeAddress(unknown)", s.RecordNodeAddress(t.Context(), ghost, netip.MustParseAddr("192.0.2.1"), epoch), errkind.NotFound)
	got, err := s.NodeAddresses(t.Context(), ghost)
	must(t, "NodeAddresses(unknown)", err)
	if len(got) != 0 {
		t.Errorf("NodeAddresses(unknown) = %v, want none", got)
	}
}

func testNodeAddressGoneWithNode(t *testing.T, s *store.Store) {
	n, err := s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode", err)
	must(t, "RecordNodeAddress", s.RecordNodeAddress(t.Context(), n.SPIFFEID, netip.MustParseAddr("192.0.2.1"), epoch))
	must(t, "DeleteNode", s.DeleteNode(ctxFor(t), n.SPIFFEID))
	// Attesting again under the same ID starts without the evicted node's addresses.
	_, err = s.CreateNode(ctxFor(t), node("n1"))
	must(t, "CreateNode(again)", err)
	got, err := s.NodeAddresses(t.Context(), n.SPIFFEID)
	must(t, "NodeAddresses", err)
	if len(got) != 0 {
		t.Errorf("NodeAddresses() after eviction = %v, want none", addrs(got))
	}
}
