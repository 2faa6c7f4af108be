// Package testenv starts Signet components in-process for tests: a real
// server on a temp dir and 127.0.0.1:0, its admin API over the real unix
// socket, real agents (configured as `signet dev` configures its own, see
// internal/devenv) with their Workload API sockets, and raw agent-API
// connections over real TLS, so tests can act as a well-behaved agent or a
// hostile one. The server can be stopped and started again on the same
// data dir and port, as in an outage. Everything is torn down with
// t.Cleanup, in reverse order of creation.
//
// The package also holds the test helpers shared by the packages that use
// it: WaitFor, LogBuffer and, in testclock, a fake clock.
package testenv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-id/signet/internal/devenv"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/server"
)

// Env is a running server with an admin client. Server and Admin change
// when the server is started again (StartServer).
type Env struct {
	T           testing.TB
	TrustDomain spiffeid.TrustDomain
	Server      *server.Server
	Admin       adminv1.AdminClient
	DataDir     string
	// Metrics gathers the metrics of the running server (a fresh registry
	// each start), unless an Option set the Registerer.
	Metrics *prometheus.Registry

	cfg    server.Config
	stop   func() // stops the running server; nil when stopped
	admin  *grpc.ClientConn
	agents int // agents started, for their directory names
}

// AdminConn is the connection to the admin socket, for the inventory and
// audit service stubs.
func (e *Env) AdminConn() grpc.ClientConnInterface { return e.admin }

// Option adjusts the server configuration before it starts.
type Option func(*server.Config)

// WithNow makes the server (and its CA and store) read time from now, a
// fake clock's Now for example.
func WithNow(now func() time.Time) Option {
	return func(c *server.Config) { c.Now = now }
}

// New starts a server for the test. Logs go to the test log when -v.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	cfg := devenv.ServerConfig(td, filepath.Join(dir, "server"),
		slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cfg.CacheRefresh = 50 * time.Millisecond
	for _, o := range opts {
		o(&cfg)
	}
	e := &Env{T: t, TrustDomain: td, DataDir: dir, cfg: cfg}
	t.Cleanup(e.StopServer)
	e.StartServer()
	return e
}

// StartServer starts the server: the first time from the configuration
// New was given, later again on the same data dir and agent API address,
// as after an outage. It fails the test if the server is running.
func (e *Env) StartServer() {
	e.T.Helper()
	if e.stop != nil {
		e.T.Fatal("testenv: StartServer: the server is running")
	}
	cfg := e.cfg
	var reg *prometheus.Registry
	if cfg.Registerer == nil {
		reg = prometheus.NewRegistry()
		cfg.Registerer = reg
	}
	ctx, cancel := context.WithCancel(context.Background())
	var srv *server.Server
	var err error
	// The old listener's port may take a moment to be free again.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if srv, err = server.New(ctx, cfg); err == nil || time.Now().After(deadline) || e.Server == nil {
			break
		}
	}
	if err != nil {
		cancel()
		e.T.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	cc, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		<-done
		e.T.Fatalf("dial admin socket: %v", err)
	}
	e.stop = func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			e.T.Errorf("server.Run: %v", err)
		}
	}
	e.Server, e.Admin, e.admin, e.Metrics = srv, adminv1.NewAdminClient(cc), cc, reg
	// Started again: same address, so agents find it where it was.
	e.cfg.BindAddress = srv.Addr().String()
	if a := srv.HTTPAddr(); a != nil {
		e.cfg.HTTPAddress = a.String()
	}
}

