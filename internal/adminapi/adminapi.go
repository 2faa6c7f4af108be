// Package adminapi implements Signet's admin service: registration
// entries, attested nodes, join tokens, the trust bundle and CA authority
// rotation. It is served on the server's admin unix socket and, for holders
// of an admin SVID, on the agent listener; authorization happens in each
// listener's interceptor chain (internal/edge), and the actor the chain puts
// in the context is what the store records in the audit log.
package adminapi

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/federation"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/store"
)

// Paging limits of ListEntries.
const (
	defaultPageSize = 1000
	maxPageSize     = 10000
)

// errBatchRejected marks the valid items of an atomic batch that failed.
var errBatchRejected = errkind.New(errkind.FailedPrecondition, "not created: another entry of the atomic batch is invalid")

// Config holds the service's dependencies. Every field is required.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// ServerID is the server's own SPIFFE ID, the parent of node aliases.
	ServerID     spiffeid.ID
	JoinTokenTTL time.Duration
	// MaxSVIDTTL bounds the lifetimes entries may ask for.
	MaxSVIDTTL time.Duration
	Store      *store.Store
	CA         *ca.Manager
	// Bundle returns the current trust bundle.
	Bundle func() *spiffebundle.Bundle
	// Changed is called after every write, so the server's caches reflect
	// it before the call returns.
	Changed func(ctx context.Context)
	// Created, when set, is called instead of Changed after CreateEntries
	// with the entries it created (every one of them written by one store
	// transaction, so all carry the same Revision), so that the caches can
	// take them as they are instead of reading them back.
	Created func(ctx context.Context, created []model.Entry)
	// StreamCreated, when set, is called at the start of each
	// CreateEntriesStream for where to put the entries it writes, so that
	// the caches can take them without reading them back. Unset, the
	// service commits and calls Changed.
	StreamCreated func() CreatedSink
	// RefreshBundle rebuilds the trust bundle after an authority change.
	RefreshBundle func(ctx context.Context) error
	Now           func() time.Time
	Log           *slog.Logger
	// Federation fetches remote bundles for RefreshFederation.
	Federation *federation.Refresher
}

// CreatedSink takes the entries one CreateEntriesStream writes, message
// by message, and folds them into the caches once they are committed.
type CreatedSink interface {
	// Add takes entries as the store wrote them (uncommitted), during the
	// call only.
	Add(written []*model.Entry)
	// Commit calls commit once, which commits the stream's store
	// transaction and returns its revision, and when that succeeds folds
	// the added entries in. It returns the revision.
	Commit(ctx context.Context, commit func(context.Context) (int64, error)) (int64, error)
}

// Service implements the admin service. Create it with New.
type Service struct {
	adminv1.UnimplementedAdminServer
	cfg Config
}

var _ adminv1.AdminServer = (*Service)(nil)

// New returns the service over cfg.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Register registers the service on g.
func (a *Service) Register(g *grpc.Server) { adminv1.RegisterAdminServer(g, a) }

// Methods returns the method table of the service: every method needs an
// administrator.
func Methods() edge.Table { return edge.Table{}.Service(adminv1.Admin_ServiceDesc, edge.Admin) }

// checkEntry applies the server's rules on top of the store's: IDs in this
// trust domain and not the bare trust-domain ID, no reserved SPIFFE IDs,
// bounded lifetimes. The store enforces, in its write transaction, that no
// entry carries a node's identity (internal/store/identity.go).
func (a *Service) checkEntry(e model.Entry) error {
	if err := a.checkID("spiffe_id", e.SPIFFEID); err != nil {
		return err
	}
	if err := a.checkID("parent_id", e.ParentID); err != nil {
		return err
	}
	if isReserved(e.SPIFFEID) {
		return errReserved("spiffe_id", e.SPIFFEID)
	}
	if e.X509TTL > a.cfg.MaxSVIDTTL || e.JWTTTL > a.cfg.MaxSVIDTTL {
		return errkind.New(errkind.InvalidArgument, "x509_ttl and jwt_ttl must be at most %s", a.cfg.MaxSVIDTTL)
	}
	return e.Validate()
}

