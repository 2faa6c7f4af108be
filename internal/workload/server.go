// Package workload serves the SPIFFE Workload API on the agent's unix socket:
// X.509-SVIDs, JWT-SVIDs and trust bundles for the local processes that ask,
// as the SPIFFE Workload API and Workload Endpoint specifications describe.
//
// What a caller gets is decided by who it is, never by what it sends: the
// server identifies each caller through the kernel (workloadattest peer
// credentials), asks every configured attestor for its selectors, and serves
// the SVIDs of the entries whose selectors are a subset of them, as the
// Source reports. Rules the specifications leave to the implementation:
//
//   - Every RPC must carry the gRPC metadata workload.spiffe.io: true, or it
//     fails with InvalidArgument (this includes gRPC reflection, which the
//     server also offers).
//   - A call that arrives before the Source has synced, or while the
//     caller's SVIDs are still being signed (the Source explains a missing
//     SVID as Unavailable), waits for them up to Config.ReadyWait and is
//     then answered at once; after the wait it fails with Unavailable.
//   - A caller with no identity gets PermissionDenied from FetchX509SVID,
//     FetchJWTSVID, FetchX509Bundles and FetchJWTBundles: bundles are only
//     for workloads that have an identity. ValidateJWTSVID needs no identity:
//     the specification sets no such condition on it, and it reveals only
//     whether a token the caller already holds is valid.
//   - Streams send their first response at once and then a complete new one
//     whenever the caller's SVIDs or bundles change. When the caller's
//     identity disappears, or the process that opened the connection exits,
//     the stream ends with PermissionDenied. When the server stops, streams
//     end with Unavailable so that clients reconnect.
//   - SVIDs are served in the order the Source returns them; the first is the
//     caller's default identity. When two SVIDs carry the same non-empty
//     hint, only the first is served; SVIDs whose hint exceeds 1024 bytes are
//     not served.
//   - federated_bundles carries every bundle of a trust domain other than
//     those of the SVIDs served; JWT bundles carry only JWT-SVID keys, each
//     with its kid and "use": "jwt-svid".
//   - A caller sees the bundles of its own trust domain and of the trust
//     domains its matching entries federate with, when the Source scopes
//     bundles by caller (CallerBundler); otherwise every bundle it holds.
//     This holds for federated_bundles, FetchX509Bundles, FetchJWTBundles
//     and the keys ValidateJWTSVID accepts.
//
// Stream responses are built and encoded once per caller selector set and
// sent in that encoding until the Source reports a change (see encoded),
// and a connection's attestation is reused by the calls on it for a second
// (see attestReuse; the caller's pidfd is checked on every call), so that a
// burst of calls costs a liveness check and the gRPC exchange and little
// else.
//
// Key material and tokens are never logged.
package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/telemetry"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Log keys.
const (
	logKeyMethod    = "method"
	logKeyCode      = "code"
	logKeyErr       = "err"
	logKeyErrID     = "error_id"
	logKeyPeer      = "peer"
	logKeySelectors = "selectors"
	logKeySVID      = "svid"
	logKeySVIDs     = "svids"
	logKeyEntryID   = "entry_id"
	logKeySPIFFEID  = "spiffe_id"
	logKeyHint      = "hint"
	logKeyExpiresAt = "expires_at"
	logKeyTD        = "trust_domain"
)

// shutdownGrace is how long Serve waits for RPCs to finish once its context
// is done before it closes the remaining connections.
const shutdownGrace = 2 * time.Second

// maxRecvMsgSize bounds request messages; the largest legitimate one is a
// JWT-SVID to validate.
const maxRecvMsgSize = 1 << 20

// staticWindow is the HTTP/2 flow-control window of every stream and
// connection: as large as the largest request, so that no request waits
// for a window update.
const staticWindow = maxRecvMsgSize

// streamWorkers is the number of pooled goroutines serving RPCs.
const streamWorkers = 16

// Config configures a Server.
type Config struct {
	// Source provides SVIDs and bundles. Required.
	Source Source
	// Attestors identify callers; their selectors are merged. At least one
	// is required.
	Attestors []workloadattest.Attestor
	// Logger receives one line per failed RPC and debug lines per served
	// SVID set. Nil discards.
	Logger *slog.Logger
	// Metrics, when set, receives the server's metrics:
	// signet_workload_api_rpcs_total{method,code} and
	// signet_workload_api_active_streams{method}.
	Metrics prometheus.Registerer
	// Services are served on the same socket beside the Workload API
	// (Envoy SDS, for example).
	Services []Service
	// TracerProvider, when set, gives every RPC on the socket (Workload
	// API, SDS, health) a span (internal/telemetry); nil: no tracing.
	TracerProvider trace.TracerProvider
	// ReadyWait bounds how long a call that arrives before the Source can
	// answer it — before the agent's first sync, or while the caller's
	// SVIDs are still being signed — waits for it instead of failing at
	// once with Unavailable. Zero: DefaultReadyWait; negative: no wait.
	ReadyWait time.Duration
}

