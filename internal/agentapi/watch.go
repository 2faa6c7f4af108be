package agentapi

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Watch stream bounds.
const (
	// DefaultMaxWatchStreams bounds the Watch streams one server holds;
	// past it, agents are told to retry later and keep polling.
	DefaultMaxWatchStreams = 50000
	// maxPendingRevocations bounds the revocations queued for one stream;
	// past it the stream gets one resync event (with the complete set)
	// instead.
	maxPendingRevocations = 1024
	// revocationsPerEvent bounds the revocations in one event.
	revocationsPerEvent = 2000
)

// Reasons a stream ends with node_ended.
const (
	EndEvicted = "evicted"
	EndBanned  = "banned"
	EndRevoked = "revoked"
)

// watcher is one node's Watch stream. What is due to it is kept as
// pending state rather than a queue of events, so that a burst of changes
// is coalesced into one event and the memory per stream stays bounded.
type watcher struct {
	node   spiffeid.ID
	sels   []model.Selector
	serial string // of the agent SVID the stream was opened with

	wake     chan struct{} // capacity 1: something is pending
	replaced chan struct{} // closed when a newer stream of the node took over

	mu          sync.Mutex
	sync        bool
	reason      string
	revision    int64
	revocations []*agentv1.SVIDRevocation
	overflow    bool   // revocations were dropped: resend the full set
	end         string // node_ended, once set the stream ends
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Hub holds the Watch streams of the server's connected agents, at most
// one per node, and delivers the change feed's events to them. The zero
// value is not usable; the Service creates it.
type Hub struct {
	max int

	mu      sync.Mutex
	streams map[spiffeid.ID]*watcher
	n       atomic.Int64

	// revoked is the set of revocations in force, replaced as a whole.
	revoked atomic.Pointer[revocationSet]
}

type revocationSet struct {
	serials map[string]store.Revocation
	ids     map[string]store.Revocation // JWT revocations by SPIFFE ID
	list    []*agentv1.SVIDRevocation
}

func newHub(max int) *Hub {
	h := &Hub{max: max, streams: map[spiffeid.ID]*watcher{}}
	h.revoked.Store(&revocationSet{})
	return h
}

// Streams is the number of open Watch streams.
func (h *Hub) Streams() int { return int(h.n.Load()) }

func (h *Hub) add(node model.Node, serial string) (*watcher, error) {
	w := &watcher{node: node.SPIFFEID, sels: node.Selectors, serial: serial,
		wake: make(chan struct{}, 1), replaced: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.streams[node.SPIFFEID]
	if old == nil && len(h.streams) >= h.max {
		return nil, errkind.New(errkind.ResourceExhausted, "the server holds its maximum of %d watch streams: keep polling and retry later", h.max)
	}
	if old != nil {
		close(old.replaced)
	}
	h.streams[node.SPIFFEID] = w
	h.n.Store(int64(len(h.streams)))
	return w, nil
}

func (h *Hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[w.node] == w {
		delete(h.streams, w.node)
		h.n.Store(int64(len(h.streams)))
	}
}

// each calls fn on every stream, under the hub's lock.
func (h *Hub) each(fn func(w *watcher)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.streams {
		fn(w)
	}
}

// NotifySync asks the streams of the nodes for which affects reports true
// (all of them when affects is nil) to sync now.
func (h *Hub) NotifySync(reason string, revision int64, affects func(node spiffeid.ID, sels []model.Selector) bool) {
	h.each(func(w *watcher) {
		if affects != nil && !affects(w.node, w.sels) {
			return
		}
		w.mu.Lock()
		w.sync, w.reason, w.revision = true, reason, max(w.revision, revision)
		w.mu.Unlock()
		w.signal()
	})
}

// End ends the stream of node, if any, telling the agent why (EndEvicted,
// EndBanned, EndRevoked).
func (h *Hub) End(node spiffeid.ID, reason string) {
	h.mu.Lock()
	w := h.streams[node]
	h.mu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	w.end = reason
	w.mu.Unlock()
	w.signal()
}

// SetRevocations replaces the set of revocations in force with rs, pushes
// the new ones to every stream and ends the streams whose agent SVID is
// among them.
func (h *Hub) SetRevocations(rs []store.Revocation) {
	next := &revocationSet{serials: map[string]store.Revocation{}, ids: map[string]store.Revocation{}}
	prev := h.revoked.Load()
	var added []store.Revocation
	for _, r := range rs {
		var old store.Revocation
		var known bool
		if r.Serial != "" {
			next.serials[r.Serial] = r
			old, known = prev.serials[r.Serial]
		} else {
			next.ids[r.SPIFFEID] = r
			old, known = prev.ids[r.SPIFFEID]
		}
		if !known || !old.RevokedAt.Equal(r.RevokedAt) {
			added = append(added, r)
		}
	}
	next.list = groupRevocations(rs)
	h.revoked.Store(next)
	if len(added) == 0 {
		return
	}
	pushed := groupRevocations(added)
	h.each(func(w *watcher) {
		w.mu.Lock()
		if _, hit := next.serials[w.serial]; hit && w.end == "" {
			w.end = EndRevoked
		}
		if len(w.revocations)+len(pushed) > maxPendingRevocations {
			w.overflow, w.revocations = true, nil
		} else if !w.overflow {
			w.revocations = append(w.revocations, pushed...)
		}
		w.mu.Unlock()
		w.signal()
	})
}

// groupRevocations puts revocations on the wire compactly. The
// revocation of a SPIFFE ID (its JWT row, and the serials of its X509-SVIDs
// written in the same transaction) is one message with an X.509 rule
// (x509_not_before_until), whatever the number of SVIDs; other serials
// revoked together (one ID, one transaction) share one message.
func groupRevocations(rs []store.Revocation) []*agentv1.SVIDRevocation {
	type key struct {
		id  string
		rev int64
	}
	byID := map[key]bool{}
	for _, r := range rs {
		if r.Serial == "" {
			byID[key{r.SPIFFEID, r.Revision}] = true
		}
	}
	groups := map[key]*agentv1.SVIDRevocation{}
	var out []*agentv1.SVIDRevocation
	for _, r := range rs {
		k := key{r.SPIFFEID, r.Revision}
		if r.Serial == "" {
			pb := RevocationToProto(r)
			until := r.RevokedAt.Add(-ca.ClockSkew).Unix()
			pb.X509NotBeforeUntil = until
			pb.RemintAfter = until + 1 + int64(ca.ClockSkew/time.Second)
			out = append(out, pb)
			continue
		}
		if byID[k] {
			continue // covered by the ID's X.509 rule
		}
		g := groups[k]
		if g == nil {
			g = RevocationToProto(r)
			groups[k] = g
			out = append(out, g)
			continue
		}
		g.Serials = append(g.Serials, r.Serial)
		g.ExpiresAt = max(g.ExpiresAt, r.ExpiresAt.Unix())
	}
	return out
}

// SerialRevoked reports whether the X509-SVID serial (lowercase hex) is
// revoked.
func (h *Hub) SerialRevoked(serial string) bool {
	_, ok := h.revoked.Load().serials[serial]
	return ok
}

// Revocations returns the revocations in force as last set.
func (h *Hub) Revocations() []store.Revocation {
	set := h.revoked.Load()
	out := slices.Collect(maps.Values(set.serials))
	return append(out, slices.Collect(maps.Values(set.ids))...)
}

// RevocationToProto puts a revocation on the wire.
func RevocationToProto(r store.Revocation) *agentv1.SVIDRevocation {
	return &agentv1.SVIDRevocation{Serial: r.Serial, SpiffeId: r.SPIFFEID, RevokedAt: r.RevokedAt.Unix(), ExpiresAt: r.ExpiresAt.Unix()}
}

// Hub returns the service's Watch streams, which the server's change-feed
// follower notifies.
func (s *Service) Hub() *Hub { return s.hub }

// errReplaced ends a stream another stream of the same node replaced.
var errReplaced = errkind.New(errkind.FailedPrecondition, "replaced by a newer watch stream of this node")

// Watch holds the calling node's push stream until the agent goes away,
// another stream of the node replaces it, or the node is evicted, banned or
// its agent SVID revoked (the last event then says so). The first events
// ask for a sync and carry the revocations in force.
func (s *Service) Watch(_ *agentv1.WatchRequest, stream agentv1.Agent_WatchServer) error {
	ctx := stream.Context()
	node, err := nodeFrom(ctx)
	if err != nil {
		return err
	}
	leaf, _, ok := PeerSVID(ctx)
	if !ok {
		return errkind.New(errkind.Unauthenticated, "an agent SVID is required (mTLS)")
	}
	w, err := s.hub.add(node, serialOf(leaf))
	if err != nil {
		return err
	}
	defer s.hub.remove(w)
	s.met.watchStreams.Inc()
	defer s.met.watchStreams.Dec()
	hello := &agentv1.WatchEvent{Sync: true, Reason: "hello", Revision: s.cfg.Entries.Revision()}
	if err := s.sendFull(stream, hello); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.replaced:
			return errReplaced
		case <-w.wake:
		}
		w.mu.Lock()
		ev := &agentv1.WatchEvent{Sync: w.sync, Reason: w.reason, Revision: w.revision, NodeEnded: w.end, Revocations: w.revocations}
		overflow := w.overflow
		w.sync, w.reason, w.revocations, w.overflow = false, "", nil, false
		w.mu.Unlock()
		if overflow {
			ev.Sync, ev.Reason, ev.Revocations = true, "resync", nil
			s.met.watchResyncs.Inc()
			if err := s.sendFull(stream, ev); err != nil {
				return err
			}
		} else if err := s.send(stream, ev); err != nil {
			return err
		}
		if ev.NodeEnded != "" {
			return nil
		}
	}
}

