// Package server is the Signet server: the certificate authority of one
// trust domain. It admits agents (node attestation), tells each agent which
// registration entries belong to its node, signs their workloads' SVIDs, and
// serves the admin API operators use to manage all of it.
//
// Listeners:
//   - the agent API (gRPC over TLS on BindAddress): the server presents its
//     own X509-SVID (spiffe://<td>/signet/server); every call but
//     AttestAgent needs the agent's SVID (mTLS). Admins holding an SVID of an
//     entry flagged admin may call the admin API here too.
//   - the admin API (gRPC on a local unix socket): callers are authorized by
//     their kernel-reported uid.
//   - HTTPS on HTTPAddress (optional): the OAuth 2.0 token exchange
//     endpoint (internal/tokenapi), with optional mTLS by X509-SVID.
//   - health and metrics (plain HTTP on HealthAddress, optional).
//
// Several replicas may share one PostgreSQL store. With the disk key
// manager each keeps its own CA keys, and the trust bundle published to
// agents carries every replica's; with the sealed key manager (keys sealed
// in the store under a KEK file every replica is given) the trust domain has
// one set of authorities, rotated once under the store's rotation claim,
// and every replica signs with it.
package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/agentapi"
	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/policy"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/ca"
	diskkeys "github.com/signet-id/signet/internal/ca/keymanager/disk"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/federation"
	"github.com/signet-id/signet/internal/healthz"
	"github.com/signet-id/signet/internal/preflight"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/telemetry"
	"github.com/signet-id/signet/internal/tokenapi"
)

// adminMessageSize bounds messages on the admin socket: large enough for a
// batch of 100,000 entries in one atomic CreateEntries call. Only local
// administrators reach it; the network listener takes a few MiB.
const adminMessageSize = 256 << 20

// Server is a running Signet server. Build it with New, then call Run.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      *store.Store
	ca         *ca.Manager
	cache      *entrycache.Cache
	metrics    *metrics
	agents     *agentapi.Service
	serverID   spiffeid.ID // the server's own SPIFFE ID; parent of node aliases
	instanceID string      // this replica's id; owns its CA keys

	bundle    atomic.Pointer[spiffebundle.Bundle]
	bundleMu  sync.Mutex // serializes refreshBundle
	bundleSum string     // digest of the authority set behind bundle
	tlsCert   atomic.Pointer[tls.Certificate]

	agentLn  net.Listener
	adminLn  net.Listener
	httpLn   net.Listener     // nil when HTTPAddress is empty
	httpCert *tls.Certificate // http_tls's certificate; nil: the server SVID
	uiLn     net.Listener     // the console's; nil when UIAddress is empty
	bundleLn net.Listener     // nil when BundleEndpointAddress is empty

	// The token endpoint's seam (see internal/tokenapi): who callers are,
	// and what each requested_token_type issues.
	tokenVerifiers []tokenapi.SubjectVerifier
	tokenIssuers   map[string]tokenapi.Issuer
	health         *healthz.Server // nil when HealthAddress is empty
	// The credential broker and its policy; nil without a broker section.
	broker *broker.Broker
	// brokerParts are the checked broker pieces between checkBroker and
	// startBroker; closed by closeAll when the start is refused.
	brokerParts *brokerParts
	policy      *policy.Holder
	registerer  prometheus.Registerer
	ready       atomic.Bool

	// sshCAs are the broker's ssh credentials, whose CA keys and KRL the
	// HTTPS listener serves; nil without any.
	sshCAs map[string]*sshprovider.Provider

	// fed refreshes federated bundles; fedBundles is the last good bundle
	// of each federated trust domain as loaded from the store.
	fed        *federation.Refresher
	fedBundles atomic.Pointer[map[spiffeid.TrustDomain]*spiffebundle.Bundle]

	// The change-feed follower's state (push.go).
	feedMu     sync.Mutex
	feedSeq    int64 // audit sequence number read up to
	feedLoaded bool  // feedSeq and the revocations were loaded
}

