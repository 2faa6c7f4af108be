package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/store"
)

// maxSignBatch bounds SignX509SVIDs requests.
const maxSignBatch = 1000

// attestFailed is the one answer every failed attestation gets: callers
// never learn which check failed.
var attestFailed = errkind.New(errkind.PermissionDenied, "node attestation failed")

// agentAPI implements the agent service.
type agentAPI struct {
	agentv1.UnimplementedAgentServer
	s *Server
}

// AttestAgent admits a node with a join token and returns its agent SVID.
func (a *agentAPI) AttestAgent(stream grpc.BidiStreamingServer[agentv1.AttestAgentRequest, agentv1.AttestAgentResponse]) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err == io.EOF {
		return status.Error(errkind.GRPCCode(errkind.InvalidArgument), "attestation params are required")
	}
	if err != nil {
		return err
	}
	params := req.GetParams()
	if params == nil {
		return a.s.rpcError(ctx, errkind.New(errkind.InvalidArgument, "the first attestation message must carry params"))
	}
	if len(params.GetCsr()) == 0 {
		return a.s.rpcError(ctx, errkind.New(errkind.InvalidArgument, "params.csr is required"))
	}
	var agentID spiffeid.ID
	switch params.GetAttestationType() {
	case jointoken.Name:
		agentID, err = a.attestJoinToken(ctx, params.GetPayload())
	default:
		err = errkind.New(errkind.InvalidArgument, "attestation_type %q is not supported: this server accepts %s", params.GetAttestationType(), jointoken.Name)
	}
	if err != nil {
		a.s.metrics.attestations.WithLabelValues(params.GetAttestationType(), "denied").Inc()
		return a.s.rpcError(ctx, err)
	}
	svid, err := a.issueAgentSVID(ctx, agentID, params.GetAttestationType(), params.GetCsr(), true)
	if err != nil {
		a.s.metrics.attestations.WithLabelValues(params.GetAttestationType(), "error").Inc()
		return a.s.rpcError(ctx, err)
	}
	a.s.metrics.attestations.WithLabelValues(params.GetAttestationType(), "ok").Inc()
	a.s.log.Info("node attested", "agent_id", agentID.String(), "method", params.GetAttestationType())
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result{Result: svid}})
}

// attestJoinToken consumes the token and returns the agent ID it grants.
func (a *agentAPI) attestJoinToken(ctx context.Context, payload []byte) (spiffeid.ID, error) {
	if len(payload) == 0 || len(payload) > 256 {
		return spiffeid.ID{}, attestFailed
	}
	hash := jointoken.Hash(string(payload))
	tok, err := a.s.store.ConsumeJoinToken(store.WithActor(ctx, "agent:join_token"), hash, a.s.cfg.Now())
	if err != nil {
		if errkind.Is(err, errkind.NotFound) {
			a.s.log.Warn("node attestation denied: join token invalid, used or expired")
			return spiffeid.ID{}, attestFailed
		}
		return spiffeid.ID{}, err
	}
	if !tok.SPIFFEID.IsZero() {
		return tok.SPIFFEID, nil
	}
	return jointoken.AgentID(a.s.cfg.TrustDomain, hash)
}