// RPCs returns how many calls of method (a full gRPC method name) the
// running server answered with code since it started.
func (e *Env) RPCs(method string, code codes.Code) int {
	e.T.Helper()
	if e.Metrics == nil {
		e.T.Fatal("testenv: RPCs: the server's metrics go to the Registerer an Option set")
	}
	mfs, err := e.Metrics.Gather()
	if err != nil {
		e.T.Fatalf("gather server metrics: %v", err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_rpcs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code.String() {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

// StopServer stops the server and waits until it has shut down. Stopping
// a stopped server does nothing.
func (e *Env) StopServer() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
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
	want := server.ServerID(e.TrustDomain)
	now := e.cfg.Now
	if now == nil {
		now = time.Now
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, at the server clock's time (a fake one, maybe).
		InsecureSkipVerify: true, //nolint:gosec // SPIFFE verification in VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, _, err := x509svid.ParseAndVerify(raw, bundle, x509svid.WithTime(now()))
			if err == nil && id != want {
				err = fmt.Errorf("server presented %s, want %s", id, want)
			}
			return err
		},
	}
	if svid != nil {
		cfg.GetClientCertificate = tlsconfig.GetClientCertificate(svid)
	}
	return cfg
}

// AwaitServerSVID waits until the agent API presents a certificate valid
// at the server clock's time: after a fake clock jumps, the server renews
// its own SVID within CacheRefresh.
func (e *Env) AwaitServerSVID() {
	e.T.Helper()
	WaitFor(e.T, 10*time.Second, "the server's own SVID to be current", func() error {
		c, err := tls.Dial("tcp", e.Server.Addr().String(), e.serverTLS(nil))
		if err != nil {
			return err
		}
		return c.Close()
	})
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

// HTTPClient is an HTTPS client of the server's HTTPS listener (which must
// be on: Config.HTTPAddress), verifying that it presents the server SVID,
// and presenting svid when not nil. URL prefixes paths with the listener's
// base URL.
func (e *Env) HTTPClient(svid *x509svid.SVID) *http.Client {
	e.T.Helper()
	if e.Server.HTTPAddr() == nil {
		e.T.Fatal("testenv: HTTPClient: the server has no HTTPS listener (set HTTPAddress)")
	}
	tr := &http.Transport{TLSClientConfig: e.serverTLS(svid), ForceAttemptHTTP2: true}
	e.T.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// URL is the HTTPS listener's URL for path.
func (e *Env) URL(path string) string { return "https://" + e.Server.HTTPAddr().String() + path }

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
	a, err := jointoken.New(token)
	if err != nil {
		// Malformed on purpose: send it as it is.
		return e.TryAttestWith(rawToken(token))
	}
	return e.TryAttestWith(a)
}

// rawToken presents any bytes as a join token.
type rawToken string

func (rawToken) Name() string                              { return jointoken.Name }
func (t rawToken) Payload(context.Context) ([]byte, error) { return []byte(t), nil }

// TryAttestWith runs the attestation exchange with the agent half of any
// method, answering the server's challenges when a is a Responder, and
// returns the SVID.
func (e *Env) TryAttestWith(a nodeattest.Attestor) (*x509svid.SVID, error) {
	key, csr := NewCSR(e.T)
	ctx := nodeattest.WithCSR(e.Ctx(), csr)
	payload, err := a.Payload(ctx)
	if err != nil {
		return nil, err
	}
	c := e.Dial(nil)
	stream, err := c.Client.AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
		AttestationType: a.Name(), Payload: payload, Csr: csr,
	}}}); err != nil {
		return nil, err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		challenge := resp.GetChallenge()
		if challenge == nil {
			_ = stream.CloseSend()
			return SVIDFromChain(e.T, resp.GetResult().GetCertChain(), key), nil
		}
		r, ok := a.(nodeattest.Responder)
		if !ok {
			return nil, fmt.Errorf("%s cannot answer the server's challenge", a.Name())
		}
		answer, err := r.Respond(ctx, challenge)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_ChallengeResponse{ChallengeResponse: answer}}); err != nil {
			return nil, err
		}
	}
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

// CreateEntry registers e through the admin API and returns it as stored;
// any refusal fails the test.
func (e *Env) CreateEntry(entry *commonv1.Entry) *commonv1.Entry {
	e.T.Helper()
	resp, err := e.Admin.CreateEntries(e.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{entry}})
	if err != nil {
		e.T.Fatalf("CreateEntries: %v", err)
	}
	r := resp.GetResults()[0]
	if codes.Code(r.GetStatus().GetCode()) != codes.OK {
		e.T.Fatalf("CreateEntries(%s): %s", entry.GetSpiffeId(), r.GetStatus().GetMessage())
	}
	return r.GetEntry()
}

// DeleteEntry deletes the entry of the given ID through the admin API.
func (e *Env) DeleteEntry(id string) {
	e.T.Helper()
	resp, err := e.Admin.DeleteEntries(e.Ctx(), &adminv1.DeleteEntriesRequest{Ids: []string{id}})
	if err != nil {
		e.T.Fatalf("DeleteEntries: %v", err)
	}
	for _, st := range resp.GetResults() {
		if codes.Code(st.GetStatus().GetCode()) != codes.OK {
			e.T.Fatalf("DeleteEntries(%s): %s", id, st.GetStatus().GetMessage())
		}
	}
}