// DefaultReadyWait is Config.ReadyWait's default: long enough for a fresh
// agent to sync and sign thousands of entries, short enough that a client
// whose SVID cannot come learns it.
const DefaultReadyWait = 15 * time.Second

// Server is the Workload API server. Create it with New; it is safe for
// concurrent use and may Serve several listeners.
type Server struct {
	src       Source
	attestors []workloadattest.Attestor
	log       *slog.Logger
	metrics   *metrics // nil when disabled
	services  []Service
	// exemptPrefixes are "/<service name>/" of every Service, the method
	// prefixes headerExempt looks for.
	exemptPrefixes []string
	tracing        trace.TracerProvider // nil when off

	readyWait time.Duration

	activity atomic.Uint64 // see Activity

	// Responses by caller selector set, valid until the source changes.
	// Each is kept encoded (prepared): see encoded.
	x509SVIDs   respCache[prepared[*workloadpb.X509SVIDResponse]]
	x509Bundles respCache[prepared[*workloadpb.X509BundlesResponse]]
	jwtBundles  respCache[prepared[*workloadpb.JWTBundlesResponse]]
}

// New returns a Server. It fails when Source or Attestors are missing or the
// metrics cannot be registered (for example, registered twice).
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errkind.New(errkind.InvalidArgument, "workload api: a Source is required")
	}
	if len(cfg.Attestors) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "workload api: at least one workload attestor is required")
	}
	for i, a := range cfg.Attestors {
		if a == nil {
			return nil, errkind.New(errkind.InvalidArgument, "workload api: attestor %d is nil", i)
		}
	}
	for i, svc := range cfg.Services {
		if svc == nil {
			return nil, errkind.New(errkind.InvalidArgument, "workload api: service %d is nil", i)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("workload api: %w", err)
	}
	wait := cfg.ReadyWait
	if wait == 0 {
		wait = DefaultReadyWait
	}
	exempt := make([]string, len(cfg.Services))
	for i, svc := range cfg.Services {
		exempt[i] = "/" + svc.ServiceName() + "/"
	}
	return &Server{
		exemptPrefixes: exempt,
		readyWait:      max(wait, 0),
		src:            cfg.Source,
		attestors:      append([]workloadattest.Attestor(nil), cfg.Attestors...),
		log:            log.With("component", "workload_api"),
		metrics:        m,
		services:       append([]Service(nil), cfg.Services...),
		tracing:        cfg.TracerProvider,
	}, nil
}

// Serve serves the Workload API on l (a unix socket from Listen) until ctx
// is done. Then it ends open streams with Unavailable, waits up to two
// seconds for RPCs in flight, closes what remains and returns nil. It closes
// l. It returns an error only if serving fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stopping := make(chan struct{})
	gs := grpc.NewServer(
		grpc.Creds(workloadattest.NewCredentials()),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// Cached stream responses are sent in the wire form they were
		// encoded to when built; everything else as protobuf, as before.
		grpc.ForceServerCodecV2(newCodec()),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, which otherwise answers nearly every request with a
		// PING (and a window update) that both sides then read and
		// answer: two system calls a side per call on a local socket whose
		// requests are a few hundred bytes.
		grpc.StaticStreamWindowSize(staticWindow),
		grpc.StaticConnWindowSize(staticWindow),
		// Serve returns only once every handler has: nothing runs (or
		// logs) after it.
		grpc.WaitForHandlers(true),
		// Reuse handler goroutines (and their grown stacks); when all are
		// busy, for example with long-lived streams, gRPC starts new ones.
		grpc.NumStreamWorkers(streamWorkers),
		telemetry.GRPCServerOption(s.tracing),
	)
	workloadpb.RegisterSpiffeWorkloadAPIServer(gs, &api{s: s, stopping: stopping})
	for _, svc := range s.services {
		svc.Register(gs, Host{s: s, stopping: stopping})
	}
	reflection.Register(gs)
	healthpb.RegisterHealthServer(gs, health{src: s.src})

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(l) }()
	select {
	case err := <-errc:
		close(stopping)
		gs.Stop()
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("serve workload api: %w", err)
	case <-ctx.Done():
	}

	close(stopping)
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(shutdownGrace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		gs.Stop()
		<-stopped
	}
	<-errc
	return nil
}

// attestReuse is how long the selectors attested for a connection are
// reused by later calls on it. The caller of a connection is one process
// (its pidfd is checked on every call), so what this allows is only that a
// process which execs another program or changes its groups keeps its
// earlier selectors for up to this long on a connection it already had —
// as a stream does for its whole life.
const attestReuse = time.Second