// issueAgentSVID signs an agent SVID and records the node. On attestation
// (create true) a banned node is refused and an existing one re-admitted.
func (a *agentAPI) issueAgentSVID(ctx context.Context, id spiffeid.ID, method string, csr []byte, create bool) (*agentv1.AgentSVID, error) {
	ctx = store.WithActor(ctx, "agent:"+id.String())
	chain, err := a.s.ca.SignX509SVID(ctx, csr, ca.X509Params{ID: id, TTL: a.s.cfg.AgentTTL})
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	serial := strings.ToLower(leaf.SerialNumber.Text(16))
	now := a.s.cfg.Now()
	node, err := a.s.store.GetNode(ctx, id)
	switch {
	case err == nil:
		if node.Banned {
			a.s.log.Warn("node attestation denied: node is banned", "agent_id", id.String())
			return nil, attestFailed
		}
		if create {
			// Re-attestation: every SVID issued before is void at once.
			node.AttestationType = method
			node.SerialNumber, node.NewSerialNumber = serial, ""
		} else {
			// Renewal: the current SVID stays valid until the node presents
			// the new one, so a reply lost on the way strands no one.
			node.NewSerialNumber = serial
		}
		node.CertNotAfter = leaf.NotAfter
		if _, err := a.s.store.UpdateNode(ctx, node); err != nil {
			return nil, err
		}
	case errkind.Is(err, errkind.NotFound) && create:
		if _, err := a.s.store.CreateNode(ctx, model.Node{
			SPIFFEID: id, AttestationType: method, SerialNumber: serial,
			CertNotAfter: leaf.NotAfter, LastSeenAt: now,
		}); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	b, err := apiconv.BundleToProto(a.s.Bundle())
	if err != nil {
		return nil, err
	}
	out := &agentv1.AgentSVID{SpiffeId: id.String(), Bundle: b}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return out, nil
}

// RenewAgent issues a fresh agent SVID to a node presenting its current one.
func (a *agentAPI) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	node, err := a.s.callerNode(ctx)
	if err != nil {
		return nil, a.s.rpcError(ctx, err)
	}
	if len(req.GetCsr()) == 0 {
		return nil, a.s.rpcError(ctx, errkind.New(errkind.InvalidArgument, "csr is required"))
	}
	svid, err := a.issueAgentSVID(ctx, node.SPIFFEID, node.AttestationType, req.GetCsr(), false)
	if err != nil {
		return nil, a.s.rpcError(ctx, err)
	}
	return &agentv1.RenewAgentResponse{Svid: svid}, nil
}

// Sync tells the calling node what changed since known_revision.
func (a *agentAPI) Sync(ctx context.Context, req *agentv1.SyncRequest) (*agentv1.SyncResponse, error) {
	node, err := a.s.callerNode(ctx)
	if err != nil {
		return nil, a.s.rpcError(ctx, err)
	}
	a.s.touchNode(ctx, node.SPIFFEID)
	resp := &agentv1.SyncResponse{Revision: a.s.cache.Revision()}
	if b := a.s.Bundle(); b != nil {
		if seq, _ := b.SequenceNumber(); seq != req.GetKnownBundleSequence() {
			if resp.Bundle, err = apiconv.BundleToProto(b); err != nil {
				return nil, a.s.rpcError(ctx, err)
			}
		}
	}
	known := req.GetKnownRevision()
	if known == resp.Revision && known != 0 {
		return resp, nil // nothing changed anywhere
	}
	entries := a.s.cache.nodeEntries(node.SPIFFEID, node.Selectors, a.s.cfg.Now())
	resp.Full = known <= 0 || known > resp.Revision
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.ID)
		if resp.Full || e.Revision > known {
			resp.Entries = append(resp.Entries, apiconv.EntryToProto(*e))
		}
	}
	if !resp.Full {
		if digest := apiconv.EntrySetDigest(ids); string(digest) != string(req.GetEntrySetDigest()) {
			resp.EntryIds, resp.EntryIdsSet = ids, true
		}
	}
	return resp, nil
}

