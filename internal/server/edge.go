package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/adminapi"
	"github.com/signet-id/signet/internal/agentapi"
	"github.com/signet-id/signet/internal/brokerapi"
	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/healthz"
	"github.com/signet-id/signet/internal/inventoryapi"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/telemetry"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Public calls (attestation) per peer address: a sustained rate and burst
// that admit a rack of nodes booting behind one NAT, but not a flood.
const (
	attestPerSecond = 20
	attestBurst     = 50
)

// newAgentAPI builds the agent service with the configured attestation
// methods.
func (s *Server) newAgentAPI(reg prometheus.Registerer) (*agentapi.Service, error) {
	verifiers, err := s.nodeVerifiers()
	if err != nil {
		return nil, err
	}
	return agentapi.New(agentapi.Config{
		TrustDomain: s.cfg.TrustDomain, ServerID: s.serverID, Store: s.store, CA: s.ca, Entries: s.cache,
		Bundle: s.Bundle, FederatedBundles: s.FederatedBundles, Verifiers: verifiers, BrokerURL: advertiseURL(s.cfg, s.HTTPAddr()), AgentTTL: s.cfg.AgentTTL,
		DefaultX509TTL: s.cfg.DefaultX509TTL, DefaultJWTTTL: s.cfg.DefaultJWTTTL,
		Now: s.cfg.Now, Log: s.log.With("component", "agent api"), Registerer: reg,
	})
}

// nodeVerifiers builds the node attestation methods of node_attestors
// through the registry; join_token and agent_reauth are on unless switched
// off.
func (s *Server) nodeVerifiers() ([]nodeattest.Verifier, error) {
	reg, err := builtin.NodeVerifiers()
	if err != nil {
		return nil, err
	}
	sections := config.Plugins{}
	maps.Copy(sections, s.cfg.NodeAttestors)
	for _, name := range builtin.DefaultNodeVerifiers {
		if _, ok := sections[name]; !ok {
			sections[name] = yaml.Node{} // on by default
		}
	}
	deps := builtin.VerifierDeps{TrustDomain: s.cfg.TrustDomain, JoinTokens: s.store, Nodes: s.store, Authorities: s.store,
		ReauthWindow: s.cfg.AgentReauthWindow, TPMAllowList: tpmAllowList{s.store}, Now: s.cfg.Now, Log: s.log}
	verifiers, err := reg.BuildAll(deps, sections)
	if err != nil {
		return nil, fmt.Errorf("invalid server configuration:\n%w", err)
	}
	verifiers = append(verifiers, s.cfg.NodeVerifiers...)
	admits := false // a method that admits new nodes, not only returning ones
	for _, v := range verifiers {
		admits = admits || v.Name() != reauth.Name
	}
	if !admits {
		return nil, errors.New("invalid server configuration: node_attestors: every method that admits new nodes is disabled, so no new agent could ever attest")
	}
	return verifiers, nil
}

// tpmAllowList is the store's allowances for the tpm method (signet agent
// allow --tpm-ek-hash).
type tpmAllowList struct{ st *store.Store }

func (l tpmAllowList) EKAllowed(ctx context.Context, ekHash string) (bool, error) {
	return l.st.NodeAllowed(ctx, "tpm", ekHash)
}

