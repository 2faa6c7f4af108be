// Package agentapi implements the agent service of the server: node
// attestation over the AttestAgent stream (through the registered
// nodeattest.Verifiers), agent SVID renewal, the sync of a node's entries,
// and the signing of its workloads' SVIDs.
//
// Authorization is two-layered and deny-by-default. The listener's
// interceptor chain (internal/edge) admits AttestAgent to anyone (rate
// limited per peer) and every other method only after Service.AuthenticateAgent
// found the caller's SVID to be the current SVID of an attested, unbanned
// node; that node travels in the context to the handlers, which then sign
// only for entries that belong to it.
package agentapi

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/entrycache"
	"github.com/signet-id/signet/internal/errkind"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/store"
)

// maxUnpagedSyncBytes bounds a Sync response to an agent that does not page:
// the agent API's 4 MiB message limit, less room for framing.
const maxUnpagedSyncBytes = 4<<20 - 64<<10

// maxSignBatch bounds SignX509SVIDs requests.
const maxSignBatch = 1000

// prevSerialGrace is how long the serial a renewal replaced stays accepted
// after the node first presents its new SVID: long enough for calls
// already in flight on the old connection to finish.
const prevSerialGrace = time.Minute

// Config holds the service's dependencies and settings. Fields without a
// default are required.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// ServerID is the server's own SPIFFE ID, which no agent may claim.
	ServerID spiffeid.ID
	Store    *store.Store
	CA       *ca.Manager
	Entries  *entrycache.Cache
	// Bundle returns the current trust bundle.
	Bundle func() *spiffebundle.Bundle
	// FederatedBundles, when set, returns the last good bundle of every
	// federated trust domain; Sync sends a node those its entries name in
	// federates_with.
	FederatedBundles func() map[spiffeid.TrustDomain]*spiffebundle.Bundle
	// Verifiers are the node attestation methods the server accepts.
	Verifiers []nodeattest.Verifier
	// BrokerURL is sent in every SyncResponse (broker_url): the base URL
	// of this server's token endpoint; empty advertises none.
	BrokerURL string

	AgentTTL       time.Duration
	DefaultX509TTL time.Duration
	DefaultJWTTTL  time.Duration

	// MaxConcurrentAttestations bounds attestations in progress (default
	// 4 per CPU); past it callers are told to retry.
	MaxConcurrentAttestations int
	// AttestTimeout bounds one attestation exchange (default 30s).
	AttestTimeout time.Duration
	// JWTRate bounds JWT-SVID minting (default DefaultJWTRate).
	JWTRate JWTRate
	// MaxWatchStreams bounds the Watch streams held at once (default
	// DefaultMaxWatchStreams).
	MaxWatchStreams int

	Now        func() time.Time
	Log        *slog.Logger
	Registerer prometheus.Registerer // nil: a private registry
}

// Service implements the agent service. Create it with New.
type Service struct {
	agentv1.UnimplementedAgentServer
	cfg       Config
	log       *slog.Logger
	verifiers map[string]nodeattest.Verifier
	attestSem chan struct{}
	jwtLimit  *jwtLimiter
	met       *metrics
	lastSeen  *lastSeen
	addrs     *nodeAddrs
	hub       *Hub
}

var _ agentv1.AgentServer = (*Service)(nil)

// New validates cfg and returns the service. Two verifiers of one name are
// an error.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.CA == nil || cfg.Entries == nil || cfg.Bundle == nil || cfg.TrustDomain.IsZero() {
		return nil, fmt.Errorf("agent api: trust domain, store, CA, entry cache and bundle are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConcurrentAttestations <= 0 {
		cfg.MaxConcurrentAttestations = 16
	}
	if cfg.AttestTimeout <= 0 {
		cfg.AttestTimeout = 30 * time.Second
	}
	if cfg.MaxWatchStreams <= 0 {
		cfg.MaxWatchStreams = DefaultMaxWatchStreams
	}
	if cfg.JWTRate == (JWTRate{}) {
		cfg.JWTRate = DefaultJWTRate
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:       cfg,
		log:       cfg.Log,
		verifiers: map[string]nodeattest.Verifier{},
		attestSem: make(chan struct{}, cfg.MaxConcurrentAttestations),
		jwtLimit:  newJWTLimiter(cfg.JWTRate, cfg.Now),
		met:       met,
		lastSeen:  newLastSeen(cfg.Now),
		addrs:     newNodeAddrs(cfg.Now),
		hub:       newHub(cfg.MaxWatchStreams),
	}
	for _, v := range cfg.Verifiers {
		if _, dup := s.verifiers[v.Name()]; dup {
			return nil, fmt.Errorf("agent api: node attestor %q is configured twice", v.Name())
		}
		s.verifiers[v.Name()] = v
	}
	return s, nil
}

