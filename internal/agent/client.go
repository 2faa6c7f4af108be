package agent

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	mrand "math/rand/v2"
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
// spiffe://<td>/signet/server against the cache's current bundle.
type serverClient struct {
	addr      string
	maxDelay  time.Duration // cap of gRPC's reconnection backoff
	authorize tlsconfig.Authorizer
	bundles   x509bundle.Source
	svid      *svidHolder

	mu   sync.Mutex
	conn *grpc.ClientConn // mTLS with the agent SVID; nil until first use
	gen  uint64           // incremented by reconnect
}

func newServerClient(addr string, td spiffeid.TrustDomain, bundles x509bundle.Source, svid *svidHolder, maxDelay time.Duration) *serverClient {
	return &serverClient{
		addr:      addr,
		maxDelay:  min(maxDelay, 30*time.Second),
		authorize: tlsconfig.AuthorizeID(serverID(td)),
		bundles:   bundles,
		svid:      svid,
	}
}

// serverID is the SPIFFE ID the server presents.
func serverID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "signet", "server")
}

// dial creates a lazily connecting client with the given TLS config.
func (c *serverClient) dial(cfg *tls.Config) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(c.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMessage)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: min(time.Second, c.maxDelay), Multiplier: 1.6, Jitter: 0.2, MaxDelay: c.maxDelay},
			MinConnectTimeout: 10 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dial server %s: %w", c.addr, err)
	}
	return conn, nil
}

// api returns a client on the mTLS connection, creating it on first use,
// and the connection's generation.
func (c *serverClient) api() (agentv1.AgentClient, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := c.dial(tlsconfig.MTLSClientConfig(c.svid, c.bundles, c.authorize))
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
// without a client certificate, for AttestAgent. The caller closes it.
func (c *serverClient) attestAPI() (agentv1.AgentClient, func(), error) {
	conn, err := c.dial(tlsconfig.TLSClientConfig(c.bundles, c.authorize))
	if err != nil {
		return nil, nil, err
	}
	return agentv1.NewAgentClient(conn), func() { conn.Close() }, nil
}

// reconnect drops the mTLS connection so the next call dials again with the
// current agent SVID. The server accepts only a node's newest SVID, so
// calls must move to a new connection as soon as the SVID is renewed.
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
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
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