// New validates cfg, checks the data dir and the admin socket path, binds
// the network listeners, then creates the data dir, opens the store, loads
// or creates the CA and binds the admin socket, so Addr and AdminSocket are
// valid when it returns. A failed check (a port in use, a socket path that
// is too long or served by another server, a data dir someone else may
// write) creates nothing. Nothing is served until Run.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid server configuration:\n%w", err)
	}
	// Check, and bind the network listeners, before anything is created:
	// a refused start leaves no data dir, keys or database behind.
	if err := preflight.DataDir("data_dir", cfg.DataDir); err != nil {
		return nil, err
	}
	if err := preflight.SocketPath("admin_socket", cfg.AdminSocket); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "server"),
		serverID: ServerID(cfg.TrustDomain),
	}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(reg)
	s.registerer = reg
	if s.agentLn, err = preflight.Listen("bind_address", cfg.BindAddress); err != nil {
		return nil, err
	}
	if cfg.HTTPAddress != "" {
		if s.httpCert, err = loadHTTPCert(cfg.HTTPTLSCertFile, cfg.HTTPTLSKeyFile); err != nil {
			return nil, err
		}
		if s.httpLn, err = preflight.Listen("http_address", cfg.HTTPAddress); err != nil {
			return nil, err
		}
	}
	if cfg.UIAddress != "" {
		if s.uiLn, err = preflight.Listen("ui_address", cfg.UIAddress); err != nil {
			return nil, err
		}
	}
	if cfg.BundleEndpointAddress != "" {
		if s.bundleLn, err = preflight.Listen("bundle_endpoint_address", cfg.BundleEndpointAddress); err != nil {
			return nil, err
		}
	}
	if cfg.HealthAddress != "" {
		if err := preflight.TCPFree("health_address", cfg.HealthAddress); err != nil {
			return nil, err
		}
		if s.health, err = healthz.Listen(cfg.HealthAddress,
			telemetry.HTTPHandler(cfg.TracerProvider, "health", healthz.Handler(s.healthChecks(), s.metrics.gatherer)), s.log); err != nil {
			return nil, err
		}
	}
	// The broker section: KEK, policy and providers, checked (not
	// connected) before the data dir and store exist.
	if err := s.checkBroker(); err != nil {
		return nil, fmt.Errorf("invalid server configuration:\n%w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}

	if s.instanceID, err = loadInstanceID(cfg.DataDir); err != nil {
		return nil, err
	}
	s.store, err = store.Open(ctx, store.Config{
		Driver: cfg.StoreDriver, DSN: cfg.StoreDSN, Logger: cfg.Logger, Now: cfg.Now, NodeAliasParent: s.serverID,
		TracerProvider: cfg.TracerProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	keys, upstream, err := caPlugins(cfg, s.store)
	if err != nil {
		return nil, err
	}
	s.ca, err = ca.New(ca.Config{
		TrustDomain:       cfg.TrustDomain,
		ServerID:          s.instanceID,
		KeyType:           cfg.KeyType,
		CATTL:             cfg.CATTL,
		JWTKeyTTL:         cfg.JWTKeyTTL,
		JWTIssuer:         cfg.JWTIssuer,
		Store:             s.store,
		KeyManager:        keys,
		UpstreamAuthority: upstream,
		Now:               cfg.Now,
		Logger:            cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("create ca: %w", err)
	}
	if err := s.ca.Init(ctx); err != nil {
		return nil, fmt.Errorf("initialize ca: %w", err)
	}
	s.cache = entrycache.New(s.serverID)
	if err := s.refreshFeed(ctx); err != nil {
		return nil, err
	}
	if err := s.refreshBundle(ctx); err != nil {
		return nil, err
	}
	if err := s.rotateServerSVID(ctx); err != nil {
		return nil, err
	}
	if s.agents, err = s.newAgentAPI(reg); err != nil {
		return nil, err
	}
	if err := s.loadRevocations(ctx); err != nil {
		return nil, err
	}

	if err := s.startBroker(ctx); err != nil {
		return nil, err
	}
	if err := s.buildTokenAPI(); err != nil {
		return nil, err
	}
	s.registerBrokerTokens()
	if s.adminLn, err = listenAdmin(cfg.AdminSocket); err != nil {
		return nil, err
	}
	return s, nil
}

// caPlugins builds the key manager and the upstream authority (nil unless
// configured) through their registries.
func caPlugins(cfg Config, st *store.Store) (ca.KeyManager, ca.UpstreamAuthority, error) {
	kreg, err := builtin.KeyManagers()
	if err != nil {
		return nil, nil, err
	}
	ureg, err := builtin.UpstreamAuthorities()
	if err != nil {
		return nil, nil, err
	}
	kinds := cfg.KeyManager
	if len(kinds) == 0 {
		kinds = config.Plugins{diskkeys.Name: yaml.Node{}}
	}
	var errs []error
	one := func(key string, sections config.Plugins) {
		if len(sections) > 1 {
			errs = append(errs, fmt.Errorf("%s: name one kind, not %s", key, strings.Join(sections.Names(), " and ")))
		}
	}
	one(builtin.KeyManagerKey, kinds)
	one(builtin.UpstreamAuthorityKey, cfg.UpstreamAuthority)
	keys, err := kreg.BuildAll(builtin.KeyManagerDeps{DataDir: cfg.DataDir, Store: st}, kinds)
	errs = append(errs, err)
	ups, err := ureg.BuildAll(builtin.UpstreamDeps{Now: cfg.Now}, cfg.UpstreamAuthority)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("invalid server configuration:\n%w", err)
	}
	var upstream ca.UpstreamAuthority // stays a nil interface unless configured
	if len(ups) == 1 {
		upstream = ups[0]
	}
	return keys[0], upstream, nil
}

// ServerID returns the SPIFFE ID servers of trust domain td present to
// agents: spiffe://<td>/signet/server.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, "/signet/server")
}

// Addr is the agent API's listening address.
func (s *Server) Addr() net.Addr { return s.agentLn.Addr() }

// HTTPAddr is the HTTPS listener's address, or nil when it is off.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// AdminSocket is the admin API's unix socket path.
func (s *Server) AdminSocket() string { return s.cfg.AdminSocket }

// HealthAddr is the health/metrics listener's address, or nil.
func (s *Server) HealthAddr() net.Addr {
	if s.health == nil {
		return nil
	}
	return s.health.Addr()
}

// Bundle returns the current trust bundle of the server's trust domain.
func (s *Server) Bundle() *spiffebundle.Bundle { return s.bundle.Load() }

// Run serves until ctx is done, then stops every listener and closes the
// store. It returns nil on a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeAll()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	agentSrv, adminSrv, hs, err := s.grpcServers()
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	serve("agent api", func() error { return agentSrv.Serve(edge.Limits{}.Listen(s.agentLn)) })
	serve("admin api", func() error { return adminSrv.Serve(s.adminLn) })
	if s.httpLn != nil {
		serve("https", func() error { return s.serveHTTP(ctx) })
	}
	if s.uiLn != nil {
		serve("console", func() error { return s.serveConsole(ctx) })
	}
	if s.bundleLn != nil {
		serve("bundle endpoint", func() error { return s.serveBundleEndpoint(ctx) })
	}
	if s.health != nil {
		serve("health", func() error { return s.health.Run(ctx) })
	}
	serve("ca rotation", func() error { return s.ca.Run(ctx) })
	serve("federation", func() error { return s.runFederation(ctx) })
	if s.broker != nil {
		serve("broker sweeper", func() error { return s.broker.Run(ctx) })
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.maintain(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.follow(ctx) }()

	s.ready.Store(true)
	var https string
	if a := s.HTTPAddr(); a != nil {
		https = a.String()
	}
	var bundleEndpoint string
	if s.bundleLn != nil {
		bundleEndpoint = s.bundleLn.Addr().String()
	}
	s.log.Info("server started", "trust_domain", s.cfg.TrustDomain.Name(), "agent_api", s.Addr().String(), "https", https,
		"bundle_endpoint", bundleEndpoint,
		"admin_socket", s.cfg.AdminSocket, "store", s.cfg.StoreDriver, "instance", s.instanceID)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("server component failed", "error", runErr)
	}
	s.ready.Store(false)
	hs.Shutdown()
	cancel()
	stopGRPC(agentSrv)
	stopGRPC(adminSrv)
	wg.Wait()
	s.log.Info("server stopped")
	return runErr
}

// stopGRPC stops gracefully, but no longer than a few seconds.
func stopGRPC(g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		g.Stop()
	}
}

