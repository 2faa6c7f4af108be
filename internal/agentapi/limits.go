package agentapi

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/time/rate"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// JWTRate bounds JWT-SVID minting, per node and per workload entry: an
// agent caches JWT-SVIDs, so a caller minting far faster is broken or
// hostile, and each mint is a signature and an audit record.
type JWTRate struct {
	PerNode, PerEntry float64 // sustained mints per second
	Burst             int     // bucket size of each
}

// DefaultJWTRate allows bursts of 100 and 50 mints a second per node, 10
// per entry.
var DefaultJWTRate = JWTRate{PerNode: 50, PerEntry: 10, Burst: 100}

func (r JWTRate) String() string {
	return fmt.Sprintf("%g/s per node, %g/s per workload", r.PerNode, r.PerEntry)
}

// jwtLimiter holds a token bucket per node and per entry. Buckets idle long
// enough to be full again are dropped, so memory follows the active set.
type jwtLimiter struct {
	rate JWTRate
	now  func() time.Time

	mu        sync.Mutex
	nodes     map[spiffeid.ID]*rate.Limiter
	entries   map[string]*rate.Limiter
	lastPrune time.Time
}

func newJWTLimiter(r JWTRate, now func() time.Time) *jwtLimiter {
	return &jwtLimiter{rate: r, now: now, nodes: map[spiffeid.ID]*rate.Limiter{}, entries: map[string]*rate.Limiter{}}
}

// allow takes one token from the node's and the entry's buckets, or none.
func (l *jwtLimiter) allow(node spiffeid.ID, entry string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) > time.Minute {
		l.prune(now)
	}
	n := l.nodes[node]
	if n == nil {
		n = rate.NewLimiter(rate.Limit(l.rate.PerNode), l.rate.Burst)
		l.nodes[node] = n
	}
	e := l.entries[entry]
	if e == nil {
		e = rate.NewLimiter(rate.Limit(l.rate.PerEntry), max(1, l.rate.Burst/2))
		l.entries[entry] = e
	}
	if n.TokensAt(now) < 1 || e.TokensAt(now) < 1 {
		return false
	}
	return n.AllowN(now, 1) && e.AllowN(now, 1)
}

func (l *jwtLimiter) prune(now time.Time) {
	l.lastPrune = now
	for k, b := range l.nodes {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.nodes, k)
		}
	}
	for k, b := range l.entries {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.entries, k)
		}
	}
}

// lastSeen throttles the node last-seen stamp to once a minute per node.
type lastSeen struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[spiffeid.ID]time.Time
}

func newLastSeen(now func() time.Time) *lastSeen {
	return &lastSeen{now: now, seen: map[spiffeid.ID]time.Time{}}
}

// touch records that the node was seen, unless it was within the minute.
func (l *lastSeen) touch(ctx context.Context, st *store.Store, log *slog.Logger, id spiffeid.ID) {
	now := l.now()
	l.mu.Lock()
	fresh := now.Sub(l.seen[id]) < time.Minute
	if !fresh {
		l.seen[id] = now
		if len(l.seen) > 1<<20 {
			clear(l.seen)
		}
	}
	l.mu.Unlock()
	if fresh {
		return
	}
	if err := st.TouchNode(ctx, id, now); err != nil && !errkind.Is(err, errkind.NotFound) {
		log.Warn("record node last seen", "agent_id", id.String(), "error", err)
	}
}

// metrics are the service's Prometheus collectors.
type metrics struct {
	attestations  *prometheus.CounterVec
	svidsSigned   *prometheus.CounterVec
	auditFailures prometheus.Counter
	watchStreams  prometheus.Gauge
	watchResyncs  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_attestations_total", Help: "Node attestations, by method and result (ok, denied, error, busy).",
		}, []string{"method", "result"}),
		svidsSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_svids_signed_total", Help: "SVID signing decisions, by type (x509, jwt) and result (ok, denied, error, throttled).",
		}, []string{"type", "result"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signet_server_audit_failures_total", Help: "Issuance decisions whose audit records could not be written (the call was refused).",
		}),
		watchStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signet_server_watch_streams", Help: "Agents' Watch (push) streams open on this server.",
		}),
		watchResyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signet_server_watch_resyncs_total", Help: "Watch streams sent a resync event because they read too slowly for their bounded queue.",
		}),
	}
	for _, c := range []prometheus.Collector{m.attestations, m.svidsSigned, m.auditFailures, m.watchStreams, m.watchResyncs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent api metrics: %w", err)
		}
	}
	return m, nil
}