// attested is a caller's merged selectors and their cache key, as kept in
// the connection's memo.
type attested struct {
	sels []model.Selector
	key  string
}

// attest identifies the caller of the RPC in ctx: the union of every
// attestor's selectors, in canonical order. The slice is shared: callers
// must not modify it.
func (s *Server) attest(ctx context.Context) (workloadattest.Peer, []model.Selector, error) {
	p, a, err := s.attestKeyed(ctx)
	return p, a.sels, err
}

// attestKeyed is attest with the selectors' response cache key. Within
// attestReuse of the last attestation on the same connection it reuses
// that result once the caller is checked to be alive.
func (s *Server) attestKeyed(ctx context.Context) (workloadattest.Peer, attested, error) {
	p, ok := workloadattest.PeerFromContext(ctx)
	if !ok {
		return p, attested{}, errkind.New(errkind.PermissionDenied,
			"caller could not be identified: the workload api needs a unix socket with peer credentials")
	}
	now := time.Now()
	if v, ok := p.Memo().Load(now); ok {
		if err := p.CheckAlive(); err != nil {
			return p, attested{}, err
		}
		return p, v.(attested), nil
	}
	var sels []model.Selector
	for _, a := range s.attestors {
		got, err := a.Attest(ctx, p)
		if err != nil {
			return p, attested{}, fmt.Errorf("attest %v with %s: %w", p, a.Name(), err)
		}
		sels = append(sels, got...)
	}
	sels = model.SortSelectors(sels)
	res := attested{sels: sels, key: selectorsKey(sels)}
	p.Memo().Store(res, now.Add(attestReuse))
	return p, res, nil
}

// Explainer is an optional capability of a Source: it tells a caller who
// gets no SVID why, when the reason is not that no entry matches it (the
// caller's SVIDs expired while the agent could not reach the server, say).
// NoSVIDReason returns nil when no entry matches sels.
type Explainer interface {
	NoSVIDReason(sels []model.Selector) error
}

// CallerBundler is an optional capability of a Source: the bundles a
// caller with selectors sels may see. BundlesFor returns the own trust
// domain's bundle first, then the bundles of the trust domains that the
// entries matching sels federate with; with no matching entry, only the own
// bundle. sels is canonical. Its result may change only together with the
// Source's Changed channel, as the response caches keyed by selectors rely
// on.
type CallerBundler interface {
	BundlesFor(sels []model.Selector) []*spiffebundle.Bundle
}

// bundlesFor returns the bundles the caller with selectors sels may see:
// the Source's BundlesFor when it scopes bundles by caller, else Bundles.
func (s *Server) bundlesFor(sels []model.Selector) []*spiffebundle.Bundle {
	if cb, ok := s.src.(CallerBundler); ok {
		return cb.BundlesFor(sels)
	}
	return s.src.Bundles()
}

// noIdentity is the error for a caller who gets no SVID: the Source's
// explanation when it has one, else PermissionDenied because no entry
// matches. The selectors are in the cause: logged, not shown to the caller.
func (s *Server) noIdentity(sels []model.Selector) error {
	if e, ok := s.src.(Explainer); ok {
		if err := e.NoSVIDReason(sels); err != nil {
			return err
		}
	}
	return errkind.Wrap(errkind.PermissionDenied, fmt.Errorf("caller selectors %v", sels),
		"no identity issued to the caller")
}

// awaitReady returns once the Source has synced, waiting up to the
// server's ReadyWait (from the call's start) for it; errNotReady after
// that, the context's error if the caller goes away first.
func (s *Server) awaitReady(ctx context.Context, deadline time.Time) error {
	if s.src.Ready() {
		// The common case, every call once the agent has synced: no
		// Changed channel (a lock in the agent's cache) is needed when
		// there is nothing to wait for.
		return nil
	}
	for {
		changed := s.src.Changed() // before checking: no change is missed
		if s.src.Ready() {
			return nil
		}
		ok, err := s.awaitChange(ctx, changed, deadline)
		if err != nil {
			return err
		}
		if !ok {
			return errNotReady
		}
	}
}

// readyDeadline is how long a call starting now may wait for the Source.
func (s *Server) readyDeadline() time.Time { return time.Now().Add(s.readyWait) }

// awaitChange waits for changed until deadline: true when it fired, false
// at the deadline, the context's error if the caller goes away first.
func (s *Server) awaitChange(ctx context.Context, changed <-chan struct{}, deadline time.Time) (bool, error) {
	d := time.Until(deadline)
	if d <= 0 {
		return false, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

var (
	errNotReady = errkind.New(errkind.Unavailable,
		"workload api not ready: the agent has not synced its identities yet; retry with backoff")
	errStopping = errkind.New(errkind.Unavailable, "workload api shutting down; reconnect")
)
