// Package agent is the Signet agent: one per node, it attests the node to the
// server, keeps the node's registration entries in sync, gets an X509-SVID
// signed for each of them with a key generated on the node, and serves those
// SVIDs, JWT-SVIDs and the trust bundle to local workloads through the
// Workload API (internal/workload).
//
// # Life cycle
//
// New validates the configuration; Run does the work until its context is
// cancelled. Run locks the data dir, loads the persisted agent SVID (or
// attests with the join token when there is none), starts the Workload API
// on Config.SocketPath and then runs three loops: the sync loop (every
// SyncInterval, jittered), the agent SVID renewal (at half its lifetime) and
// the Workload API server.
//
// # Persistence
//
// The data dir (0700) holds agent.lock, the agent SVID and key
// (agent_svid.pem, agent_key.pem, 0600) and the newest trust bundle
// (bundle.json, SPIFFE bundle format), all replaced atomically. Workload
// SVIDs are never written to disk: after a restart they are signed again,
// with fresh keys.
//
// # Availability
//
// The agent is ready after its first successful sync since it started,
// including the signing pass that follows it; WaitReady blocks until then.
// From then on it stays ready: while the server is unreachable it keeps
// serving the SVIDs and bundle it holds (dropping each SVID when it expires),
// retries with capped exponential backoff and logs one warning per outage.
//
// # Outages and expiry
//
// A server outage never strands the node. When the server stays away for
// longer than the agent SVID's remaining lifetime, the agent keeps running
// and keeps its key: it goes on serving the workload SVIDs that are still
// valid, pauses syncing, says what it waits for in its log and health
// check (Synced; the Workload API's gRPC health service), and keeps trying.
// Once the server answers, the agent re-establishes the node without an
// operator: with its node attestor if that can attest again on its own,
// else by proving possession of the expired SVID's key (the agent_reauth
// method, accepted by the server within its agent_reauth_window). An agent
// restarted with an expired SVID on disk does the same.
//
// # Eviction
//
// When the server refuses the agent's own SVID (the node was evicted or
// banned), the agent confirms it by trying to renew the SVID; if that is
// refused too, or the server refuses to re-establish a node whose SVID
// expired, it deletes the persisted SVID and Run returns ErrEvicted. The
// node must then be attested again with a new join token.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/sync/errgroup"

	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/workload"
	"github.com/signet-id/signet/internal/workload/sds"
)

// ErrEvicted is returned by Run when the server refused the agent itself:
// the node was evicted or banned. Run's error wraps it.
var ErrEvicted = errors.New("agent was evicted or banned by the server: re-attest the node with a new join token")

// Log keys used by the agent.
const (
	logKeyError    = "error"
	logKeyEntryID  = "entry_id"
	logKeyAgentID  = "agent_id"
	logKeyNotAfter = "not_after"
)

// Agent is a running Signet agent. Create it with New and start it with Run.
type Agent struct {
	cfg      Config
	td       spiffeid.TrustDomain
	log      *slog.Logger
	met      *metrics
	attestor nodeattest.Attestor // nil when no token was given
	cache    *cache
	svid     svidHolder
	client   *serverClient

	renewNow    chan struct{} // asks the renewal loop to renew at once
	syncNow     chan struct{} // asks the sync loop to sync at once (watch.go)
	renewAt     atomic.Int64  // unix nanos when the agent SVID is due for renewal
	lastRenewal atomic.Int64  // unix nanos when the last renewal attempt started

	svidMu      sync.Mutex
	svidChanged chan struct{} // closed and replaced by setSVID

	// Owned by renewLoop.
	expiryLogged bool // the expiry of the current SVID was logged
	tokenSpent   bool // the configured join token was presented

	// brokerURL is the broker base URL the server advertised at the last
	// successful sync ("" when none).
	brokerURL atomic.Pointer[string]

	// workload is the Workload API server, once Run has created it.
	workload atomic.Pointer[workload.Server]

	started time.Time // when Run began
	timings startupTimings

	procs *procs // GOMAXPROCS while signing and while not

	running   atomic.Bool
	readyOnce sync.Once
	ready     chan struct{} // closed after the first successful sync
	done      chan struct{} // closed when Run returns
	runErr    error         // Run's result, set before done is closed
}

