// Package testenv starts Signet components in-process for tests: a real
// server on a temp dir and 127.0.0.1:0, its admin API over the real unix
// socket, and raw agent-API connections over real TLS, so tests can act as a
// well-behaved agent or a hostile one. Everything is torn down with
// t.Cleanup.
package testenv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/server"
)

// Env is a running server with an admin client.
type Env struct {
	T           testing.TB
	TrustDomain spiffeid.TrustDomain
	Server      *server.Server
	Admin       adminv1.AdminClient
	DataDir     string
	adminConn   *grpc.ClientConn
}

// AdminConn is the connection to the admin socket, for the inventory and
// audit service stubs.
func (e *Env) AdminConn() grpc.ClientConnInterface { return e.adminConn }

// Option adjusts the server configuration before it starts.
type Option func(*server.Config)

// New starts a server for the test. Logs go to the test log when -v.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	cfg := server.Config{
		TrustDomain:  td,
		DataDir:      filepath.Join(dir, "server"),
		BindAddress:  "127.0.0.1:0",
		CacheRefresh: 50 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})
	cc, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial admin socket: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return &Env{T: t, TrustDomain: td, Server: srv, Admin: adminv1.NewAdminClient(cc), DataDir: dir, adminConn: cc}
}

// testWriter sends log lines to t.Log, quiet unless -v or failing.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// Ctx returns a context bounded by a generous deadline.
func (e *Env) Ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.T.Cleanup(cancel)
	return ctx
}

// JoinToken creates a join token for the agent ID.
func (e *Env) JoinToken(agentID string) string {
	e.T.Helper()
	resp, err := e.Admin.CreateJoinToken(e.Ctx(), &adminv1.CreateJoinTokenRequest{SpiffeId: agentID})
	if err != nil {
		e.T.Fatalf("CreateJoinToken: %v", err)
	}
	return resp.GetToken()
}

// AgentConn is a raw agent-API connection: the test plays the agent.
type AgentConn struct {
	Client agentv1.AgentClient
	ID     spiffeid.ID
	SVID   *x509svid.SVID
	conn   *grpc.ClientConn
}

// serverTLS is the TLS config an agent uses: trust the server's bundle and
// authorize exactly the server's ID, presenting svid when non-nil.
func (e *Env) serverTLS(svid *x509svid.SVID) *tls.Config {
	bundle := e.Server.Bundle().X509Bundle()
	authz := tlsconfig.AuthorizeID(server.ServerID(e.TrustDomain))
	if svid == nil {
		return tlsconfig.TLSClientConfig(bundle, authz)
	}
	return tlsconfig.MTLSClientConfig(svid, bundle, authz)
}

// Dial connects to the agent API, presenting svid (nil: no client cert).
func (e *Env) Dial(svid *x509svid.SVID) *AgentConn {
	e.T.Helper()
	cc, err := grpc.NewClient(e.Server.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(e.serverTLS(svid))))
	if err != nil {
		e.T.Fatalf("dial agent api: %v", err)
	}
	e.T.Cleanup(func() { cc.Close() })
	c := &AgentConn{Client: agentv1.NewAgentClient(cc), SVID: svid, conn: cc}
	if svid != nil {
		c.ID = svid.ID
	}
	return c
}

// Attest performs join-token attestation for agentID and returns an mTLS
// connection holding the new agent SVID.
func (e *Env) Attest(agentID string) *AgentConn {
	e.T.Helper()
	svid, err := e.TryAttest(e.JoinToken(agentID))
	if err != nil {
		e.T.Fatalf("attest %s: %v", agentID, err)
	}
	return e.Dial(svid)
}

// TryAttest runs the attestation exchange with token and returns the SVID.
func (e *Env) TryAttest(token string) (*x509svid.SVID, error) {
	key, csr := NewCSR(e.T)
	c := e.Dial(nil)
	stream, err := c.Client.AttestAgent(e.Ctx())
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
		AttestationType: jointoken.Name, Payload: []byte(token), Csr: csr,
	}}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	_ = stream.CloseSend()
	return SVIDFromChain(e.T, resp.GetResult().GetCertChain(), key), nil
}

// NewCSR generates a P-256 key and a CSR for it.
func NewCSR(t testing.TB) (crypto.Signer, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// SVIDFromChain assembles an x509svid.SVID from DER certificates and key.
func SVIDFromChain(t testing.TB, chain [][]byte, key crypto.Signer) *x509svid.SVID {
	t.Helper()
	var certs []*x509.Certificate
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parse certificate: %v", err)
		}
		certs = append(certs, c)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		t.Fatalf("svid id: %v", err)
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}
}

// Conn returns the underlying connection, for other service stubs.
func (a *AgentConn) Conn() grpc.ClientConnInterface { return a.conn }