// grpcServers builds the two gRPC servers, each with its interceptor chain
// and bounds, and checks that each method table matches exactly what is
// registered.
func (s *Server) grpcServers() (agentSrv, adminSrv *grpc.Server, hs *health.Server, err error) {
	admin := adminapi.New(adminapi.Config{
		TrustDomain: s.cfg.TrustDomain, ServerID: s.serverID, JoinTokenTTL: s.cfg.JoinTokenTTL, MaxSVIDTTL: MaxSVIDTTL,
		Store: s.store, CA: s.ca, Bundle: s.Bundle, Changed: s.afterWrite, Created: s.afterCreate, StreamCreated: s.streamCreated, RefreshBundle: s.refreshBundle,
		Now: s.cfg.Now, Log: s.log.With("component", "admin api"), Federation: s.federationRefresher(),
	})
	inv := inventoryapi.Config{Store: s.store, ServerID: s.serverID, DefaultX509TTL: s.cfg.DefaultX509TTL,
		DefaultJWTTTL: s.cfg.DefaultJWTTTL, Now: s.cfg.Now, Log: s.log.With("component", "inventory api")}
	if b := s.broker; b != nil {
		inv.Credentials = b.CredentialProviders
	}

	agentChain := &edge.Listener{
		Name: "agent api", Methods: TLSMethods(), Authenticate: s.authenticateTLS,
		Limit: edge.NewPeerLimiter(attestPerSecond, attestBurst), Log: s.log, Observe: s.metrics.observe,
	}
	agentSrv = grpc.NewServer(append(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.agentTLSConfig()))},
		edge.Limits{}.ServerOptions()...), append(agentChain.ServerOptions(), telemetry.GRPCServerOption(s.cfg.TracerProvider))...)...)
	s.agents.Register(agentSrv)
	admin.Register(agentSrv)
	inventoryapi.Register(agentSrv, inv)
	brokerapi.Register(agentSrv, s.broker)

	socketChain := &edge.Listener{
		Name: "admin socket", Methods: SocketMethods(), Authenticate: s.authenticateSocket, Log: s.log, Observe: s.metrics.observe,
	}
	adminSrv = grpc.NewServer(append(append([]grpc.ServerOption{grpc.Creds(workloadattest.NewCredentials())},
		edge.Limits{MaxRecvMsgSize: adminMessageSize, MaxSendMsgSize: adminMessageSize, MaxConnections: -1,
			IdleTimeout: time.Hour}.ServerOptions()...), append(socketChain.ServerOptions(), telemetry.GRPCServerOption(s.cfg.TracerProvider))...)...)
	admin.Register(adminSrv)
	inventoryapi.Register(adminSrv, inv)
	brokerapi.Register(adminSrv, s.broker)
	hs = health.NewServer()
	healthpb.RegisterHealthServer(adminSrv, hs)

	if err := errors.Join(agentChain.Verify(agentSrv), socketChain.Verify(adminSrv)); err != nil {
		agentSrv.Stop()
		adminSrv.Stop()
		return nil, nil, nil, err
	}
	return agentSrv, adminSrv, hs, nil
}

// TLSMethods is the method table of the agent listener (TLS, with mTLS for
// everything but attestation): the agent service, and the admin, inventory
// and audit services for holders of an admin SVID.
func TLSMethods() edge.Table {
	t := agentapi.Methods()
	for m, a := range adminapi.Methods() {
		t[m] = a
	}
	for m, a := range inventoryapi.Methods() {
		t[m] = a
	}
	for m, a := range brokerapi.Methods() {
		t[m] = a
	}
	return t
}

// SocketMethods is the method table of the admin unix socket: the admin,
// inventory and audit services for admitted uids, and gRPC health for
// anyone who can reach the socket.
func SocketMethods() edge.Table {
	t := adminapi.Methods()
	for m, a := range inventoryapi.Methods() {
		t[m] = a
	}
	for m, a := range brokerapi.Methods() {
		t[m] = a
	}
	return t.Service(healthpb.Health_ServiceDesc, edge.Public)
}