// Register registers the service on g.
func (s *Service) Register(g *grpc.Server) { agentv1.RegisterAgentServer(g, s) }

// Methods returns the service's method table: AttestAgent is public (it is
// how a node without an SVID gets one), everything else needs an attested
// agent.
func Methods() edge.Table {
	t := edge.Table{}.Service(agentv1.Agent_ServiceDesc, edge.Agent)
	t[agentv1.Agent_AttestAgent_FullMethodName] = edge.Public
	return t
}

// MethodNames lists the attestation methods the service accepts, sorted.
func (s *Service) MethodNames() []string { return slices.Sorted(maps.Keys(s.verifiers)) }

type nodeKey struct{}

// nodeFrom returns the authenticated node AuthenticateAgent put in ctx.
func nodeFrom(ctx context.Context) (model.Node, error) {
	n, ok := ctx.Value(nodeKey{}).(model.Node)
	if !ok {
		// The method table routes every agent method through
		// AuthenticateAgent; reaching here means it was bypassed.
		return model.Node{}, errkind.New(errkind.PermissionDenied, "caller is not an attested agent")
	}
	return n, nil
}

// errNotAgent is the one answer to an agent call that is refused: the
// caller is not told whether the node is unknown, banned or presenting a
// superseded SVID.
var errNotAgent = errkind.New(errkind.PermissionDenied,
	"caller is not an attested agent: it may have been evicted or banned; re-attest the node")

// AuthenticateAgent admits an agent call: the caller's SVID must be the
// current SVID of an attested, unbanned node (or its renewed SVID,
// presented for the first time, or the one that renewal replaced, within a
// short grace). It returns ctx carrying the node and the store actor, and
// records the address the call came from (store.RecordNodeAddress,
// throttled) for credentials bound to the node's addresses.
func (s *Service) AuthenticateAgent(ctx context.Context) (context.Context, error) {
	leaf, id, ok := PeerSVID(ctx)
	if !ok {
		return ctx, errkind.New(errkind.Unauthenticated, "an agent SVID is required (mTLS)")
	}
	node, err := s.cfg.Store.GetNode(ctx, id)
	if err != nil {
		if errkind.Is(err, errkind.NotFound) {
			s.log.Warn("agent call denied: unknown node (evicted?)", "agent_id", id.String())
			return ctx, errNotAgent
		}
		return ctx, err
	}
	now := s.cfg.Now()
	if serial := serialOf(leaf); s.hub.SerialRevoked(serial) {
		s.log.Warn("agent call denied: the agent svid was revoked", "agent_id", id.String(), "serial", serial)
		return ctx, errNotAgent
	}
	if node, err = s.checkSerial(ctx, node, serialOf(leaf), now); err != nil {
		return ctx, err
	}
	s.lastSeen.touch(ctx, s.cfg.Store, s.log, node.SPIFFEID)
	s.addrs.record(ctx, s.cfg.Store, s.log, node.SPIFFEID)
	ctx = context.WithValue(ctx, nodeKey{}, node)
	return store.WithActor(ctx, "agent:"+node.SPIFFEID.String()), nil
}

