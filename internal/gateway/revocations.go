package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/model"
)

// AgentRevocations follows the SVID revocations the local agent holds
// (AgentInfo.WatchRevocations on its Workload API socket), so ingress
// routes refuse peers whose X509-SVID was revoked (signet svid revoke)
// until it would expire. Create it with NewAgentRevocations and run it.
type AgentRevocations struct {
	addr string
	log  *slog.Logger

	set   atomic.Pointer[revokedSet]
	once  sync.Once
	ready chan struct{} // closed at the first list (or when the agent has none to give)
}

// NewAgentRevocations follows the agent at addr (unix:///path).
func NewAgentRevocations(addr string, log *slog.Logger) *AgentRevocations {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &AgentRevocations{addr: addr, log: log, ready: make(chan struct{})}
	r.set.Store(&revokedSet{})
	return r
}

// Ready is closed once the first set arrived, or the agent said it
// serves none (an agent older than revocation).
func (r *AgentRevocations) Ready() <-chan struct{} { return r.ready }

// revokedSet is what the agent last sent: serials, and per SPIFFE ID the
// NotBefore up to which its X509-SVIDs are revoked.
type revokedSet struct {
	serials map[string]bool
	ids     map[spiffeid.ID]time.Time
}

// Revoked reports whether the X509-SVID with leaf, of id, is revoked: by
// its serial, or by a revocation of its SPIFFE ID covering its NotBefore.
func (r *AgentRevocations) Revoked(leaf *x509.Certificate, id spiffeid.ID) bool {
	set := r.set.Load()
	if set.serials[strings.ToLower(leaf.SerialNumber.Text(16))] {
		return true
	}
	until, ok := set.ids[id]
	return ok && !leaf.NotBefore.After(until)
}

// Run follows the agent until ctx is done, reconnecting with backoff.
func (r *AgentRevocations) Run(ctx context.Context) {
	delay := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			r.log.Warn("the agent serves no SVID revocations (older agent): ingress cannot refuse revoked peers")
			r.once.Do(func() { close(r.ready) })
			delay = time.Minute
		} else {
			r.log.Debug("agent revocation stream ended; reconnecting", slog.String(logKeyErr, err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
}

func (r *AgentRevocations) follow(ctx context.Context) error {
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := agentv1.NewAgentInfoClient(conn).WatchRevocations(ctx, &agentv1.WatchRevocationsRequest{})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		next := &revokedSet{serials: map[string]bool{}, ids: map[spiffeid.ID]time.Time{}}
		for _, rv := range resp.GetRevocations() {
			if rv.GetSerial() == "" {
				if id, err := spiffeid.FromString(rv.GetSpiffeId()); err == nil && rv.GetX509NotBeforeUntil() > 0 {
					next.ids[id] = time.Unix(rv.GetX509NotBeforeUntil(), 0)
				}
				continue
			}
			for _, raw := range append([]string{rv.GetSerial()}, rv.GetSerials()...) {
				if s, err := model.ParseSerial(raw); err == nil {
					next.serials[s] = true
				}
			}
		}
		r.set.Store(next)
		r.once.Do(func() { close(r.ready) })
	}
}

// errRevokedPeer refuses a peer whose SVID was revoked.
var errRevokedPeer = errors.New("the peer's x509-svid was revoked")