// New validates cfg, applies defaults and returns an agent ready to Run. It
// does not touch the network. When neither cfg.TrustDomain nor the bootstrap
// bundle names the trust domain, it reads it from the agent SVID persisted
// in cfg.DataDir.
func New(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	td, err := resolveTrustDomain(cfg)
	if err != nil {
		return nil, fmt.Errorf("invalid agent config: %w", err)
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	attestor := cfg.NodeAttestor
	if attestor == nil && cfg.JoinToken != "" {
		if attestor, err = jointoken.New(cfg.JoinToken); err != nil {
			return nil, fmt.Errorf("invalid agent config: JoinToken: %w", err)
		}
	}
	if len(cfg.Attestors) == 0 {
		if cfg.Attestors, err = defaultAttestors(cfg.Logger); err != nil {
			return nil, fmt.Errorf("create default workload attestors: %w", err)
		}
	}
	log := cfg.Logger.With("component", "agent")
	var bootstrap *spiffebundle.Bundle
	if len(cfg.TrustBundle) > 0 {
		bootstrap = spiffebundle.FromX509Authorities(td, cfg.TrustBundle)
	}
	a := &Agent{
		cfg:         cfg,
		td:          td,
		log:         log,
		met:         met,
		attestor:    attestor,
		cache:       newCache(td, bootstrap, cfg.Clock.Now, log.With("subcomponent", "cache"), met),
		renewNow:    make(chan struct{}, 1),
		syncNow:     make(chan struct{}, 1),
		svidChanged: make(chan struct{}),
		ready:       make(chan struct{}),
		done:        make(chan struct{}),
	}
	servers, _ := ParseServerAddresses(cfg.ServerAddress) // validated above
	a.client = newServerClient(servers, td, a.cache, &a.svid, cfg.MaxBackoff, cfg.Clock.Now, log.With("subcomponent", "server-client"))
	a.cache.signJWT = a.signJWT
	a.cache.health = a.Synced
	a.procs = newProcs(cfg.IdleProcs, DefaultIdleProcsGrace, cfg.Clock, met.setGOMAXPROCS)
	return a, nil
}

// resolveTrustDomain picks the trust domain: the configured one, else the
// one the bootstrap CAs name, else the persisted agent SVID's.
func resolveTrustDomain(cfg Config) (spiffeid.TrustDomain, error) {
	if cfg.TrustDomain != "" {
		return spiffeid.TrustDomainFromString(cfg.TrustDomain)
	}
	if len(cfg.TrustBundle) > 0 {
		return trustDomainFromCerts(cfg.TrustBundle)
	}
	d := &dataDir{path: cfg.DataDir}
	svid, err := d.loadAgentSVID(spiffeid.TrustDomain{})
	if err != nil || svid == nil {
		return spiffeid.TrustDomain{}, errors.New("TrustDomain: required when TrustBundle is empty and the data dir holds no agent SVID")
	}
	return svid.ID.TrustDomain(), nil
}

// TrustDomain returns the agent's trust domain.
func (a *Agent) TrustDomain() spiffeid.TrustDomain { return a.td }

// SocketPath returns the Workload API socket path.
func (a *Agent) SocketPath() string { return a.cfg.SocketPath }

// ID returns the agent's SPIFFE ID, or the zero ID before it has an SVID.
func (a *Agent) ID() spiffeid.ID {
	if s := a.svid.p.Load(); s != nil {
		return s.ID
	}
	return spiffeid.ID{}
}

// Ready reports whether the agent has synced since Run started.
func (a *Agent) Ready() bool { return a.cache.Ready() }

// Synced reports whether the agent is in sync with the server: nil once it
// has synced and while its own SVID is valid, otherwise an error saying
// what it waits for. It is the agent's readiness check (/readyz "synced")
// and the Workload API's gRPC health answer. An agent whose SVID expired
// still serves the workload SVIDs that are valid, but gets no new ones
// until the server re-establishes it.
func (a *Agent) Synced(context.Context) error {
	if s := a.svid.p.Load(); s != nil {
		if leaf := s.Certificates[0]; !a.cfg.Clock.Now().Before(leaf.NotAfter) {
			return fmt.Errorf("agent svid expired at %s: waiting for the server at %s to re-establish this node (agent_reauth); "+
				"serving the workload SVIDs that are still valid meanwhile",
				leaf.NotAfter.UTC().Format(time.RFC3339), a.cfg.ServerAddress)
		}
	}
	if !a.Ready() {
		return fmt.Errorf("not synced with the server at %s yet", a.cfg.ServerAddress)
	}
	return nil
}

// WaitReady blocks until the agent's first successful sync (and the signing
// of the SVIDs it made due), until Run returns, or until ctx is done. It
// returns nil once ready, Run's error (or a generic one) when Run returned
// first, and ctx's error otherwise.
func (a *Agent) WaitReady(ctx context.Context) error {
	select {
	case <-a.ready:
		return nil
	case <-a.done:
		if a.runErr != nil {
			return fmt.Errorf("agent stopped before it was ready: %w", a.runErr)
		}
		return errors.New("agent stopped before it was ready")
	case <-ctx.Done():
		return fmt.Errorf("wait for agent to be ready: %w", ctx.Err())
	}
}

// Run runs the agent until ctx is done (returning nil) or a fatal error: the
// data dir is locked by another agent, a node without an SVID cannot be
// attested, the agent was evicted or banned (ErrEvicted), or the Workload
// API server failed. An unreachable server is never fatal once the node
// holds an SVID, expired or not. Run may be called once.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called more than once")
	}
	defer func() {
		a.runErr = err
		close(a.done)
	}()
	a.started = time.Now()
	dir, err := openDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	defer a.client.Close()

	if err := a.loadBundle(dir); err != nil {
		return err
	}
	svid, received, err := a.loadOrAttest(ctx, dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.setSVID(svid, received)
	a.log.Info("agent started", logKeyAgentID, svid.ID.String(), "server", a.cfg.ServerAddress,
		logKeyNotAfter, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))

	ws, err := workload.New(workload.Config{
		Source:    a.cache,
		Attestors: a.cfg.Attestors,
		Logger:    a.cfg.Logger,
		Metrics:   a.cfg.Registerer,
		// Envoy SDS and AgentInfo on the same socket, for the same callers.
		Services: []workload.Service{sds.New(a.cfg.Logger), &infoService{a: a}},
		// Spans for every call on the socket, when tracing is on.
		TracerProvider: a.cfg.TracerProvider,
	})
	if err != nil {
		return fmt.Errorf("create workload api server: %w", err)
	}
	a.workload.Store(ws)
	l, err := workload.Listen(a.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("listen for the workload api: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.syncLoop(gctx, dir) })
	g.Go(func() error { return a.renewLoop(gctx, dir) })
	g.Go(func() error { return a.watchLoop(gctx) })
	g.Go(func() error { a.procs.run(gctx, nil); return nil })
	g.Go(func() error {
		if err := ws.Serve(gctx, l); err != nil && gctx.Err() == nil {
			return fmt.Errorf("serve workload api: %w", err)
		}
		return nil
	})
	err = g.Wait()
	if err == nil && ctx.Err() != nil {
		a.log.Info("agent stopped")
	}
	return err
}

// loadBundle installs the persisted trust bundle in the cache when there is
// a usable one, keeping the bootstrap bundle otherwise.
func (a *Agent) loadBundle(dir *dataDir) error {
	b, err := dir.loadBundle(a.td)
	switch {
	case err != nil:
		a.log.Warn("ignoring persisted trust bundle", "file", dir.file(bundleFile), logKeyError, err)
	case b != nil:
		a.cache.setBundle(b)
		return nil
	}
	if a.cache.Bundle() == nil {
		return fmt.Errorf("invalid agent config: TrustBundle: required: %s holds no usable %s", a.cfg.DataDir, bundleFile)
	}
	return nil
}

// setSVID installs the agent SVID for TLS and metrics, schedules its
// renewal and wakes waitSVID; received is when it arrived from the server
// (zero if unknown).
func (a *Agent) setSVID(s *x509svid.SVID, received time.Time) {
	leaf := s.Certificates[0]
	a.renewAt.Store(renewTime(leaf.NotBefore, leaf.NotAfter, received).UnixNano())
	a.svid.p.Store(s)
	a.met.setAgentSVIDExpiry(leaf.NotAfter)
	a.svidMu.Lock()
	close(a.svidChanged)
	a.svidChanged = make(chan struct{})
	a.svidMu.Unlock()
}

// svidExpired reports whether the agent SVID has expired, with a channel
// closed at the next setSVID.
func (a *Agent) svidExpired() (bool, <-chan struct{}) {
	a.svidMu.Lock()
	ch := a.svidChanged
	a.svidMu.Unlock()
	s := a.svid.p.Load()
	return s == nil || !a.cfg.Clock.Now().Before(s.Certificates[0].NotAfter), ch
}

// Changed returns a channel closed at the next change of what the agent
// serves to workloads (entries, SVIDs, bundles).
func (a *Agent) Changed() <-chan struct{} { return a.cache.Changed() }

// ServesSerial reports whether the agent holds, and so serves, a workload
// X509-SVID with the serial (lowercase hex, as in the audit log).
func (a *Agent) ServesSerial(serial string) bool { return a.cache.servesSerial(serial) }

// SVIDSerials returns the serials of the workload X509-SVIDs the agent
// holds, by entry ID.
func (a *Agent) SVIDSerials() map[string]string { return a.cache.serials() }

// markReady records the first successful sync.
func (a *Agent) markReady() {
	a.readyOnce.Do(func() {
		a.cache.ready.Store(true)
		close(a.ready)
		a.log.Info("agent ready: first sync complete")
		a.log.Info("initial sync timings", a.timings.attrs(time.Since(a.started))...)
	})
}