// checkSerial decides whether an SVID of serial may act for node, promoting
// a renewed SVID on its first use.
func (s *Service) checkSerial(ctx context.Context, node model.Node, serial string, now time.Time) (model.Node, error) {
	if node.Banned {
		s.log.Warn("agent call denied: node is banned", "agent_id", node.SPIFFEID.String())
		return node, errNotAgent
	}
	switch {
	case serial == node.SerialNumber:
		return node, nil
	case serial == node.PrevSerialNumber && now.Before(node.PrevSerialUntil):
		return node, nil
	case serial == node.NewSerialNumber:
		// First use of a renewed SVID: from now on it is the current one.
		promoted, err := s.cfg.Store.PromoteNodeSerial(ctx, node.SPIFFEID, serial, now.Add(prevSerialGrace))
		if err != nil {
			return node, err
		}
		fresh, err := s.cfg.Store.GetNode(ctx, node.SPIFFEID)
		if err != nil {
			if errkind.Is(err, errkind.NotFound) {
				return node, errNotAgent
			}
			return node, err
		}
		if promoted || fresh.SerialNumber == serial {
			return fresh, nil // promoted by this call or a concurrent one
		}
		return s.checkSerial(ctx, fresh, serial, now)
	}
	s.log.Warn("agent call denied: svid is not the node's current one", "agent_id", node.SPIFFEID.String(), "serial", serial)
	return node, errNotAgent
}

func serialOf(c *x509.Certificate) string { return strings.ToLower(c.SerialNumber.Text(16)) }

// PeerSVID returns the verified X509-SVID leaf the caller presented over
// TLS, if any. The listener's TLS configuration verified the chain.
func PeerSVID(ctx context.Context) (*x509.Certificate, spiffeid.ID, bool) {
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

// RenewAgent issues a fresh agent SVID to a node presenting its current one.
// The current SVID stays valid until the node presents the new one, so a
// reply lost on the way strands no one.
func (s *Service) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	node, err := nodeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetCsr()) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "csr is required")
	}
	chain, err := s.cfg.CA.SignX509SVID(ctx, req.GetCsr(), ca.X509Params{ID: node.SPIFFEID, TTL: s.cfg.AgentTTL})
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.RenewNodeSVID(ctx, node.SPIFFEID, serialOf(chain[0]), chain[0].NotAfter); err != nil {
		if errkind.Is(err, errkind.PermissionDenied) || errkind.Is(err, errkind.NotFound) {
			s.log.Warn("agent svid renewal denied: node banned or evicted meanwhile", "agent_id", node.SPIFFEID.String())
			return nil, errNotAgent
		}
		return nil, err
	}
	svid, err := s.agentSVID(node.SPIFFEID, chain)
	if err != nil {
		return nil, err
	}
	return &agentv1.RenewAgentResponse{Svid: svid}, nil
}

// agentSVID puts an agent SVID and the current bundle on the wire.
func (s *Service) agentSVID(id spiffeid.ID, chain []*x509.Certificate) (*agentv1.AgentSVID, error) {
	b, err := apiconv.BundleToProto(s.cfg.Bundle())
	if err != nil {
		return nil, err
	}
	out := &agentv1.AgentSVID{SpiffeId: id.String(), Bundle: b}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return out, nil
}