func (s *Server) closeAll() {
	for _, l := range []net.Listener{s.agentLn, s.adminLn, s.httpLn, s.uiLn, s.bundleLn} {
		if l != nil {
			_ = l.Close()
		}
	}
	if s.health != nil {
		_ = s.health.Close()
	}
	if s.broker != nil {
		_ = s.broker.Close()
	}
	if s.brokerParts != nil {
		s.brokerParts.close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
}

// maintain runs the periodic chores: follow the authorities (possibly
// written by other replicas), renew the server's own SVID, and prune
// expired join tokens, bindings and revocations. The entry cache and the
// push streams follow the store in follow (push.go).
func (s *Server) maintain(ctx context.Context) {
	tick := time.NewTicker(max(s.cfg.CacheRefresh, time.Second))
	defer tick.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.refreshBundle(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("refresh trust bundle", "error", err)
		}
		if cert := s.tlsCert.Load(); cert != nil && s.pastHalfLife(cert.Leaf) {
			if err := s.rotateServerSVID(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("renew server svid", "error", err)
			}
		}
		if now := s.cfg.Now(); now.Sub(lastPrune) > time.Minute {
			lastPrune = now
			if _, err := s.store.PruneTokenReplay(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("prune token replay records", "error", err)
			}
			if _, err := s.store.PruneSVIDBindings(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("prune svid bindings", "error", err)
			}
			if n, err := s.store.PruneRevocations(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("prune svid revocations", "error", err)
			} else if n > 0 {
				if err := s.loadRevocations(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("reload svid revocations", "error", err)
				}
			}
			if n, err := s.store.PruneJoinTokens(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("prune join tokens", "error", err)
			} else if n > 0 {
				s.log.Info("pruned expired join tokens", "count", n)
			}
		}
	}
}

