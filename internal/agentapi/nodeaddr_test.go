package agentapi

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/peer"

	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

func fromPeer(ctx context.Context, addr net.Addr) context.Context {
	return peer.NewContext(ctx, &peer.Peer{Addr: addr})
}

// TestNodeAddrsRecordThrottled: an agent's address is written on first
// sight and on a change of address, and an unchanged one only every
// addressRefresh, into a real SQLite store.
func TestNodeAddrsRecordThrottled(t *testing.T) {
	clock := testclock.New(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	st, err := store.Open(t.Context(), store.Config{DSN: filepath.Join(t.TempDir(), "signet.db"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id := spiffeid.RequireFromString("spiffe://example.org/agent/join_token/n1")
	if _, err := st.CreateNode(store.WithActor(t.Context(), "test"), store.Node{SPIFFEID: id, AttestationType: "join_token"}); err != nil {
		t.Fatal(err)
	}
	n := newNodeAddrs(clock.Now)
	log := slog.New(slog.DiscardHandler)
	lastSeen := func() map[string]time.Time {
		t.Helper()
		as, err := st.NodeAddresses(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]time.Time{}
		for _, a := range as {
			out[a.Addr.String()] = a.LastSeen
		}
		return out
	}
	start := clock.Now()
	a := fromPeer(t.Context(), &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000})
	n.record(a, st, log, id)
	if got := lastSeen(); !got["192.0.2.7"].Equal(start) || len(got) != 1 {
		t.Fatalf("after the first call: %v, want 192.0.2.7 seen at %v", got, start)
	}
	// Calls within the refresh interval from the same address do not write.
	clock.Add(addressRefresh - time.Second)
	n.record(fromPeer(t.Context(), &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 40001}), st, log, id)
	if got := lastSeen(); !got["192.0.2.7"].Equal(start) || len(got) != 1 {
		t.Errorf("a call within %v wrote: %v", addressRefresh, got)
	}
	// A new address is written at once.
	n.record(fromPeer(t.Context(), &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}), st, log, id)
	if got := lastSeen(); !got["2001:db8::1"].Equal(clock.Now()) {
		t.Errorf("a new address was not written: %v", got)
	}
	// After the interval the unchanged address is written again.
	clock.Add(2 * time.Second)
	n.record(a, st, log, id)
	if got := lastSeen(); !got["192.0.2.7"].Equal(clock.Now()) {
		t.Errorf("192.0.2.7 after %v: %v, want seen at %v", addressRefresh, got, clock.Now())
	}
	// Not a TCP peer, or no peer: nothing recorded, no panic.
	n.record(fromPeer(t.Context(), &net.UnixAddr{Name: "/tmp/x", Net: "unix"}), st, log, id)
	n.record(t.Context(), st, log, id)
	if got := lastSeen(); len(got) != 2 {
		t.Errorf("addresses = %v, want the two TCP ones", got)
	}
	// An evicted node is not recorded and not remembered.
	ghost := spiffeid.RequireFromString("spiffe://example.org/agent/ghost")
	n.record(a, st, log, ghost)
	if slices.ContainsFunc(n.seen[ghost], func(w writtenAddr) bool { return w.addr == netip.MustParseAddr("192.0.2.7") }) {
		t.Error("an address whose write failed is remembered as written")
	}
}