// Sync tells the calling node what changed since known_revision.
func (s *Service) Sync(ctx context.Context, req *agentv1.SyncRequest) (*agentv1.SyncResponse, error) {
	node, err := nodeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.recordServed(ctx, node, req.GetServed()); err != nil {
		return nil, err
	}
	resp := &agentv1.SyncResponse{Revision: s.cfg.Entries.Revision(), BrokerUrl: s.cfg.BrokerURL}
	if b := s.cfg.Bundle(); b != nil {
		if seq, _ := b.SequenceNumber(); seq != req.GetKnownBundleSequence() {
			if resp.Bundle, err = apiconv.BundleToProto(b); err != nil {
				return nil, err
			}
		}
	}
	var fed map[spiffeid.TrustDomain]*spiffebundle.Bundle
	if s.cfg.FederatedBundles != nil {
		fed = s.cfg.FederatedBundles()
	}
	known := req.GetKnownRevision()
	if req.GetPageSize() < 0 {
		return nil, errkind.New(errkind.InvalidArgument, "page_size: must be 0 (no paging) or 1 to %d, got %d", maxSyncPageSize, req.GetPageSize())
	}
	paged := req.GetPageSize() > 0
	if !paged && req.GetPageToken() != "" {
		return nil, errkind.New(errkind.InvalidArgument, "page_token: only with page_size set (1 to %d)", maxSyncPageSize)
	}
	if known == resp.Revision && known != 0 && len(fed) == 0 && req.GetPageToken() == "" {
		return resp, nil // nothing changed anywhere
	}
	v := s.viewOf(node, s.cfg.Now())
	if len(fed) > 0 {
		if resp.FederatedBundles, err = federatedFor(v.federatesWith(), fed); err != nil {
			return nil, err
		}
	}
	if paged {
		if err := s.syncPage(req, resp, v, resp.Revision); err != nil {
			return nil, err
		}
		return resp, nil
	}
	if known == resp.Revision && known != 0 {
		return resp, nil
	}
	entries := v.all()
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
	if n := proto.Size(resp); n > maxUnpagedSyncBytes {
		return nil, errkind.New(errkind.ResourceExhausted,
			"page_size: the node's %d entries need %d bytes, more than one Sync response may carry (4 MiB): "+
				"set page_size (an agent of this version pages)", len(entries), n)
	}
	return resp, nil
}

// recordServed stores when the node's workloads were served SVIDs. Only
// entries that belong to the node count, and times in the future are
// clamped to now, so a node cannot make another node's workloads look
// alive. Failing to store it is logged, not fatal to the sync: it is
// inventory, not identity.
func (s *Service) recordServed(ctx context.Context, node model.Node, served []*agentv1.ServedEntry) error {
	if len(served) == 0 {
		return nil
	}
	if len(served) > store.MaxServedReport {
		return errkind.New(errkind.InvalidArgument, "served: report at most %d entries per sync, got %d", store.MaxServedReport, len(served))
	}
	now := s.cfg.Now()
	out := make([]store.Served, 0, len(served))
	for _, r := range served {
		if s.cfg.Entries.BelongsTo(r.GetEntryId(), node.SPIFFEID, node.Selectors, now) == nil {
			continue
		}
		if r.GetFirstServedAt() <= 0 || r.GetLastServedAt() < r.GetFirstServedAt() {
			continue
		}
		first := time.Unix(min(r.GetFirstServedAt(), now.Unix()), 0)
		last := time.Unix(min(r.GetLastServedAt(), now.Unix()), 0)
		out = append(out, store.Served{EntryID: r.GetEntryId(), First: first, Last: last})
	}
	if err := s.cfg.Store.RecordServed(ctx, out); err != nil {
		s.log.Warn("record served svids", "agent_id", node.SPIFFEID.String(), "error", err)
	}
	return nil
}