// SignX509SVIDs signs workload CSRs for entries of the calling node. Each
// item succeeds or fails on its own; an entry of another node is refused.
func (a *agentAPI) SignX509SVIDs(ctx context.Context, req *agentv1.SignX509SVIDsRequest) (*agentv1.SignX509SVIDsResponse, error) {
	node, err := a.s.callerNode(ctx)
	if err != nil {
		return nil, a.s.rpcError(ctx, err)
	}
	if n := len(req.GetRequests()); n == 0 || n > maxSignBatch {
		return nil, a.s.rpcError(ctx, errkind.New(errkind.InvalidArgument, "requests: send 1 to %d CSRs per call, got %d", maxSignBatch, n))
	}
	now := a.s.cfg.Now()
	resp := &agentv1.SignX509SVIDsResponse{Results: make([]*agentv1.X509SVIDResult, 0, len(req.GetRequests()))}
	var signed []string
	var audit []model.AuditRecord
	for _, r := range req.GetRequests() {
		res := &agentv1.X509SVIDResult{EntryId: r.GetEntryId()}
		resp.Results = append(resp.Results, res)
		entry := a.s.cache.belongsTo(r.GetEntryId(), node.SPIFFEID, node.Selectors, now)
		if entry == nil {
			a.s.log.Warn("x509-svid denied: entry does not belong to the caller's node",
				"agent_id", node.SPIFFEID.String(), "entry_id", r.GetEntryId())
			a.s.metrics.svidsSigned.WithLabelValues("x509", "denied").Inc()
			audit = append(audit, model.AuditRecord{Action: "svid.x509.deny", Object: r.GetEntryId(),
				Detail: map[string]string{"reason": "entry does not belong to node", "node": node.SPIFFEID.String()}})
			res.Status = apiconv.StatusToProto(errkind.New(errkind.PermissionDenied, "entry %q does not exist or does not belong to this node", r.GetEntryId()))
			continue
		}
		ttl := entry.X509TTL
		if ttl == 0 {
			ttl = a.s.cfg.DefaultX509TTL
		}
		chain, err := a.s.ca.SignX509SVID(ctx, r.GetCsr(), ca.X509Params{ID: entry.SPIFFEID, TTL: ttl, DNSNames: entry.DNSNames})
		if err != nil {
			if errkind.Of(err) == errkind.Internal {
				a.s.logInternal(ctx, err)
			}
			a.s.metrics.svidsSigned.WithLabelValues("x509", "error").Inc()
			res.Status = apiconv.StatusToProto(err)
			continue
		}
		for _, c := range chain {
			res.CertChain = append(res.CertChain, c.Raw)
		}
		res.Status = apiconv.StatusToProto(nil)
		signed = append(signed, entry.ID)
		a.s.metrics.svidsSigned.WithLabelValues("x509", "ok").Inc()
		audit = append(audit, model.AuditRecord{Action: "svid.x509.sign", Object: entry.ID,
			Detail: map[string]string{"spiffe_id": entry.SPIFFEID.String(), "node": node.SPIFFEID.String(),
				"serial": chain[0].SerialNumber.Text(16), "not_after": chain[0].NotAfter.UTC().Format(time.RFC3339)}})
	}
	actx := store.WithActor(ctx, "agent:"+node.SPIFFEID.String())
	if err := a.s.store.AppendAudit(actx, audit...); err != nil {
		return nil, a.s.rpcError(ctx, fmt.Errorf("record issuance: %w", err))
	}
	if len(signed) > 0 {
		if err := a.s.store.TouchEntries(ctx, signed, now); err != nil {
			a.s.log.Warn("record entry issuance times", "error", err)
		}
	}
	return resp, nil
}

// SignJWTSVID mints a JWT-SVID for an entry of the calling node.
func (a *agentAPI) SignJWTSVID(ctx context.Context, req *agentv1.SignJWTSVIDRequest) (*agentv1.SignJWTSVIDResponse, error) {
	node, err := a.s.callerNode(ctx)
	if err != nil {
		return nil, a.s.rpcError(ctx, err)
	}
	if len(req.GetAudience()) == 0 || slices.Contains(req.GetAudience(), "") {
		return nil, a.s.rpcError(ctx, errkind.New(errkind.InvalidArgument, "audience: at least one non-empty audience is required"))
	}
	now := a.s.cfg.Now()
	entry := a.s.cache.belongsTo(req.GetEntryId(), node.SPIFFEID, node.Selectors, now)
	actx := store.WithActor(ctx, "agent:"+node.SPIFFEID.String())
	if entry == nil {
		a.s.log.Warn("jwt-svid denied: entry does not belong to the caller's node",
			"agent_id", node.SPIFFEID.String(), "entry_id", req.GetEntryId())
		a.s.metrics.svidsSigned.WithLabelValues("jwt", "denied").Inc()
		_ = a.s.store.AppendAudit(actx, model.AuditRecord{Action: "svid.jwt.deny", Object: req.GetEntryId(),
			Detail: map[string]string{"reason": "entry does not belong to node", "node": node.SPIFFEID.String()}})
		return nil, a.s.rpcError(ctx, errkind.New(errkind.PermissionDenied, "entry %q does not exist or does not belong to this node", req.GetEntryId()))
	}
	ttl := entry.JWTTTL
	if ttl == 0 {
		ttl = a.s.cfg.DefaultJWTTTL
	}
	token, exp, err := a.s.ca.SignJWTSVID(ctx, ca.JWTParams{ID: entry.SPIFFEID, Audience: req.GetAudience(), TTL: ttl})
	if err != nil {
		a.s.metrics.svidsSigned.WithLabelValues("jwt", "error").Inc()
		return nil, a.s.rpcError(ctx, err)
	}
	a.s.metrics.svidsSigned.WithLabelValues("jwt", "ok").Inc()
	if err := a.s.store.AppendAudit(actx, model.AuditRecord{Action: "svid.jwt.sign", Object: entry.ID,
		Detail: map[string]string{"spiffe_id": entry.SPIFFEID.String(), "audience": strings.Join(req.GetAudience(), " "),
			"expires_at": exp.UTC().Format(time.RFC3339)}}); err != nil {
		return nil, a.s.rpcError(ctx, fmt.Errorf("record issuance: %w", err))
	}
	if err := a.s.store.TouchEntries(ctx, []string{entry.ID}, now); err != nil {
		a.s.log.Warn("record entry issuance times", "error", err)
	}
	return &agentv1.SignJWTSVIDResponse{Token: token, ExpiresAt: exp.Unix()}, nil
}

