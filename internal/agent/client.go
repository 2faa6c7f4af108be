package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// maxRecvMessage bounds server responses. A full Sync of a node with tens
// of thousands of entries exceeds gRPC's 4 MiB default.
const maxRecvMessage = 128 << 20

// serverClient holds the agent's connection to the server's agent API.
// Every connection authenticates the server as exactly
// spiffe://<td>/signet/server against the cache's current bundle, at the
// agent clock's time. With several servers (replicas) listed, a connection
// goes to the first that answers, in list order, each DNS name expanded to
// all of its addresses; when it breaks, the next call connects to the next
// one that answers (serversBuilder), with the same agent SVID.
type serverClient struct {
	addrs    []string // host:port of each listed server
	lookup   lookupFunc
	log      *slog.Logger
	current  atomic.Pointer[string] // address of the last connection made
	maxDelay time.Duration          // cap of gRPC's reconnection backoff
	serverID spiffeid.ID
	bundles  x509bundle.Source
	svid     *svidHolder
	now      func() time.Time

	mu   sync.Mutex
	conn *grpc.ClientConn // mTLS with the agent SVID; nil until first use
	gen  uint64           // incremented by reconnect
}

func newServerClient(addrs []string, td spiffeid.TrustDomain, bundles x509bundle.Source, svid *svidHolder, maxDelay time.Duration, now func() time.Time, log *slog.Logger) *serverClient {
	return &serverClient{
		addrs:    addrs,
		lookup:   net.DefaultResolver.LookupHost,
		log:      log,
		maxDelay: min(maxDelay, 30*time.Second),
		serverID: serverID(td),
		bundles:  bundles,
		svid:     svid,
		now:      now,
	}
}

// serverID is the SPIFFE ID the server presents.
func serverID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "signet", "server")
}

// untrustedServerError is the failure to verify the server's certificate:
// it does not chain to the trust bundle, is not valid now, or names
// another SPIFFE ID than the server's. Retrying does not mend it.
type untrustedServerError struct{ err error }

func (e *untrustedServerError) Error() string {
	return "server certificate not trusted: " + e.err.Error()
}
func (e *untrustedServerError) Unwrap() error { return e.err }

// verifyServer is the TLS verification of the server's certificate chain.
func (c *serverClient) verifyServer(raw [][]byte, _ [][]*x509.Certificate) error {
	id, _, err := x509svid.ParseAndVerify(raw, c.bundles, x509svid.WithTime(c.now()))
	if err != nil {
		return &untrustedServerError{err}
	}
	if id != c.serverID {
		return &untrustedServerError{fmt.Errorf("the server presented %s, want %s", id, c.serverID)}
	}
	return nil
}

// tlsConfig authenticates the server with verifyServer and, when mtls is
// set, presents the agent SVID.
func (c *serverClient) tlsConfig(mtls bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// SPIFFE authentication replaces hostname verification: the
		// chain and the server's SPIFFE ID are checked by verifyServer.
		InsecureSkipVerify:    true, //nolint:gosec // verified in VerifyPeerCertificate
		VerifyPeerCertificate: c.verifyServer,
	}
	if mtls {
		cfg.GetClientCertificate = tlsconfig.GetClientCertificate(c.svid)
	}
	return cfg
}

// dial creates a lazily connecting client with the given TLS config;
// handshake failures are kept in rec.
func (c *serverClient) dial(cfg *tls.Config, rec *handshakeRecorder) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(serversScheme+":///servers",
		grpc.WithResolvers(&serversBuilder{addrs: c.addrs, lookup: c.lookup, log: c.log}),
		// SNI and :authority name the first listed server, as with one.
		grpc.WithAuthority(c.addrs[0]),
		grpc.WithContextDialer(c.dialServer),
		grpc.WithTransportCredentials(&recordingCreds{TransportCredentials: credentials.NewTLS(cfg), rec: rec}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMessage), grpc.ForceCodecV2(newClientCodec())),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: min(time.Second, c.maxDelay), Multiplier: 1.6, Jitter: 0.2, MaxDelay: c.maxDelay},
			MinConnectTimeout: 10 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dial server %s: %w", strings.Join(c.addrs, ","), err)
	}
	return conn, nil
}

// dialServer opens the TCP connection to one resolved server address and
// logs when the agent's connections move to another server.
func (c *serverClient) dialServer(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if prev := c.current.Swap(&addr); prev == nil || *prev != addr {
		if prev != nil {
			c.log.Info("connected to another server", "server", addr, "previous", *prev)
		} else if len(c.addrs) > 1 {
			c.log.Info("connected to server", "server", addr)
		}
	}
	return conn, nil
}

// api returns a client on the mTLS connection, creating it on first use,
// and the connection's generation.
func (c *serverClient) api() (agentv1.AgentClient, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := c.dial(c.tlsConfig(true), &handshakeRecorder{})
		if err != nil {
			return nil, c.gen, err
		}
		c.conn = conn
	}
	return agentv1.NewAgentClient(c.conn), c.gen, nil
}

// call runs fn on the mTLS connection. When fn fails because the
// connection was replaced meanwhile (the agent SVID was renewed, so the
// server refuses the old connection's certificate), fn runs once more on
// the new connection.
func (c *serverClient) call(fn func(agentv1.AgentClient) error) error {
	for attempt := 0; ; attempt++ {
		api, gen, err := c.api()
		if err != nil {
			return err
		}
		err = fn(api)
		if err == nil || attempt > 0 {
			return err
		}
		c.mu.Lock()
		replaced := c.gen != gen
		c.mu.Unlock()
		if !replaced {
			return err
		}
	}
}