// SignX509SVIDs signs workload CSRs for entries of the calling node. Each
// item succeeds or fails on its own; an entry of another node is refused.
// The batch's audit records are durable before any SVID is returned.
func (s *Service) SignX509SVIDs(ctx context.Context, req *agentv1.SignX509SVIDsRequest) (*agentv1.SignX509SVIDsResponse, error) {
	node, err := nodeFrom(ctx)
	if err != nil {
		return nil, err
	}
	n := len(req.GetRequests())
	if n == 0 || n > maxSignBatch {
		return nil, errkind.New(errkind.InvalidArgument, "requests: send 1 to %d CSRs per call, got %d", maxSignBatch, n)
	}
	now := s.cfg.Now()
	resp := &agentv1.SignX509SVIDsResponse{Results: make([]*agentv1.X509SVIDResult, 0, n)}
	iss := store.Issuance{At: now, Records: make([]model.AuditRecord, 0, n), Issued: make([]string, 0, n), Bindings: make([]store.SVIDBinding, 0, n)}
	nodeID := node.SPIFFEID.String()
	var ok, denied, failed int // counted once per call: the metric's lookup is not free
	for _, r := range req.GetRequests() {
		res := &agentv1.X509SVIDResult{EntryId: r.GetEntryId()}
		resp.Results = append(resp.Results, res)
		entry := s.cfg.Entries.BelongsTo(r.GetEntryId(), node.SPIFFEID, node.Selectors, now)
		if entry == nil {
			s.log.Warn("x509-svid denied: entry does not belong to the caller's node",
				"agent_id", nodeID, "entry_id", logsafe.Truncate(r.GetEntryId()))
			denied++
			iss.Records = append(iss.Records, model.AuditRecord{Action: "svid.x509.deny", Object: logsafe.Truncate(r.GetEntryId()),
				Detail: map[string]string{"reason": "entry does not belong to node", "node": nodeID}})
			res.Status = apiconv.StatusToProto(errkind.New(errkind.PermissionDenied, "entry %q does not exist or does not belong to this node", logsafe.Truncate(r.GetEntryId())))
			continue
		}
		ttl := entry.X509TTL
		if ttl == 0 {
			ttl = s.cfg.DefaultX509TTL
		}
		svid, err := s.cfg.CA.MintX509SVID(ctx, r.GetCsr(), ca.X509Params{ID: entry.SPIFFEID, TTL: ttl, DNSNames: entry.DNSNames})
		if err != nil {
			if errkind.Of(err) == errkind.Internal {
				msg, id := errkind.Public(err)
				s.log.ErrorContext(ctx, "internal error", "error_id", id, "error", err)
				err = errkind.New(errkind.Unavailable, "%s", msg)
			}
			failed++
			res.Status = apiconv.StatusToProto(err)
			continue
		}
		res.CertChain = svid.Chain
		res.Status = apiconv.StatusToProto(nil)
		// big.Int.Text writes lower-case hex, as bindings keep serials.
		serial, id := svid.Serial.Text(16), entry.SPIFFEID.String()
		iss.Issued = append(iss.Issued, entry.ID)
		iss.Bindings = append(iss.Bindings, store.SVIDBinding{Digest: model.SVIDDigest(svid.Chain[0]), EntryID: entry.ID,
			NodeID: nodeID, ExpiresAt: svid.NotAfter, Serial: serial, SPIFFEID: id})
		ok++
		iss.Records = append(iss.Records, model.AuditRecord{Action: "svid.x509.sign", Object: entry.ID,
			Detail: map[string]string{"spiffe_id": id, "node": nodeID, "serial": serial, "not_after": svid.NotAfter.Format(time.RFC3339)}})
	}
	s.countSigned("ok", ok)
	s.countSigned("denied", denied)
	s.countSigned("error", failed)
	if err := s.record(ctx, iss); err != nil {
		return nil, err
	}
	return resp, nil
}

// countSigned adds k X509-SVID signing outcomes to the metric.
func (s *Service) countSigned(outcome string, k int) {
	if k > 0 {
		s.met.svidsSigned.WithLabelValues("x509", outcome).Add(float64(k))
	}
}

// record makes a decision's audit records durable. The one rule for audit
// failures: nothing is handed out whose issuance could not be recorded, and
// a denial whose record failed is still denied, with the failure logged
// and counted, never dropped silently.
func (s *Service) record(ctx context.Context, iss store.Issuance) error {
	err := s.cfg.Store.RecordIssuance(ctx, iss)
	if err == nil {
		return nil
	}
	s.met.auditFailures.Inc()
	actions := make([]string, 0, len(iss.Records))
	for _, r := range iss.Records {
		actions = append(actions, r.Action+" "+r.Object)
	}
	s.log.ErrorContext(ctx, "cannot record issuance decisions in the audit log: refusing the call", "error", err,
		"decisions", strings.Join(actions, ", "))
	return errkind.Wrap(errkind.Unavailable, err, "cannot record the issuance in the audit log; retry")
}