// authenticateTLS admits callers of the agent listener: anyone for public
// methods, attested agents for agent methods, and holders of an admin
// entry's SVID for admin methods.
func (s *Server) authenticateTLS(ctx context.Context, method string, access edge.Access) (context.Context, error) {
	switch access {
	case edge.Public:
		return ctx, nil
	case edge.Agent:
		return s.agents.AuthenticateAgent(ctx)
	case edge.Admin:
		_, id, ok := agentapi.PeerSVID(ctx)
		if !ok {
			return ctx, errkind.New(errkind.Unauthenticated, "an X509-SVID is required (mTLS)")
		}
		if leaf, _, _ := agentapi.PeerSVID(ctx); s.agents.Hub().SerialRevoked(strings.ToLower(leaf.SerialNumber.Text(16))) {
			s.log.Warn("admin call denied: the caller's svid was revoked", "spiffe_id", id.String(), "method", method)
			return ctx, errkind.New(errkind.PermissionDenied, "caller is not an admin")
		}
		if !s.cache.IsAdmin(id, s.cfg.Now()) {
			s.log.Warn("admin call denied: caller's SVID is not of an admin entry", "spiffe_id", id.String(), "method", method)
			return ctx, errkind.New(errkind.PermissionDenied, "caller is not an admin")
		}
		return store.WithActor(ctx, "admin:"+id.String()), nil
	}
	return ctx, errkind.New(errkind.PermissionDenied, "method is not available on this listener")
}

// errSocketDenied tells a local user why the admin socket refused them.
var errSocketDenied = errkind.New(errkind.PermissionDenied,
	"permission denied: only root, the server's user and admin_uids may use the admin socket")

// authenticateSocket admits callers of the admin socket by their
// kernel-reported uid: root, the server's own user and configured admin
// uids, whatever the socket's file permissions allow.
func (s *Server) authenticateSocket(ctx context.Context, method string, access edge.Access) (context.Context, error) {
	if access == edge.Public {
		return ctx, nil
	}
	cred, ok := workloadattest.PeerFromContext(ctx)
	if !ok {
		return ctx, errkind.New(errkind.Unauthenticated, "caller credentials unavailable")
	}
	if access != edge.Admin {
		return ctx, errSocketDenied
	}
	if cred.UID != 0 && cred.UID != uint32(os.Geteuid()) && !slices.Contains(s.cfg.AdminUIDs, cred.UID) {
		s.log.Warn("admin call denied", "uid", cred.UID, "pid", cred.PID, "method", method)
		return ctx, errSocketDenied
	}
	return store.WithActor(ctx, fmt.Sprintf("admin:uid:%d", cred.UID)), nil
}

// afterWrite reads the change feed at once, so agents syncing right after
// an admin change see it and the push streams carry it before the admin
// call returns.
func (s *Server) afterWrite(ctx context.Context) {
	if err := s.refreshFeed(ctx); err != nil {
		s.log.Warn("follow the store's change feed", "error", err)
	}
}

// afterCreate takes a batch of entries the admin API just created into the
// entry cache as they are, when nothing else was written since the cache's
// revision; otherwise it reads the changes back like afterWrite.
func (s *Server) afterCreate(ctx context.Context, created []store.Entry) {
	s.feedMu.Lock()
	applied := len(created) > 0 && s.cache.ApplyCreated(created[0].Revision, created)
	s.feedMu.Unlock()
	if applied {
		s.metrics.cacheEntries.Set(float64(s.cache.Len()))
		parents := map[spiffeid.ID]bool{}
		all := false
		for _, e := range created {
			parents[e.ParentID] = true
			all = all || e.ParentID == s.serverID
		}
		affects := s.nodeIn(parents)
		if all {
			affects = nil
		}
		s.agents.Hub().NotifySync("entries", created[0].Revision, affects)
		return
	}
	s.afterWrite(ctx)
}

// createdSink folds the entries of one CreateEntriesStream into the entry
// cache: staged in the cache's compact form as the stream writes them
// (entrycache.Staged), applied after the commit, so the batch is never
// read back.
type createdSink struct {
	s       *Server
	staged  *entrycache.Staged
	parents map[spiffeid.ID]bool
	all     bool // a node alias is among them: every node is concerned
}

func (s *Server) streamCreated() adminapi.CreatedSink {
	return &createdSink{s: s, staged: s.cache.Stage(), parents: map[spiffeid.ID]bool{}}
}