// attestAPI returns a client on a new server-authenticated TLS connection
// without a client certificate, for AttestAgent, and the recorder of its
// handshake failures. The caller closes it.
func (c *serverClient) attestAPI() (agentv1.AgentClient, *handshakeRecorder, func(), error) {
	rec := &handshakeRecorder{}
	conn, err := c.dial(c.tlsConfig(false), rec)
	if err != nil {
		return nil, nil, nil, err
	}
	return agentv1.NewAgentClient(conn), rec, func() { conn.Close() }, nil
}

// reconnect drops the mTLS connection so the next call dials again with the
// current agent SVID. The server accepts only a node's newest SVID (and,
// for a minute, the one it replaced), so calls move to a new connection as
// soon as the SVID is renewed.
func (c *serverClient) reconnect() {
	c.mu.Lock()
	old := c.conn
	c.conn = nil
	c.gen++
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// Close closes the connection.
func (c *serverClient) Close() { c.reconnect() }

// svidHolder is the agent's current SVID, as an x509svid.Source.
type svidHolder struct {
	p atomic.Pointer[x509svid.SVID]
}

// GetX509SVID implements x509svid.Source.
func (h *svidHolder) GetX509SVID() (*x509svid.SVID, error) {
	s := h.p.Load()
	if s == nil {
		return nil, errors.New("no agent svid yet")
	}
	return s, nil
}

// newKeyAndCSR generates an ECDSA P-256 key and a PKCS#10 request proving
// possession of it. The server takes only the public key from the request,
// so it carries no subject or SANs.
func newKeyAndCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	csr, err := csrFor(key) // what x509.CreateCertificateRequest makes of an empty template, cheaper (keygen.go)
	if err != nil {
		return nil, nil, fmt.Errorf("create csr: %w", err)
	}
	return key, csr, nil
}

// parseChain parses DER certificates, leaf first.
func parseChain(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	certs := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	return certs, nil
}

// denied reports whether the server refused the agent itself: the node was
// evicted or banned, or its SVID is no longer the node's current one.
func denied(err error) bool {
	return errkind.Is(err, errkind.PermissionDenied) || errkind.Is(err, errkind.Unauthenticated)
}

// rpcErr converts an RPC error into a kinded one naming the operation.
func rpcErr(op string, err error) error {
	return fmt.Errorf("%s: %w", op, errkind.FromGRPC(err))
}

// handshakeRecorder keeps the last TLS handshake failure of a connection.
// gRPC reports a failed handshake to the RPC only as a status message, so
// the typed error (x509.UnknownAuthorityError, untrustedServerError, …) is
// taken here, where it still has its chain.
type handshakeRecorder struct {
	mu  sync.Mutex
	err error // nil after a successful handshake
}

func (r *handshakeRecorder) record(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

// last returns the failure of the latest handshake, nil if it succeeded.
func (r *handshakeRecorder) last() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// recordingCreds are TLS transport credentials that tell rec how each
// client handshake ended.
type recordingCreds struct {
	credentials.TransportCredentials
	rec *handshakeRecorder
}

func (r *recordingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, info, err := r.TransportCredentials.ClientHandshake(ctx, authority, conn)
	r.rec.record(err)
	return c, info, err
}

// Clone keeps the recorder: clones serve the same connection.
func (r *recordingCreds) Clone() credentials.TransportCredentials {
	return &recordingCreds{TransportCredentials: r.TransportCredentials.Clone(), rec: r.rec}
}

// handshakeError is an RPC failure caused by the TLS handshake. Its text
// is the RPC's; both the RPC's kind (errkind) and the handshake's typed
// error chain (errors.As) are reachable through it.
type handshakeError struct {
	rpc, handshake error
}

func (e *handshakeError) Error() string   { return e.rpc.Error() }
func (e *handshakeError) Unwrap() []error { return []error{e.rpc, e.handshake} }

// withHandshake attaches the connection's handshake failure, if any, to
// the failed RPC's error.
func withHandshake(err error, rec *handshakeRecorder) error {
	if err == nil || rec == nil {
		return err
	}
	if hs := rec.last(); hs != nil {
		return &handshakeError{rpc: err, handshake: hs}
	}
	return err
}

// untrustedServer reports a failure to verify the server's certificate: a
// misconfiguration (the wrong trust bundle, the wrong server) that
// retrying does not mend. It looks at error types, never at text.
func untrustedServer(err error) bool {
	var (
		untrusted *untrustedServerError
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
	)
	return errors.As(err, &untrusted) || errors.As(err, &unknownCA) || errors.As(err, &invalid) ||
		errors.As(err, &hostname) || errors.As(err, &verify)
}

// statusError rebuilds the gRPC status of one item of a batch response.
func statusError(code int32, msg string) error {
	return status.Error(codes.Code(uint32(code)), msg)
}

// retryBackoff yields capped exponential delays with ±10% jitter.
type retryBackoff struct {
	base, max time.Duration
	n         int
}

// next returns the delay before the next attempt.
func (b *retryBackoff) next() time.Duration {
	d := b.base
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	b.n++
	return jitter(min(d, b.max))
}

// reset starts over after a success.
func (b *retryBackoff) reset() { b.n = 0 }

// jitter spreads d by ±10% so that agents restarted together drift apart.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/10 + time.Duration(mrand.Int64N(int64(d/5)+1))
}