// peerSVID returns the verified X509-SVID leaf the caller presented over
// TLS, if any.
func peerSVID(ctx context.Context) (*x509.Certificate, spiffeid.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, spiffeid.ID{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, spiffeid.ID{}, false
	}
	leaf := info.State.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, spiffeid.ID{}, false
	}
	return leaf, id, true
}

// callerNode authorizes an agent call: the caller's SVID must be the
// current SVID of an attested, unbanned node.
func (s *Server) callerNode(ctx context.Context) (model.Node, error) {
	denied := errkind.New(errkind.PermissionDenied, "caller is not an attested agent: it may have been evicted or banned; re-attest with a new join token")
	leaf, id, ok := peerSVID(ctx)
	if !ok {
		return model.Node{}, errkind.New(errkind.Unauthenticated, "an agent SVID is required (mTLS)")
	}
	node, err := s.store.GetNode(ctx, id)
	if err != nil {
		if errkind.Is(err, errkind.NotFound) {
			s.log.Warn("agent call denied: unknown node (evicted?)", "agent_id", id.String())
			return model.Node{}, denied
		}
		return model.Node{}, err
	}
	if node.Banned {
		s.log.Warn("agent call denied: node is banned", "agent_id", id.String())
		return model.Node{}, denied
	}
	serial := strings.ToLower(leaf.SerialNumber.Text(16))
	switch serial {
	case node.SerialNumber:
	case node.NewSerialNumber:
		// First use of a renewed SVID: from now on only it is valid.
		node.SerialNumber, node.NewSerialNumber = serial, ""
		if node, err = s.store.UpdateNode(ctx, node); err != nil {
			return model.Node{}, err
		}
	default:
		s.log.Warn("agent call denied: svid is not the node's current one", "agent_id", id.String(), "serial", serial)
		return model.Node{}, denied
	}
	return node, nil
}

// touchNode records that a node was seen, at most once a minute per node.
func (s *Server) touchNode(ctx context.Context, id spiffeid.ID) {
	now := s.cfg.Now()
	s.lastSeenMu.Lock()
	last := s.lastSeen[id]
	fresh := now.Sub(last) < time.Minute
	if !fresh {
		s.lastSeen[id] = now
	}
	s.lastSeenMu.Unlock()
	if !fresh {
		if err := s.store.TouchNode(ctx, id, now); err != nil && !errkind.Is(err, errkind.NotFound) {
			s.log.Warn("record node last seen", "agent_id", id.String(), "error", err)
		}
	}
}

var _ agentv1.AgentServer = (*agentAPI)(nil)

// bundleProto is the current bundle on the wire.
func (s *Server) bundleProto() (*commonv1.Bundle, error) { return apiconv.BundleToProto(s.Bundle()) }