// refreshBundle rebuilds the trust bundle when the set of authorities in the
// store changed. The sequence number grows with every change.
func (s *Server) refreshBundle(ctx context.Context) error {
	s.bundleMu.Lock()
	defer s.bundleMu.Unlock()
	auths, err := s.store.ListAuthorities(ctx)
	if err != nil {
		return fmt.Errorf("list authorities: %w", err)
	}
	keys := make([]string, 0, len(auths))
	for _, a := range auths {
		keys = append(keys, string(a.Kind)+"/"+a.ID+"/"+string(a.State))
	}
	slices.Sort(keys)
	sum := strings.Join(keys, ",")
	if cur := s.bundle.Load(); cur != nil && sum == s.bundleSum {
		// Follow on every refresh, not only when the set changed: it
		// skips while this replica is busy rotating, and a later refresh
		// must still catch up.
		s.followAuthorities(ctx)
		return nil
	}
	var seq uint64 = 1
	if cur := s.bundle.Load(); cur != nil {
		if n, ok := cur.SequenceNumber(); ok {
			seq = n + 1
		}
	}
	if rev := s.cache.Revision(); uint64(rev) > seq {
		seq = uint64(rev)
	}
	b, err := ca.BundleFromAuthorities(s.cfg.TrustDomain, auths, seq)
	if err != nil {
		return fmt.Errorf("build trust bundle: %w", err)
	}
	s.bundle.Store(b)
	s.bundleSum = sum
	s.followAuthorities(ctx)
	if s.agents != nil {
		s.agents.Hub().NotifySync("bundle", s.cache.Revision(), nil)
	}
	s.log.Info("trust bundle updated", "sequence", seq, "x509_authorities", len(b.X509Authorities()), "jwt_authorities", len(b.JWTAuthorities()))
	return nil
}

// followAuthorities signs with the trust domain's active authorities from
// now on when another replica rotated them (a no-op with per-replica keys).
func (s *Server) followAuthorities(ctx context.Context) {
	if err := s.ca.Follow(ctx); err != nil {
		s.log.Warn("follow the trust domain's authorities", "error", err)
	}
}

// GetX509BundleForTrustDomain implements x509bundle.Source over the current
// bundle, for verifying agents' SVIDs.
func (s *Server) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b := s.bundle.Load()
	if b == nil || td != s.cfg.TrustDomain {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return b.X509Bundle(), nil
}

// rotateServerSVID mints a fresh SVID for the agent API's TLS listener.
func (s *Server) rotateServerSVID(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate server key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("create server csr: %w", err)
	}
	chain, err := s.ca.SignX509SVID(ctx, csr, ca.X509Params{ID: s.serverID, TTL: s.cfg.AgentTTL})
	if err != nil {
		return fmt.Errorf("sign server svid: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	s.tlsCert.Store(cert)
	return nil
}

func (s *Server) pastHalfLife(c *x509.Certificate) bool {
	half := c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
	return !s.cfg.Now().Before(half)
}

// agentTLSConfig presents the server SVID and verifies any client
// certificate as an X509-SVID of the trust domain against the current
// bundle. A client certificate is optional at this layer (attestation has
// none yet); the interceptors demand one where it is required.
func (s *Server) agentTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.tlsCert.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			_, _, err := x509svid.ParseAndVerify(raw, s, x509svid.WithTime(s.cfg.Now()))
			return err
		},
		NextProtos: []string{"h2"},
	}
}

// loadInstanceID returns this replica's persistent random id, creating it
// on first start.
func loadInstanceID(dir string) (string, error) {
	path := filepath.Join(dir, "server_id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 16 {
			return id, nil
		}
		return "", fmt.Errorf("server id file %s is malformed: want 16 hex characters (delete it to make a new one)", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read server id: %w", err)
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	if err := atomicfile.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write server id: %w", err)
	}
	return id, nil
}
