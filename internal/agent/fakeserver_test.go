package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/apiconv"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
)

// fakeServer speaks the agent API over real TLS and gRPC with a test CA.
// It stands in for internal/server in this package's tests: like the real
// server it accepts only a node's newest agent SVID and refuses evicted
// nodes with PermissionDenied.
type fakeServer struct {
	agentv1.UnimplementedAgentServer
	t        testing.TB
	ca       *testCA
	token    string
	agentID  spiffeid.ID
	agentTTL time.Duration
	svidTTL  time.Duration
	minter   *jwtMinter
	svid     *x509svid.SVID

	mu       sync.Mutex
	addr     string
	gs       *grpc.Server
	serial   string // the node's current agent SVID serial
	evicted  bool
	entries  map[string]*commonv1.Entry
	revision int64
	renewals int
	signed   int
	syncs    int
}

func newFakeServer(t testing.TB, ca *testCA, token string) *fakeServer {
	t.Helper()
	key, _, err := newKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	id := serverID(ca.td)
	leaf := ca.sign(t, id, key.Public(), time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	s := &fakeServer{
		t:        t,
		ca:       ca,
		token:    token,
		agentID:  spiffeid.RequireFromSegments(ca.td, "signet", "agent", "node1"),
		agentTTL: time.Hour,
		svidTTL:  time.Hour,
		minter:   newJWTMinter(t),
		svid:     &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key},
		entries:  map[string]*commonv1.Entry{},
		addr:     "127.0.0.1:0",
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start serves on s.addr (the same port again after stop).
func (s *fakeServer) start() {
	s.t.Helper()
	cfg := tlsconfig.TLSServerConfig(s.svid)
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.cert)
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	cfg.ClientCAs = pool
	var l net.Listener
	var err error
	for range 50 { // the old socket may linger briefly after stop
		if l, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	agentv1.RegisterAgentServer(gs, s)
	s.mu.Lock()
	s.addr, s.gs = l.Addr().String(), gs
	s.mu.Unlock()
	go gs.Serve(l)
}

func (s *fakeServer) stop() {
	s.mu.Lock()
	gs := s.gs
	s.gs = nil
	s.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
}

// put adds or updates an entry at a new revision.
func (s *fakeServer) put(e *commonv1.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revision++
	e.Revision = s.revision
	s.entries[e.GetId()] = e
}

// remove deletes an entry at a new revision.
func (s *fakeServer) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revision++
	delete(s.entries, id)
}

func (s *fakeServer) counts() (renewals, signed, syncs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewals, s.signed, s.syncs
}

func (s *fakeServer) issue(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]byte, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "bad csr")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Error(codes.InvalidArgument, "bad csr signature")
	}
	now := time.Now()
	return s.ca.sign(s.t, id, csr.PublicKey, now.Add(-time.Second), now.Add(ttl)).Raw, nil
}

// agentSVID issues an agent SVID and makes it the node's current one.
func (s *fakeServer) agentSVID(csr []byte) (*agentv1.AgentSVID, error) {
	der, err := s.issue(csr, s.agentID, s.agentTTL)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	s.mu.Lock()
	s.serial = leaf.SerialNumber.Text(16)
	s.mu.Unlock()
	return &agentv1.AgentSVID{SpiffeId: s.agentID.String(), CertChain: [][]byte{der}, Bundle: s.ca.bundleProto(s.t, 1)}, nil
}

// caller authorizes an mTLS call as the real server does.
func (s *fakeServer) caller(ctx context.Context) error {
	p, _ := peer.FromContext(ctx)
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "an agent SVID is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.evicted || info.State.PeerCertificates[0].SerialNumber.Text(16) != s.serial {
		return status.Error(codes.PermissionDenied, "caller is not an attested agent")
	}
	return nil
}

func (s *fakeServer) AttestAgent(stream grpc.BidiStreamingServer[agentv1.AttestAgentRequest, agentv1.AttestAgentResponse]) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	params := req.GetParams()
	if params.GetAttestationType() != "join_token" || string(params.GetPayload()) != s.token {
		return status.Error(codes.PermissionDenied, "node attestation failed")
	}
	svid, err := s.agentSVID(params.GetCsr())
	if err != nil {
		return err
	}
	if err := stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result{Result: svid}}); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF && err != nil {
		return err
	}
	return nil
}

func (s *fakeServer) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	if err := s.caller(ctx); err != nil {
		return nil, err
	}
	svid, err := s.agentSVID(req.GetCsr())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.renewals++
	s.mu.Unlock()
	return &agentv1.RenewAgentResponse{Svid: svid}, nil
}

func (s *fakeServer) Sync(ctx context.Context, req *agentv1.SyncRequest) (*agentv1.SyncResponse, error) {
	if err := s.caller(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs++
	resp := &agentv1.SyncResponse{Revision: s.revision, Full: req.GetKnownRevision() == 0}
	if req.GetKnownBundleSequence() != 1 {
		resp.Bundle = s.ca.bundleProto(s.t, 1)
	}
	var ids []string
	for id, e := range s.entries {
		ids = append(ids, id)
		if resp.Full || e.GetRevision() > req.GetKnownRevision() {
			resp.Entries = append(resp.Entries, e)
		}
	}
	if !resp.Full && string(apiconv.EntrySetDigest(slices.Clone(ids))) != string(req.GetEntrySetDigest()) {
		resp.EntryIds, resp.EntryIdsSet = ids, true
	}
	return resp, nil
}

func (s *fakeServer) SignX509SVIDs(ctx context.Context, req *agentv1.SignX509SVIDsRequest) (*agentv1.SignX509SVIDsResponse, error) {
	if err := s.caller(ctx); err != nil {
		return nil, err
	}
	resp := &agentv1.SignX509SVIDsResponse{}
	for _, r := range req.GetRequests() {
		res := &agentv1.X509SVIDResult{EntryId: r.GetEntryId(), Status: &commonv1.Status{}}
		s.mu.Lock()
		e := s.entries[r.GetEntryId()]
		s.mu.Unlock()
		if e == nil {
			res.Status = &commonv1.Status{Code: int32(codes.PermissionDenied), Message: "not this node's entry"}
		} else if der, err := s.issue(r.GetCsr(), spiffeid.RequireFromString(e.GetSpiffeId()), s.svidTTL); err != nil {
			res.Status = &commonv1.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		} else {
			res.CertChain = [][]byte{der}
			s.mu.Lock()
			s.signed++
			s.mu.Unlock()
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

func (s *fakeServer) SignJWTSVID(ctx context.Context, req *agentv1.SignJWTSVIDRequest) (*agentv1.SignJWTSVIDResponse, error) {
	if err := s.caller(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	e := s.entries[req.GetEntryId()]
	s.mu.Unlock()
	if e == nil {
		return nil, status.Error(codes.PermissionDenied, "not this node's entry")
	}
	exp := time.Now().Add(5 * time.Minute)
	tok, err := s.minter.mint(spiffeid.RequireFromString(e.GetSpiffeId()), req.GetAudience(), exp)
	if err != nil {
		return nil, err
	}
	return &agentv1.SignJWTSVIDResponse{Token: tok, ExpiresAt: exp.Unix()}, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// errContains reports whether err's text contains s.
func errContains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