// checkID refuses an ID outside the trust domain, and the trust domain's
// own ID (spiffe://example.org), which names no workload or node.
func (a *Service) checkID(field string, id spiffeid.ID) error {
	td := a.cfg.TrustDomain
	if !id.MemberOf(td) {
		return errkind.New(errkind.InvalidArgument, "%s %s is not in trust domain %s: want spiffe://%s/<path>",
			field, logsafe.Truncate(id.String()), td.Name(), td.Name())
	}
	if id.Path() == "" {
		return errkind.New(errkind.InvalidArgument, "%s %s is the trust domain's own ID: add a path, such as %s/web",
			field, id, id)
	}
	return nil
}

// isReserved reports whether id is under spiffe://<td>/signet, the IDs of
// Signet's own components (the server, join-token agents). No entry or
// join token may grant one; they stay valid as parent IDs (node aliases
// hang off the server's ID).
func isReserved(id spiffeid.ID) bool {
	p := id.Path()
	return p == "/signet" || strings.HasPrefix(p, "/signet/")
}

func errReserved(field string, id spiffeid.ID) error {
	return errkind.New(errkind.InvalidArgument,
		"%s %s uses the reserved path prefix /signet/ (Signet's server and agent identities): choose another path",
		field, logsafe.Truncate(id.String()))
}

// checkSupported refuses the entry fields that are stored but do nothing
// yet, until the features that use them land. UpdateEntry checks only what
// the request sets, so entries stored with them earlier stay updatable.
// federates_with naming the server's own trust domain is refused too.
func (a *Service) checkSupported(federatesWith []string, downstream bool) error {
	for _, td := range federatesWith {
		if td == a.cfg.TrustDomain.Name() || td == a.cfg.TrustDomain.IDString() {
			return errkind.New(errkind.InvalidArgument, "federates_with %s: is this server's own trust domain; name federated trust domains only", td)
		}
	}
	if downstream {
		return errkind.New(errkind.InvalidArgument, "downstream: downstream entries (nested CAs) are not supported yet; remove the field")
	}
	return nil
}

func (a *Service) CreateEntries(ctx context.Context, req *adminv1.CreateEntriesRequest) (*adminv1.CreateEntriesResponse, error) {
	in := req.GetEntries()
	if len(in) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "entries: at least one entry is required")
	}
	// Most of the call's garbage is already made (the request) or to come
	// (the writes): paced from the start.
	paced := bulkGC.call()
	defer paced.end()
	paced.wrote(len(in))
	// Convert and check everything first; items that fail here are
	// reported without reaching the store.
	resp := &adminv1.CreateEntriesResponse{Results: make([]*adminv1.EntryResult, len(in))}
	valid := make([]model.Entry, 0, len(in))
	pos := make([]int, 0, len(in))
	failed := 0
	for i, pe := range in {
		e, err := a.checkProtoEntry(pe)
		if err != nil {
			failed++
			resp.Results[i] = &adminv1.EntryResult{Entry: pe, Status: apiconv.StatusToProto(err)}
			continue
		}
		valid = append(valid, e)
		pos = append(pos, i)
	}
	if req.GetAtomic() && failed > 0 {
		for _, i := range pos {
			resp.Results[i] = &adminv1.EntryResult{Entry: in[i], Status: apiconv.StatusToProto(
				errBatchRejected)}
		}
		return resp, nil
	}
	var created []model.Entry
	if len(valid) > 0 {
		results, err := a.cfg.Store.CreateEntriesAt(ctx, valid, pos, req.GetAtomic())
		rejected := req.GetAtomic() && errkind.Is(err, errkind.FailedPrecondition)
		if err != nil && !rejected {
			return nil, err
		}
		created = make([]model.Entry, 0, len(results))
		for j, r := range results {
			i := pos[j]
			if r.Err == nil && rejected {
				r.Err = errBatchRejected
			}
			if r.Err != nil {
				resp.Results[i] = &adminv1.EntryResult{Entry: in[i], Status: apiconv.StatusToProto(r.Err)}
				continue
			}
			created = append(created, r.Entry)
			resp.Results[i] = &adminv1.EntryResult{Entry: apiconv.EntryToProto(r.Entry), Status: apiconv.StatusToProto(nil)}
		}
	}
	if a.cfg.Created != nil && len(created) > 0 {
		a.cfg.Created(ctx, created)
	} else {
		a.cfg.Changed(ctx)
	}
	return resp, nil
}