// sendFull sends ev with the complete set of revocations, split over as
// many events as it takes (the first marked revocations_reset).
func (s *Service) sendFull(stream agentv1.Agent_WatchServer, ev *agentv1.WatchEvent) error {
	list := s.hub.revoked.Load().list
	ev.RevocationsReset = true
	ev.Revocations = list[:min(len(list), revocationsPerEvent)]
	if err := s.send(stream, ev); err != nil {
		return err
	}
	for i := revocationsPerEvent; i < len(list); i += revocationsPerEvent {
		if err := s.send(stream, &agentv1.WatchEvent{Revocations: list[i:min(len(list), i+revocationsPerEvent)]}); err != nil {
			return err
		}
	}
	return nil
}

// send sends one event within a bound: an agent that stops reading does
// not hold the stream forever.
func (s *Service) send(stream agentv1.Agent_WatchServer, ev *agentv1.WatchEvent) error {
	done := make(chan error, 1)
	go func() { done <- stream.Send(ev) }()
	select {
	case err := <-done:
		return err
	case <-time.After(watchSendTimeout):
		return errkind.New(errkind.Unavailable, "watch stream: the agent did not read an event within %s", watchSendTimeout)
	}
}

// watchSendTimeout bounds one Send on a Watch stream.
const watchSendTimeout = 30 * time.Second
