package workloadattest

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthType is the value AuthInfo.AuthType reports.
const AuthType = "peercred"

var (
	errNoPidfd     = errors.New("no pidfd for the calling process")
	errConnClosed  = errors.New("connection closed")
	errExited      = errors.New("process exited")
	errNotUnixConn = errors.New("not a unix socket connection")
)

// AuthInfo is the gRPC AuthInfo of a connection accepted with the credentials
// of NewCredentials. It carries the caller's Peer.
type AuthInfo struct {
	credentials.CommonAuthInfo
	Peer Peer
}

// AuthType returns "peercred".
func (AuthInfo) AuthType() string { return AuthType }

// PeerFromContext returns the Peer of the connection an RPC arrived on. It
// reports false when the server was not built with NewCredentials, or the
// context is not an RPC context.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, false
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return Peer{}, false
	}
	return ai.Peer, true
}

// NewCredentials returns server-side gRPC transport credentials for unix
// socket listeners. The handshake reads nothing from the connection: it asks
// the kernel who the peer is (SO_PEERCRED) and obtains a pidfd for it
// (SO_PEERPIDFD, or pidfd_open on kernels before 6.5). The pidfd lives as
// long as the connection and is closed with it.
//
// A connection is accepted even when no pidfd could be obtained (the caller
// exited, or is in another PID namespace): attestation then fails per RPC with
// an error that says why, which a client can read, instead of an opaque
// transport failure. Client handshakes are not supported.
func NewCredentials() credentials.TransportCredentials { return peerCreds{} }

type peerCreds struct{}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: client handshake not supported; use insecure credentials on the client")
}

func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	p, err := readPeer(c)
	if err != nil {
		return nil, nil, err
	}
	p.memo = new(Memo)
	ai := AuthInfo{
		// A unix socket never leaves the host: it is as private as the kernel.
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		Peer:           p,
	}
	return &conn{Conn: c, proc: p.proc}, ai, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

// OverrideServerName is part of credentials.TransportCredentials and unused.
func (peerCreds) OverrideServerName(string) error { return nil }

// conn closes the pidfd with the connection.
type conn struct {
	net.Conn
	proc *pidfd
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.proc != nil {
		c.proc.close()
	}
	return err
}