func (a *Service) GetEntry(ctx context.Context, req *adminv1.GetEntryRequest) (*commonv1.Entry, error) {
	if req.GetId() == "" {
		return nil, errkind.New(errkind.InvalidArgument, "id is required")
	}
	if err := model.ValidateEntryID("id", req.GetId()); err != nil {
		return nil, err
	}
	e, err := a.cfg.Store.GetEntry(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return apiconv.EntryToProto(e), nil
}

// pageLimit is the number of items a list call returns for the page_size
// it was given: defaultPageSize for 0, at most maxPageSize.
func pageLimit(size int32) (int, error) {
	switch {
	case size < 0:
		return 0, errkind.New(errkind.InvalidArgument, "page_size %d is negative: give 1 to %d, or 0 for the default %d", size, maxPageSize, defaultPageSize)
	case size == 0:
		return defaultPageSize, nil
	}
	return min(int(size), maxPageSize), nil
}

func (a *Service) ListEntries(ctx context.Context, req *adminv1.ListEntriesRequest) (*adminv1.ListEntriesResponse, error) {
	f := store.EntryFilter{After: req.GetPageToken(), Limit: int(req.GetPageSize())}
	if f.After != "" {
		if err := model.ValidateEntryID("page_token", f.After); err != nil { // page tokens are entry ids
			return nil, err
		}
	}
	if f.Limit <= 0 {
		f.Limit = defaultPageSize
	}
	if f.Limit > maxPageSize {
		f.Limit = maxPageSize
	}
	var err error
	if req.GetParentId() != "" {
		if f.ParentID, err = apiconv.ParseID("parent_id", req.GetParentId()); err != nil {
			return nil, err
		}
	}
	if req.GetSpiffeId() != "" {
		if f.SPIFFEID, err = apiconv.ParseID("spiffe_id", req.GetSpiffeId()); err != nil {
			return nil, err
		}
	}
	if f.Selectors, err = apiconv.SelectorsFromProto(req.GetSelectors()); err != nil {
		return nil, err
	}
	if v := req.GetFederatesWith(); v != "" {
		if f.FederatesWith, err = spiffeid.TrustDomainFromString(v); err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "federates_with %q: %v (want a trust domain, such as partner.org)", logsafe.Truncate(v), err)
		}
	}
	entries, err := a.cfg.Store.ListEntries(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListEntriesResponse{Entries: make([]*commonv1.Entry, len(entries))}
	for i, e := range entries {
		resp.Entries[i] = apiconv.EntryToProto(e)
	}
	if len(entries) == f.Limit {
		resp.NextPageToken = entries[len(entries)-1].ID
	}
	return resp, nil
}

// entryMaskFields are the entry fields UpdateEntry may replace.
var entryMaskFields = []string{"spiffe_id", "parent_id", "selectors", "x509_ttl_seconds", "jwt_ttl_seconds",
	"dns_names", "admin", "downstream", "federates_with", "expires_at", "hint", "labels"}

func (a *Service) UpdateEntry(ctx context.Context, req *adminv1.UpdateEntryRequest) (*commonv1.Entry, error) {
	pe := req.GetEntry()
	if pe.GetId() == "" {
		return nil, errkind.New(errkind.InvalidArgument, "entry.id is required")
	}
	if err := model.ValidateEntryID("entry.id", pe.GetId()); err != nil {
		return nil, err
	}
	cur, err := a.cfg.Store.GetEntry(ctx, pe.GetId())
	if err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask()
	if len(mask) == 0 {
		mask = entryMaskFields
	}
	// Start from the current entry on the wire, overlay the masked fields,
	// then convert once so validation sees the merged result.
	merged := apiconv.EntryToProto(cur)
	for _, f := range mask {
		switch f {
		case "spiffe_id":
			merged.SpiffeId = pe.GetSpiffeId()
		case "parent_id":
			merged.ParentId = pe.GetParentId()
		case "selectors":
			merged.Selectors = pe.GetSelectors()
		case "x509_ttl_seconds":
			merged.X509TtlSeconds = pe.GetX509TtlSeconds()
		case "jwt_ttl_seconds":
			merged.JwtTtlSeconds = pe.GetJwtTtlSeconds()
		case "dns_names":
			merged.DnsNames = pe.GetDnsNames()
		case "admin":
			merged.Admin = pe.GetAdmin()
		case "downstream":
			if err := a.checkSupported(nil, pe.GetDownstream()); err != nil {
				return nil, err
			}
			merged.Downstream = pe.GetDownstream()
		case "federates_with":
			if err := a.checkSupported(pe.GetFederatesWith(), false); err != nil {
				return nil, err
			}
			merged.FederatesWith = pe.GetFederatesWith()
		case "expires_at":
			merged.ExpiresAt = pe.GetExpiresAt()
		case "hint":
			merged.Hint = pe.GetHint()
		case "labels":
			merged.Labels = pe.GetLabels()
		default:
			return nil, errkind.New(errkind.InvalidArgument,
				"update_mask: unknown field %q; updatable fields are %s", f, strings.Join(entryMaskFields, ", "))
		}
	}
	e, err := apiconv.EntryFromProto(merged)
	if err == nil {
		err = a.checkEntry(e)
	}
	if err != nil {
		return nil, err
	}
	updated, err := a.cfg.Store.UpdateEntry(ctx, e)
	if err != nil {
		return nil, err
	}
	a.cfg.Changed(ctx)
	return apiconv.EntryToProto(updated), nil
}

