package agentapi

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/peer"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// addressRefresh is how often an unchanged node address is written again,
// so that its LastSeen stays roughly current without a write per call.
const addressRefresh = 10 * time.Minute

// peerAddr returns the IP address the caller connected from, canonical
// (IPv4-mapped IPv6 as IPv4, no zone); false when the transport is not TCP.
func peerAddr(ctx context.Context) (netip.Addr, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return netip.Addr{}, false
	}
	ta, ok := p.Addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	a := ta.AddrPort().Addr().Unmap().WithZone("")
	return a, a.IsValid()
}

// nodeAddrs throttles the recording of the addresses agents connect from:
// an address is written when the node was not seen from it by this server
// within addressRefresh, so a node syncing every few seconds from one
// address costs one write every ten minutes.
type nodeAddrs struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[spiffeid.ID][]writtenAddr
}

type writtenAddr struct {
	addr netip.Addr
	at   time.Time
}

func newNodeAddrs(now func() time.Time) *nodeAddrs {
	return &nodeAddrs{now: now, seen: map[spiffeid.ID][]writtenAddr{}}
}

// record stores that node id's agent called from the peer address in ctx,
// unless it was written recently. Failures are logged: the address is
// inventory for source_address_from_node, not the caller's identity.
func (n *nodeAddrs) record(ctx context.Context, st *store.Store, log *slog.Logger, id spiffeid.ID) {
	addr, ok := peerAddr(ctx)
	if !ok {
		return
	}
	now := n.now()
	n.mu.Lock()
	ws := n.seen[id]
	i := slices.IndexFunc(ws, func(w writtenAddr) bool { return w.addr == addr })
	fresh := i >= 0 && now.Sub(ws[i].at) < addressRefresh
	if !fresh {
		if i >= 0 {
			ws = slices.Delete(ws, i, i+1)
		}
		ws = append(ws, writtenAddr{addr, now})
		if len(ws) > store.MaxNodeAddresses {
			ws = ws[len(ws)-store.MaxNodeAddresses:]
		}
		if len(n.seen) > 1<<20 {
			clear(n.seen)
		}
		n.seen[id] = ws
	}
	n.mu.Unlock()
	if fresh {
		return
	}
	if err := st.RecordNodeAddress(ctx, id, addr, now); err != nil {
		if !errkind.Is(err, errkind.NotFound) {
			log.Warn("record node address", "agent_id", id.String(), "error", err)
		}
		n.forget(id, addr) // try again on the next call
	}
}

// forget drops addr of id from the throttle.
func (n *nodeAddrs) forget(id spiffeid.ID, addr netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen[id] = slices.DeleteFunc(n.seen[id], func(w writtenAddr) bool { return w.addr == addr })
	if len(n.seen[id]) == 0 {
		delete(n.seen, id)
	}
}
