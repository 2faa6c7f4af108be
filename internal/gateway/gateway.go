// Package gateway runs `signet gateway`: SPIFFE mTLS beside an application
// that cannot do it itself.
//
// Ingress routes terminate TLS 1.3 with the gateway's own X.509-SVID from
// the agent, verify the peer's certificate against the agent's bundles and
// authorize the peer's SPIFFE ID with the route's allow rules (the broker
// policy's CEL evaluator, package broker/policy) during the handshake, so a
// refused peer never gets a byte through to the application. HTTP routes
// then forward each request with X-Forwarded-Client-Spiffe-Id set to the
// peer's ID (a header of that name from the peer is removed); TCP routes
// copy bytes both ways. Egress routes take the application's plain TCP
// connections on a local port: tcp routes carry them over SPIFFE mTLS to
// an upstream whose SPIFFE ID must be the configured one; postgres routes
// speak the PostgreSQL protocol to the application (pgproto3), which
// authenticates with nothing, and log in to the upstream server (pgconn)
// as a database user leased from the credential broker with the gateway's
// SVID, then copy bytes both ways. Each postgres route keeps its lease
// fresh in the background (see lease), so the application never holds a
// credential.
//
// The SVID and bundles come from a go-spiffe X509Source: a rotated SVID is
// used for new handshakes while established connections carry on. Each
// route runs on its own; a backend that fails affects only its route's
// connections.
package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/logsafe"
)

// HeaderClientID is the header that carries the peer's SPIFFE ID to HTTP
// applications.
const HeaderClientID = "X-Forwarded-Client-Spiffe-Id"

// MaxConnsPerRoute bounds each route's open connections; further peers
// wait in the listen backlog.
const MaxConnsPerRoute = 4096

// Timeouts.
const (
	handshakeTimeout = 10 * time.Second
	dialTimeout      = 10 * time.Second
	shutdownGrace    = 5 * time.Second
)

// Log keys.
const (
	logKeyRoute    = "route"
	logKeyPeer     = "peer"
	logKeySPIFFEID = "spiffe_id"
	logKeyErr      = "err"
	logKeyAddr     = "addr"
)

// Gateway serves the routes of one Config. Create it with New.
type Gateway struct {
	cfg  *Config
	src  x509Source
	log  *slog.Logger
	opts Options

	mu     sync.Mutex
	addrs  map[string]net.Addr // bound address by route ("ingress[0]")
	broker *brokerclient.Client
}

// Options are what a Gateway needs besides its Config and SVID source.
// The zero value discards logs, uses the real clock and resolves the
// broker from broker_url or $SIGNET_BROKER_URL only.
type Options struct {
	Logger *slog.Logger
	// LearnedBrokerURL, when not nil, says which broker URL the local
	// agent learned from its server (brokerclient.FromAgent); it is asked
	// when neither broker_url nor $SIGNET_BROKER_URL is set.
	LearnedBrokerURL func(context.Context) (string, error)
	// Clock times lease renewal; nil is the real clock.
	Clock Clock
	// Revoked, when set, reports whether a peer's X509-SVID (its leaf and
	// SPIFFE ID) was revoked: ingress refuses such peers
	// (AgentRevocations.Revoked).
	Revoked func(leaf *x509.Certificate, id spiffeid.ID) bool
}

// x509Source is what the gateway needs of go-spiffe's X509Source.
type x509Source interface {
	x509svid.Source
	x509bundle.Source
}

// New returns a Gateway for cfg, taking its SVID and bundles from src
// (go-spiffe's *workloadapi.X509Source); the same SVID authenticates the
// gateway to the broker.
func New(cfg *Config, src x509Source, opts Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	return &Gateway{cfg: cfg, src: src, log: log.With("component", "gateway"), opts: opts, addrs: map[string]net.Addr{}}, nil
}

// brokerClient returns the client of the broker, resolving its URL on
// first use (broker_url, $SIGNET_BROKER_URL, the agent's); a failure is
// not kept, so the next call tries again.
func (g *Gateway) brokerClient(ctx context.Context) (credentialGetter, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broker != nil {
		return g.broker, nil
	}
	base, err := brokerclient.ResolveURL(ctx, "broker_url", g.cfg.BrokerURL, g.opts.LearnedBrokerURL)
	if err != nil {
		return nil, err
	}
	c, err := brokerclient.New(base, g.src)
	if err != nil {
		return nil, err
	}
	g.broker = c
	return c, nil
}