func (a *Service) DeleteEntries(ctx context.Context, req *adminv1.DeleteEntriesRequest) (*adminv1.DeleteEntriesResponse, error) {
	if len(req.GetIds()) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "ids: at least one entry id is required")
	}
	if n := len(req.GetIds()); n > maxPageSize {
		return nil, errkind.New(errkind.InvalidArgument, "ids: %d ids, at most %d per call", n, maxPageSize)
	}
	for i, id := range req.GetIds() {
		if err := model.ValidateEntryID(fmt.Sprintf("ids[%d]", i), id); err != nil {
			return nil, err
		}
	}
	errs, err := a.cfg.Store.DeleteEntries(ctx, req.GetIds())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.DeleteEntriesResponse{Results: make([]*adminv1.DeleteResult, len(req.GetIds()))}
	for i, id := range req.GetIds() {
		resp.Results[i] = &adminv1.DeleteResult{Id: id, Status: apiconv.StatusToProto(errs[i])}
	}
	a.cfg.Changed(ctx)
	return resp, nil
}

func nodeToProto(n model.Node) *adminv1.Node {
	return &adminv1.Node{
		SpiffeId:        n.SPIFFEID.String(),
		AttestationType: n.AttestationType,
		Selectors:       apiconv.SelectorsToProto(n.Selectors),
		SerialNumber:    n.SerialNumber,
		CertNotAfter:    apiconv.UnixOrZero(n.CertNotAfter),
		Banned:          n.Banned,
		Labels:          n.Labels,
		CreatedAt:       apiconv.UnixOrZero(n.CreatedAt),
		LastSeenAt:      apiconv.UnixOrZero(n.LastSeenAt),
	}
}