func (k *createdSink) Add(written []*store.Entry) {
	k.staged.Add(written...)
	for _, e := range written {
		k.parents[e.ParentID] = true
		k.all = k.all || e.ParentID == k.s.serverID
	}
}

// Commit commits with the feed lock held from before the commit: the cache
// is first brought up to the revision before the batch's, so the
// follower cannot read the batch back whole as a change set in between.
// When the cache cannot take the staged entries (it moved), the change
// feed is read instead.
func (k *createdSink) Commit(ctx context.Context, commit func(context.Context) (int64, error)) (int64, error) {
	s := k.s
	s.feedMu.Lock()
	if err := s.refreshCacheLocked(ctx); err != nil {
		s.log.Warn("follow the store's change feed", "error", err)
	}
	rev, err := commit(ctx)
	if err != nil {
		s.feedMu.Unlock()
		return 0, err
	}
	applied := s.cache.ApplyStaged(rev, k.staged)
	s.feedMu.Unlock()
	if !applied {
		s.afterWrite(ctx)
		return rev, nil
	}
	s.metrics.cacheEntries.Set(float64(s.cache.Len()))
	affects := s.nodeIn(k.parents)
	if k.all {
		affects = nil
	}
	s.agents.Hub().NotifySync("entries", rev, affects)
	return rev, nil
}

// listenAdmin creates the admin socket, owner-only (0600) inside a 0700
// directory when the server owns it.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create admin socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin_socket %s exists and is not a socket: remove it or choose another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("admin_socket %s is in use: is another server running on this data dir?", path)
		}
		_ = os.Remove(path)
	}
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on admin_socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("restrict admin socket: %w", err)
	}
	return l, nil
}

// metrics are the server's Prometheus collectors.
type metrics struct {
	rpcs         *prometheus.CounterVec
	cacheEntries prometheus.Gauge
	cacheRefresh prometheus.Histogram
	// tokenRequests counts token endpoint requests by requested token
	// type and OAuth outcome.
	tokenRequests *prometheus.CounterVec
	gatherer      prometheus.Gatherer
	known         edge.Table // every method served, for bounded labels
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_rpcs_total", Help: "gRPC calls handled, by method and status code.",
		}, []string{"method", "code"}),
		cacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signet_server_entry_cache_entries", Help: "Registration entries in the server's cache.",
		}),
		cacheRefresh: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signet_server_entry_cache_refresh_seconds", Help: "Time to apply a change set from the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_token_requests_total", Help: "Token endpoint (POST /oauth2/token) requests, by requested_token_type and OAuth error code (ok on success).",
		}, []string{"requested_token_type", "code"}),
		known: TLSMethods(),
	}
	maps.Copy(m.known, SocketMethods())
	reg.MustRegister(m.rpcs, m.cacheEntries, m.cacheRefresh, m.tokenRequests)
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		m.gatherer = prometheus.DefaultGatherer
	}
	return m
}

// observe counts a call by method and status code. Methods outside the
// tables are counted under one label, so a scan of made-up method names
// cannot grow the metric without bound.
func (m *metrics) observe(method string, code codes.Code) {
	if _, ok := m.known[method]; !ok {
		method = "unknown"
	}
	m.rpcs.WithLabelValues(method, code.String()).Inc()
}

// healthChecks are the readiness checks behind /readyz: the store
// answers, the CA has an authority signing, and the APIs are serving.
func (s *Server) healthChecks() map[string]healthz.Check {
	return map[string]healthz.Check{
		"store": func(ctx context.Context) error {
			if err := s.store.Ping(ctx); err != nil {
				return errors.New("store unreachable")
			}
			return nil
		},
		"ca": func(context.Context) error {
			if s.tlsCert.Load() == nil || s.Bundle() == nil {
				return errors.New("no active authority")
			}
			return nil
		},
		"serving": func(context.Context) error {
			if !s.ready.Load() {
				return errors.New("not serving")
			}
			return nil
		},
	}
}
