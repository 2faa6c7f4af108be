package edge

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
)

// Limits bound what one listener accepts. Zero fields take the defaults of
// the DefaultX constants.
type Limits struct {
	// MaxRecvMsgSize bounds one received message.
	MaxRecvMsgSize int
	// MaxSendMsgSize bounds one sent message.
	MaxSendMsgSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	MaxConcurrentStreams uint32
	// MaxConnections bounds open connections on the listener (0: default;
	// negative: unbounded, for unix sockets guarded by the kernel).
	MaxConnections int
	// HandshakeTimeout bounds the TLS handshake of a new connection.
	HandshakeTimeout time.Duration
	// IdleTimeout closes connections without calls for this long.
	IdleTimeout time.Duration
}

// Defaults for Limits.
const (
	DefaultMaxRecvMsgSize       = 4 << 20
	DefaultMaxSendMsgSize       = 16 << 20
	DefaultMaxConcurrentStreams = 128
	DefaultMaxConnections       = 10000
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultIdleTimeout          = 5 * time.Minute
)

func (l Limits) withDefaults() Limits {
	if l.MaxRecvMsgSize == 0 {
		l.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if l.MaxSendMsgSize == 0 {
		l.MaxSendMsgSize = DefaultMaxSendMsgSize
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	return l
}

// ServerOptions returns the gRPC options that enforce l: message sizes,
// streams per connection, handshake timeout, keepalive enforcement (pings
// no more often than every 10s) and idle connection closing.
func (l Limits) ServerOptions() []grpc.ServerOption {
	l = l.withDefaults()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(l.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleTimeout, Time: time.Minute, Timeout: 20 * time.Second}),
	}
}

// Listen wraps ln so that it holds at most l.MaxConnections open
// connections; further ones wait in the kernel's backlog.
func (l Limits) Listen(ln net.Listener) net.Listener {
	l = l.withDefaults()
	if l.MaxConnections < 0 {
		return ln
	}
	return netutil.LimitListener(ln, l.MaxConnections)
}

// PeerLimiter is a token bucket per peer address (the IP, without the
// port, so many connections from one host share one budget). The zero
// value is not usable; create one with NewPeerLimiter. It is safe for
// concurrent use and holds at most maxPeers buckets, forgetting idle ones.
type PeerLimiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time

	mu    sync.Mutex
	peers map[string]*peerBucket
}

type peerBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxPeers bounds the buckets a PeerLimiter keeps.
const maxPeers = 65536

// NewPeerLimiter admits perSecond calls per peer on average, in bursts of
// up to burst.
func NewPeerLimiter(perSecond float64, burst int) *PeerLimiter {
	return &PeerLimiter{rate: rate.Limit(perSecond), burst: burst, now: time.Now, peers: map[string]*peerBucket{}}
}

// Allow reports whether the peer in ctx may make one more call now. Calls
// without a peer address (in-process) are allowed.
func (p *PeerLimiter) Allow(ctx context.Context) bool {
	return p.AllowAddr(peerKey(ctx))
}

// AllowAddr reports whether the peer with address host (an IP, no port)
// may make one more call now; "" (no address) is allowed. HTTP listeners
// use it with the request's remote host.
func (p *PeerLimiter) AllowAddr(key string) bool {
	if key == "" {
		return true
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.peers[key]
	if b == nil {
		if len(p.peers) >= maxPeers {
			p.pruneLocked(now)
		}
		b = &peerBucket{lim: rate.NewLimiter(p.rate, p.burst)}
		p.peers[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// pruneLocked drops buckets idle long enough to have refilled, and, if
// that frees nothing, half of the rest.
func (p *PeerLimiter) pruneLocked(now time.Time) {
	full := time.Duration(float64(p.burst) / float64(p.rate) * float64(time.Second))
	for k, b := range p.peers {
		if now.Sub(b.seen) > full {
			delete(p.peers, k)
		}
	}
	if len(p.peers) < maxPeers {
		return
	}
	n := 0
	for k := range p.peers {
		if n%2 == 0 {
			delete(p.peers, k)
		}
		n++
	}
}

func peerKey(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return ""
	}
	if tcp, ok := pr.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if host, _, err := net.SplitHostPort(pr.Addr.String()); err == nil {
		return host
	}
	return ""
}

// HTTP limits every Signet HTTP listener applies.
const (
	DefaultHTTPReadHeaderTimeout = 5 * time.Second
	DefaultHTTPReadTimeout       = 30 * time.Second
	DefaultHTTPWriteTimeout      = 30 * time.Second
	DefaultHTTPIdleTimeout       = 2 * time.Minute
	DefaultHTTPMaxHeaderBytes    = 64 << 10
	DefaultHTTPMaxBodyBytes      = 1 << 20
)

// HTTPServer returns an http.Server for h with read, header, write and idle
// timeouts, a header size bound, and every request body limited to
// maxBody bytes (DefaultHTTPMaxBodyBytes when 0).
func HTTPServer(h http.Handler, maxBody int64) *http.Server {
	if maxBody <= 0 {
		maxBody = DefaultHTTPMaxBodyBytes
	}
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > maxBody {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: DefaultHTTPReadHeaderTimeout,
		ReadTimeout:       DefaultHTTPReadTimeout,
		WriteTimeout:      DefaultHTTPWriteTimeout,
		IdleTimeout:       DefaultHTTPIdleTimeout,
		MaxHeaderBytes:    DefaultHTTPMaxHeaderBytes,
	}
}