func (a *Service) ListNodes(ctx context.Context, req *adminv1.ListNodesRequest) (*adminv1.ListNodesResponse, error) {
	var f store.NodeFilter
	switch req.GetFilter() {
	case "":
	case "banned", "active":
		banned := req.GetFilter() == "banned"
		f.Banned = &banned
	default:
		return nil, errkind.New(errkind.InvalidArgument, "filter %q is not supported: use banned, active or leave it empty", req.GetFilter())
	}
	var err error
	if f.Limit, err = pageLimit(req.GetPageSize()); err != nil {
		return nil, err
	}
	if tok := req.GetPageToken(); tok != "" { // page tokens are node SPIFFE IDs
		after, err := apiconv.ParseID("page_token", tok)
		if err != nil {
			return nil, err
		}
		f.After = after.String()
	}
	nodes, err := a.cfg.Store.ListNodes(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListNodesResponse{Nodes: make([]*adminv1.Node, len(nodes))}
	for i, n := range nodes {
		resp.Nodes[i] = nodeToProto(n)
	}
	if len(nodes) == f.Limit {
		resp.NextPageToken = nodes[len(nodes)-1].SPIFFEID.String()
	}
	return resp, nil
}

func (a *Service) node(ctx context.Context, id string) (model.Node, error) {
	nid, err := apiconv.ParseID("spiffe_id", id)
	if err != nil {
		return model.Node{}, err
	}
	return a.cfg.Store.GetNode(ctx, nid)
}

func (a *Service) GetNode(ctx context.Context, req *adminv1.GetNodeRequest) (*adminv1.Node, error) {
	n, err := a.node(ctx, req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	return nodeToProto(n), nil
}

func (a *Service) EvictNode(ctx context.Context, req *adminv1.NodeRequest) (*adminv1.EvictNodeResponse, error) {
	n, err := a.node(ctx, req.GetSpiffeId())
	if err == nil {
		err = a.cfg.Store.DeleteNode(ctx, n.SPIFFEID)
	}
	if err != nil {
		return nil, err
	}
	a.cfg.Log.Info("node evicted", "agent_id", n.SPIFFEID.String())
	a.cfg.Changed(ctx) // pushed to the node's agent at once
	return &adminv1.EvictNodeResponse{}, nil
}

func (a *Service) setBanned(ctx context.Context, id string, banned bool) (*adminv1.Node, error) {
	nid, err := apiconv.ParseID("spiffe_id", id)
	if err != nil {
		return nil, err
	}
	n, err := a.cfg.Store.SetNodeBanned(ctx, nid, banned)
	if err != nil {
		return nil, err
	}
	a.cfg.Changed(ctx) // pushed to the node's agent at once
	a.cfg.Log.Info("node ban changed", "agent_id", n.SPIFFEID.String(), "banned", banned)
	return nodeToProto(n), nil
}

func (a *Service) BanNode(ctx context.Context, req *adminv1.NodeRequest) (*adminv1.Node, error) {
	return a.setBanned(ctx, req.GetSpiffeId(), true)
}

func (a *Service) UnbanNode(ctx context.Context, req *adminv1.NodeRequest) (*adminv1.Node, error) {
	return a.setBanned(ctx, req.GetSpiffeId(), false)
}

func (a *Service) CreateJoinToken(ctx context.Context, req *adminv1.CreateJoinTokenRequest) (*adminv1.CreateJoinTokenResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	switch {
	case req.GetTtlSeconds() < 0:
		return nil, errkind.New(errkind.InvalidArgument, "ttl_seconds %d is negative: use 0 for the default (%s) or a positive number", req.GetTtlSeconds(), a.cfg.JoinTokenTTL)
	case ttl == 0:
		ttl = a.cfg.JoinTokenTTL
	case ttl > 30*24*time.Hour:
		return nil, errkind.New(errkind.InvalidArgument, "ttl_seconds: a join token may live at most 30 days")
	}
	var agentID spiffeid.ID
	if req.GetSpiffeId() != "" {
		id, err := apiconv.ParseID("spiffe_id", req.GetSpiffeId())
		if err != nil {
			return nil, err
		}
		if err := a.checkID("spiffe_id", id); err != nil {
			return nil, err
		}
		// The server's ID and derived join-token IDs live under /signet/.
		if isReserved(id) {
			return nil, errReserved("spiffe_id", id)
		}
		agentID = id
	}
	token, err := jointoken.Generate()
	if err != nil {
		return nil, fmt.Errorf("generate join token: %w", err)
	}
	hash := jointoken.Hash(token)
	now := a.cfg.Now()
	if err := a.cfg.Store.CreateJoinToken(ctx, model.JoinToken{Hash: hash, SPIFFEID: agentID, ExpiresAt: now.Add(ttl), CreatedAt: now}); err != nil {
		return nil, err
	}
	if agentID.IsZero() {
		if agentID, err = jointoken.AgentID(a.cfg.TrustDomain, hash); err != nil {
			return nil, err
		}
	}
	return &adminv1.CreateJoinTokenResponse{Token: token, SpiffeId: agentID.String(), ExpiresAt: now.Add(ttl).Unix()}, nil
}

func (a *Service) GetBundle(ctx context.Context, _ *adminv1.GetBundleRequest) (*commonv1.Bundle, error) {
	b, err := apiconv.BundleToProto(a.cfg.Bundle())
	if err != nil {
		return nil, err
	}
	return b, nil
}

func authorityToProto(au model.Authority) *adminv1.Authority {
	return &adminv1.Authority{
		Id: au.ID, Kind: string(au.Kind), State: string(au.State), ServerId: au.ServerID,
		NotBefore: apiconv.UnixOrZero(au.NotBefore), NotAfter: apiconv.UnixOrZero(au.NotAfter),
	}
}

func (a *Service) ListAuthorities(ctx context.Context, req *adminv1.ListAuthoritiesRequest) (*adminv1.ListAuthoritiesResponse, error) {
	limit, err := pageLimit(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := parseAuthorityCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	auths, err := a.cfg.Store.ListAuthoritiesPage(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListAuthoritiesResponse{}
	for _, au := range auths {
		resp.Authorities = append(resp.Authorities, authorityToProto(au))
	}
	if len(auths) == limit {
		last := auths[len(auths)-1]
		resp.NextPageToken = fmt.Sprintf("%s.%d.%s", last.Kind, last.NotBefore.UnixNano(), last.ID)
	}
	return resp, nil
}

// parseAuthorityCursor reads an authority page token: the last
// authority's kind, its not_before in unix nanoseconds and its ID, joined
// by dots.
func parseAuthorityCursor(tok string) (store.AuthorityCursor, error) {
	if tok == "" {
		return store.AuthorityCursor{}, nil
	}
	kind, rest, ok1 := strings.Cut(tok, ".")
	ns, id, ok2 := strings.Cut(rest, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if _, kerr := parseAuthorityKind(kind); !ok1 || !ok2 || err != nil || kerr != nil || id == "" {
		return store.AuthorityCursor{}, errkind.New(errkind.InvalidArgument,
			"page_token %q is not an authority page token: pass next_page_token of the previous page", tok)
	}
	return store.AuthorityCursor{Kind: model.AuthorityKind(kind), NotBefore: time.Unix(0, n), ID: id}, nil
}

func parseAuthorityKind(s string) (model.AuthorityKind, error) {
	switch k := model.AuthorityKind(s); k {
	case model.AuthorityX509, model.AuthorityJWT:
		return k, nil
	}
	return "", errkind.New(errkind.InvalidArgument, "kind %q is not an authority kind: use x509 or jwt", s)
}

// authorityOp runs one manual CA transition and republishes the bundle.
func (a *Service) authorityOp(ctx context.Context, req *adminv1.AuthorityRequest, needID bool,
	op func(context.Context, model.AuthorityKind, string) (model.Authority, error)) (*adminv1.Authority, error) {
	kind, err := parseAuthorityKind(req.GetKind())
	if err != nil {
		return nil, err
	}
	if needID && req.GetId() == "" {
		return nil, errkind.New(errkind.InvalidArgument, "id is required: see `signet authority list`")
	}
	au, err := op(ctx, kind, req.GetId())
	if err != nil {
		return nil, err
	}
	if err := a.cfg.RefreshBundle(ctx); err != nil {
		a.cfg.Log.Warn("refresh trust bundle", "error", err)
	}
	return authorityToProto(au), nil
}

func (a *Service) PrepareAuthority(ctx context.Context, req *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
	return a.authorityOp(ctx, req, false, func(ctx context.Context, k model.AuthorityKind, _ string) (model.Authority, error) {
		return a.cfg.CA.Prepare(ctx, k)
	})
}

func (a *Service) ActivateAuthority(ctx context.Context, req *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
	return a.authorityOp(ctx, req, false, func(ctx context.Context, k model.AuthorityKind, _ string) (model.Authority, error) {
		return a.cfg.CA.Activate(ctx, k)
	})
}

func (a *Service) TaintAuthority(ctx context.Context, req *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
	return a.authorityOp(ctx, req, true, a.transitionAuthority(a.cfg.CA.Taint))
}

func (a *Service) RevokeAuthority(ctx context.Context, req *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
	return a.authorityOp(ctx, req, true, a.transitionAuthority(a.cfg.CA.Revoke))
}

// transitionAuthority adapts a CA transition by id to return the
// authority's new state.
func (a *Service) transitionAuthority(op func(context.Context, model.AuthorityKind, string) error) func(context.Context, model.AuthorityKind, string) (model.Authority, error) {
	return func(ctx context.Context, kind model.AuthorityKind, id string) (model.Authority, error) {
		if err := op(ctx, kind, id); err != nil {
			return model.Authority{}, err
		}
		auths, err := a.cfg.Store.ListAuthorities(ctx)
		if err != nil {
			return model.Authority{}, err
		}
		for _, au := range auths {
			if au.Kind == kind && au.ID == id {
				return au, nil
			}
		}
		// Revoking may delete the authority outright.
		return model.Authority{ID: id, Kind: kind, State: model.StateRevoked}, nil
	}
}