// SignJWTSVID mints a JWT-SVID for an entry of the calling node, within the
// node's and the entry's minting rates.
func (s *Service) SignJWTSVID(ctx context.Context, req *agentv1.SignJWTSVIDRequest) (*agentv1.SignJWTSVIDResponse, error) {
	node, err := nodeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetAudience()) == 0 || slices.Contains(req.GetAudience(), "") {
		return nil, errkind.New(errkind.InvalidArgument, "audience: at least one non-empty audience is required")
	}
	if len(req.GetAudience()) > maxAudiences {
		return nil, errkind.New(errkind.InvalidArgument, "audience: at most %d audiences, got %d", maxAudiences, len(req.GetAudience()))
	}
	for _, a := range req.GetAudience() {
		if len(a) > maxAudienceLen {
			return nil, errkind.New(errkind.InvalidArgument, "audience: each at most %d bytes, got %d", maxAudienceLen, len(a))
		}
	}
	now := s.cfg.Now()
	entry := s.cfg.Entries.BelongsTo(req.GetEntryId(), node.SPIFFEID, node.Selectors, now)
	if entry == nil {
		s.log.Warn("jwt-svid denied: entry does not belong to the caller's node",
			"agent_id", node.SPIFFEID.String(), "entry_id", logsafe.Truncate(req.GetEntryId()))
		s.met.svidsSigned.WithLabelValues("jwt", "denied").Inc()
		denied := errkind.New(errkind.PermissionDenied, "entry %q does not exist or does not belong to this node", logsafe.Truncate(req.GetEntryId()))
		_ = s.record(ctx, store.Issuance{At: now, Records: []model.AuditRecord{{Action: "svid.jwt.deny", Object: logsafe.Truncate(req.GetEntryId()),
			Detail: map[string]string{"reason": "entry does not belong to node", "node": node.SPIFFEID.String()}}}})
		return nil, denied
	}
	if !s.jwtLimit.allow(node.SPIFFEID, entry.ID) {
		s.met.svidsSigned.WithLabelValues("jwt", "throttled").Inc()
		return nil, errkind.New(errkind.ResourceExhausted,
			"jwt-svid minting rate exceeded for this node or workload (%s): cache JWT-SVIDs until they near expiry", s.cfg.JWTRate)
	}
	ttl := entry.JWTTTL
	if ttl == 0 {
		ttl = s.cfg.DefaultJWTTTL
	}
	token, exp, err := s.cfg.CA.SignJWTSVID(ctx, ca.JWTParams{ID: entry.SPIFFEID, Audience: req.GetAudience(), TTL: ttl})
	if err != nil {
		s.met.svidsSigned.WithLabelValues("jwt", "error").Inc()
		return nil, err
	}
	binding := store.SVIDBinding{Digest: model.SVIDDigest([]byte(token)), EntryID: entry.ID, NodeID: node.SPIFFEID.String(), ExpiresAt: exp, SPIFFEID: entry.SPIFFEID.String()}
	if err := s.record(ctx, store.Issuance{At: now, Issued: []string{entry.ID}, Bindings: []store.SVIDBinding{binding}, Records: []model.AuditRecord{{
		Action: "svid.jwt.sign", Object: entry.ID,
		Detail: map[string]string{"spiffe_id": entry.SPIFFEID.String(), "node": node.SPIFFEID.String(),
			"audience": strings.Join(req.GetAudience(), " "), "expires_at": exp.UTC().Format(time.RFC3339)}}}}); err != nil {
		return nil, err
	}
	s.met.svidsSigned.WithLabelValues("jwt", "ok").Inc()
	return &agentv1.SignJWTSVIDResponse{Token: token, ExpiresAt: exp.Unix()}, nil
}

// Bounds of JWT-SVID audiences.
const (
	maxAudiences   = 16
	maxAudienceLen = 1024
)

// federatedFor returns the bundles of fed for the trust domains tds (the
// node's entries' federates_with, sorted by name, once each), in that
// order; a trust domain without a bundle in fed is left out.
func federatedFor(tds []spiffeid.TrustDomain, fed map[spiffeid.TrustDomain]*spiffebundle.Bundle) ([]*commonv1.Bundle, error) {
	if len(fed) == 0 {
		return nil, nil
	}
	out := make([]*commonv1.Bundle, 0, len(tds))
	for _, td := range tds {
		b, ok := fed[td]
		if !ok {
			continue
		}
		pb, err := apiconv.BundleToProto(b)
		if err != nil {
			return nil, err
		}
		out = append(out, pb)
	}
	return out, nil
}