// Addr returns the bound address of route ("ingress[0]", "egress[1]"),
// useful with port 0, or nil before it listens.
func (g *Gateway) Addr(route string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addrs[route]
}

// Run listens on every route and serves until ctx is done; then it stops
// accepting, gives open HTTP requests up to five seconds and returns nil.
// It fails at once when a route cannot listen. Postgres routes request
// their leases in the background: a broker that cannot be reached is
// retried and refuses only those routes' new connections, with the
// reason.
func (g *Gateway) Run(ctx context.Context) error {
	type bound struct {
		l     net.Listener
		serve func(context.Context, net.Listener) error
	}
	var routes []bound
	closeAll := func() {
		for _, r := range routes {
			r.l.Close()
		}
	}
	for i := range g.cfg.Ingress {
		r := &g.cfg.Ingress[i]
		l, err := g.listen(fmt.Sprintf("ingress[%d]", i), r.Listen)
		if err != nil {
			closeAll()
			return err
		}
		routes = append(routes, bound{l, func(ctx context.Context, l net.Listener) error { return g.serveIngress(ctx, i, r, l) }})
	}
	for i := range g.cfg.Egress {
		r := &g.cfg.Egress[i]
		l, err := g.listen(fmt.Sprintf("egress[%d]", i), r.Listen)
		if err != nil {
			closeAll()
			return err
		}
		if r.Protocol == ProtocolPostgres || r.Protocol == ProtocolHTTP {
			name := fmt.Sprintf("egress[%d] (%s)", i, r.Listen)
			req := brokerclient.Request{Credential: r.Credential, Context: r.Context, TTL: time.Duration(r.TTL)}
			ls := newLease(name, req, g.brokerClient, g.opts.Clock, g.log)
			serve := func(ctx context.Context, l net.Listener) error { return g.serveHTTPEgress(ctx, name, r, ls, l) }
			if r.Protocol == ProtocolPostgres {
				pr := &pgRoute{name: name, cfg: r, sessions: map[uint32][]byte{}, lease: ls}
				serve = func(ctx context.Context, l net.Listener) error { return g.servePostgres(ctx, pr, l) }
			}
			routes = append(routes, bound{l, func(ctx context.Context, l net.Listener) error {
				lctx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); ls.run(lctx) }()
				defer func() { stop(); <-done }()
				return serve(ctx, l)
			}})
			continue
		}
		routes = append(routes, bound{l, func(ctx context.Context, l net.Listener) error { return g.serveEgress(ctx, i, r, l) }})
	}
	eg, ectx := errgroup.WithContext(ctx)
	for _, r := range routes {
		eg.Go(func() error { return r.serve(ectx, r.l) })
	}
	err := eg.Wait()
	g.mu.Lock()
	if g.broker != nil {
		g.broker.Close()
	}
	g.mu.Unlock()
	return err
}

func (g *Gateway) listen(route, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s.listen %s: %w", route, addr, err)
	}
	l = netutil.LimitListener(l, MaxConnsPerRoute)
	g.mu.Lock()
	g.addrs[route] = l.Addr()
	g.mu.Unlock()
	g.log.Info("route listening", slog.String(logKeyRoute, route), slog.String(logKeyAddr, l.Addr().String()))
	return l, nil
}

// authorizer checks a peer's SPIFFE ID against the route's rules and logs
// refusals (every decision is explainable from the log).
func (g *Gateway) authorizer(route string, r *Ingress) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if g.opts.Revoked != nil && len(chains) > 0 && len(chains[0]) > 0 {
			if leaf := chains[0][0]; g.opts.Revoked(leaf, id) {
				serial := strings.ToLower(leaf.SerialNumber.Text(16))
				g.log.Warn("peer refused: its x509-svid was revoked", slog.String(logKeyRoute, route),
					slog.String(logKeySPIFFEID, id.String()), slog.String("serial", serial))
				return fmt.Errorf("%s: %s: %w", route, id, errRevokedPeer)
			}
		}
		for _, rule := range r.rules {
			ok, err := rule.Allow(id)
			if err != nil {
				g.log.Warn("allow rule failed; treated as false", slog.String(logKeyRoute, route),
					slog.String(logKeySPIFFEID, id.String()), slog.String(logKeyErr, err.Error()))
				continue
			}
			if ok {
				return nil
			}
		}
		g.log.Info("peer refused: no allow rule matches", slog.String(logKeyRoute, route), slog.String(logKeySPIFFEID, id.String()))
		return fmt.Errorf("%s: %s is not allowed", route, id)
	}
}

