package server

import (
	"context"
	"net/netip"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/store"
)

// nodeAddresses returns the addresses the agent of node id was seen
// connecting to the agent API from, most recent first (broker.Node's
// Addresses); nil when there are none, or for a zero id.
func nodeAddresses(ctx context.Context, st *store.Store, id spiffeid.ID) ([]netip.Addr, error) {
	if id.IsZero() {
		return nil, nil
	}
	as, err := st.NodeAddresses(ctx, id)
	if err != nil || len(as) == 0 {
		return nil, err
	}
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = a.Addr
	}
	return out, nil
}