func (g *Gateway) serverTLS(route string, r *Ingress) *tls.Config {
	c := tlsconfig.MTLSServerConfig(g.src, g.src, g.authorizer(route, r))
	c.MinVersion = tls.VersionTLS13
	// No session resumption: go-spiffe verifies the peer's SVID and the
	// allow rule in VerifyPeerCertificate, which a resumed session skips,
	// so a resumed peer would escape a bundle change or a revocation.
	// Keep-alive connections amortise the full handshakes.
	c.SessionTicketsDisabled = true
	return c
}

func (g *Gateway) serveIngress(ctx context.Context, i int, r *Ingress, l net.Listener) error {
	route := fmt.Sprintf("ingress[%d] (%s)", i, r.Listen)
	if r.Protocol == ProtocolHTTP {
		return g.serveHTTPIngress(ctx, route, r, l)
	}
	tl := tls.NewListener(l, g.serverTLS(route, r))
	return g.serveConns(ctx, route, tl, func(c net.Conn) {
		tc := c.(*tls.Conn)
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			g.log.Info("handshake failed", slog.String(logKeyRoute, route), slog.String(logKeyPeer, c.RemoteAddr().String()),
				slog.String(logKeyErr, logsafe.Truncate(err.Error())))
			return
		}
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		up, err := d.DialContext(dctx, "tcp", r.Forward)
		cancel()
		if err != nil {
			g.log.Warn("backend unreachable", slog.String(logKeyRoute, route), slog.String(logKeyErr, err.Error()))
			return
		}
		pipe(ctx, tc, up)
	})
}

// runHTTP serves h on l for route until ctx ends, then shuts the server
// down within shutdownGrace.
func (g *Gateway) runHTTP(ctx context.Context, route string, h http.Handler, l net.Listener) error {
	srv := edge.HTTPServer(h, 0)
	srv.ErrorLog = slog.NewLogLogger(g.log.With(logKeyRoute, route).Handler(), slog.LevelInfo)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", route, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

func (g *Gateway) serveEgress(ctx context.Context, i int, r *Egress, l net.Listener) error {
	route := fmt.Sprintf("egress[%d] (%s)", i, r.Listen)
	cfg := tlsconfig.MTLSClientConfig(g.src, g.src, tlsconfig.AuthorizeID(r.id))
	cfg.MinVersion = tls.VersionTLS13
	return g.serveConns(ctx, route, l, func(c net.Conn) {
		d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
		dctx, cancel := context.WithTimeout(ctx, dialTimeout+handshakeTimeout)
		up, err := d.DialContext(dctx, "tcp", r.Upstream)
		cancel()
		if err != nil {
			g.log.Warn("upstream refused or unreachable", slog.String(logKeyRoute, route), slog.String(logKeySPIFFEID, r.id.String()),
				slog.String(logKeyErr, err.Error()))
			c.Close()
			return
		}
		pipe(ctx, c, up)
	})
}

// serveConns accepts connections on l and runs handle for each until ctx
// is done; then it closes l and every open connection and waits for the
// handlers.
func (g *Gateway) serveConns(ctx context.Context, route string, l net.Listener, handle func(net.Conn)) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("%s: accept: %w", route, err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
			handle(c)
		}()
	}
}

// bufferPool reuses the proxy's copy buffers (httputil.BufferPool); without
// it every request allocates 32 KiB.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }

var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// pipe copies both ways between a and b until both directions end, then
// closes both; when ctx is done it closes both at once.
func pipe(ctx context.Context, a, b net.Conn) {
	defer a.Close()
	defer b.Close()
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		closeWrite(dst)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	switch c := c.(type) {
	case interface{ CloseWrite() error }: // *tls.Conn, *net.TCPConn, *bufConn
		_ = c.CloseWrite()
	default:
		_ = c.Close()
	}
}
