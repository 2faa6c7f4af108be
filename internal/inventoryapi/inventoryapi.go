// Package inventoryapi implements the Inventory and Audit services: every
// node, workload and static credential Signet knows with its flags,
// coverage reports with their trend, and the hash-chained audit log. Both
// are admin-only, on the admin socket and (for admin SVIDs) the agent
// listener.
package inventoryapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/apiconv"
	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/errkind"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Paging limits of ListAudit.
const (
	defaultAuditPage = 1000
	maxAuditPage     = 10000
)

// Config holds the services' dependencies. Every field is required.
type Config struct {
	Store *store.Store
	// ServerID is the server's own SPIFFE ID, the parent of node aliases.
	ServerID spiffeid.ID
	// DefaultX509TTL and DefaultJWTTTL are the lifetimes of entries that
	// set none, for the over-long TTL flag.
	DefaultX509TTL time.Duration
	DefaultJWTTTL  time.Duration
	Now            func() time.Time
	Log            *slog.Logger
	// Credentials returns the broker's configured credentials, name →
	// provider, for suggestions and links; nil (the field, or what it
	// returns) when the server has no broker.
	Credentials func() map[string]string
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// Register registers the Inventory and Audit services on g. Both rely on
// g's interceptor chain for admin authorization.
func Register(g *grpc.Server, cfg Config) {
	inventoryv1.RegisterInventoryServer(g, &inventoryAPI{cfg: cfg})
	inventoryv1.RegisterAuditServer(g, &auditAPI{cfg: cfg})
}

// Methods returns the method table of both services: every method needs an
// administrator.
func Methods() edge.Table {
	return edge.Table{}.Service(inventoryv1.Inventory_ServiceDesc, edge.Admin).Service(inventoryv1.Audit_ServiceDesc, edge.Admin)
}

// inventoryAPI implements the Inventory service.
type inventoryAPI struct {
	inventoryv1.UnimplementedInventoryServer
	cfg Config
}

// auditAPI implements the Audit service.
type auditAPI struct {
	inventoryv1.UnimplementedAuditServer
	cfg Config
}

var (
	_ inventoryv1.InventoryServer = (*inventoryAPI)(nil)
	_ inventoryv1.AuditServer     = (*auditAPI)(nil)
)

// seconds converts a non-negative seconds field, naming it in errors.
func secondsField(field string, v int64) (time.Duration, error) {
	if v < 0 || v > int64(100*365*24*time.Hour/time.Second) {
		return 0, errkind.New(errkind.InvalidArgument, "%s %d: use a positive number of seconds (0: the default)", field, v)
	}
	return time.Duration(v) * time.Second, nil
}

func thresholdsFromProto(p *inventoryv1.Thresholds) (inventory.Thresholds, error) {
	var t inventory.Thresholds
	var err error
	for _, f := range []struct {
		name string
		v    int64
		dst  *time.Duration
	}{
		{"thresholds.stale_seconds", p.GetStaleSeconds(), &t.Stale},
		{"thresholds.max_x509_ttl_seconds", p.GetMaxX509TtlSeconds(), &t.MaxX509TTL},
		{"thresholds.max_jwt_ttl_seconds", p.GetMaxJwtTtlSeconds(), &t.MaxJWTTTL},
		{"thresholds.max_credential_age_seconds", p.GetMaxCredentialAgeSeconds(), &t.MaxCredentialAge},
	} {
		if *f.dst, err = secondsField(f.name, f.v); err != nil {
			return t, err
		}
	}
	return t, nil
}

// classifier returns a classifier as of now with the server's default TTLs.
func (c Config) classifier(t inventory.Thresholds) *inventory.Classifier {
	return &inventory.Classifier{Now: c.Now(), Thresholds: t, DefaultX509TTL: c.DefaultX509TTL, DefaultJWTTTL: c.DefaultJWTTTL}
}

func (a *inventoryAPI) ListInventory(ctx context.Context, req *inventoryv1.ListInventoryRequest) (*inventoryv1.ListInventoryResponse, error) {
	kind, err := inventory.ParseKind(req.GetKind())
	if err != nil {
		return nil, err
	}
	th, err := thresholdsFromProto(req.GetThresholds())
	if err != nil {
		return nil, err
	}
	switch req.GetSort() {
	case "", "risk":
	default:
		return nil, errkind.New(errkind.InvalidArgument, "sort %q is not supported: use risk (findings) or leave it empty", req.GetSort())
	}
	if err := a.settle(ctx); err != nil {
		return nil, err
	}
	c := a.cfg.classifier(th)
	// Every kind pages in the store, by key: nothing is read beyond the
	// page and the nodes and entries its items take their labels from.
	items, next, err := c.Page(ctx, a.cfg.Store, a.cfg.ServerID, inventory.PageRequest{
		Kind: kind, IncludeClosed: req.GetIncludeClosed(), ByRisk: req.GetSort() == "risk",
		Limit: int(req.GetPageSize()), Token: req.GetPageToken(),
		Keep: func(it *inventory.Item) bool {
			switch {
			case req.GetStaleOnly() && !it.Flagged(inventory.FlagStale):
			case req.GetFlaggedOnly() && len(it.Flags) == 0:
			default:
				return true
			}
			return false
		},
	})
	if err != nil {
		return nil, err
	}
	resp := &inventoryv1.ListInventoryResponse{NextPageToken: next}
	for _, it := range items {
		pi, err := a.toProto(ctx, it)
		if err != nil {
			return nil, err
		}
		resp.Items = append(resp.Items, pi)
	}
	return resp, nil
}

func (a *inventoryAPI) GetInventoryItem(ctx context.Context, req *inventoryv1.GetInventoryItemRequest) (*inventoryv1.InventoryItem, error) {
	th, err := thresholdsFromProto(req.GetThresholds())
	if err != nil {
		return nil, err
	}
	if err := a.settle(ctx); err != nil {
		return nil, err
	}
	it, err := a.lookup(ctx, req.GetId(), a.cfg.classifier(th))
	if err != nil {
		return nil, err
	}
	return a.toProto(ctx, it)
}

// lookup finds the item an inventory ID names. A bare ID is tried as a
// node's SPIFFE ID (then as a workload's), an entry ID and a fingerprint.
func (a *inventoryAPI) lookup(ctx context.Context, id string, c *inventory.Classifier) (inventory.Item, error) {
	kind, key, err := inventory.ParseItemID(id)
	if err != nil {
		return inventory.Item{}, err
	}
	switch kind {
	case inventory.KindNode:
		nid, err := apiconv.ParseID("id", key)
		if err != nil {
			return inventory.Item{}, err
		}
		n, err := a.cfg.Store.GetNode(ctx, nid)
		if err != nil {
			return inventory.Item{}, err
		}
		return c.Node(n), nil
	case inventory.KindWorkload:
		e, err := a.cfg.Store.GetEntry(ctx, key)
		if err != nil {
			return inventory.Item{}, err
		}
		return a.workload(ctx, c, e)
	case inventory.KindFinding:
		f, err := a.cfg.Store.GetFinding(ctx, key)
		if err != nil {
			return inventory.Item{}, err
		}
		return c.Finding(f), nil
	case inventory.KindCredential:
		l, err := a.cfg.Store.GetLease(ctx, key)
		if err != nil {
			return inventory.Item{}, err
		}
		return c.Credential(l), nil
	}
	// A bare ID.
	if strings.HasPrefix(key, "spiffe://") {
		sid, err := apiconv.ParseID("id", key)
		if err != nil {
			return inventory.Item{}, err
		}
		n, err := a.cfg.Store.GetNode(ctx, sid)
		if err == nil {
			return c.Node(n), nil
		}
		if !errkind.Is(err, errkind.NotFound) {
			return inventory.Item{}, err
		}
		es, err := a.cfg.Store.ListEntries(ctx, store.EntryFilter{SPIFFEID: sid, Limit: 2})
		switch {
		case err != nil:
			return inventory.Item{}, err
		case len(es) == 1:
			return a.workload(ctx, c, es[0])
		case len(es) > 1:
			return inventory.Item{}, errkind.New(errkind.InvalidArgument,
				"id %s names several workloads: use workload:ENTRY_ID (see `signet inventory list --kind workload`)", key)
		}
		return inventory.Item{}, errkind.New(errkind.NotFound, "no node or workload has SPIFFE ID %s", key)
	}
	e, err := a.cfg.Store.GetEntry(ctx, key)
	if err == nil {
		return a.workload(ctx, c, e)
	}
	if !errkind.Is(err, errkind.NotFound) {
		return inventory.Item{}, err
	}
	if fp, ferr := store.NormalizeFingerprint("id", key); ferr == nil {
		f, err := a.cfg.Store.GetFinding(ctx, fp)
		if err == nil {
			return c.Finding(f), nil
		}
		if !errkind.Is(err, errkind.NotFound) {
			return inventory.Item{}, err
		}
	}
	return inventory.Item{}, errkind.New(errkind.NotFound, "no inventory item %q: use node:SPIFFE_ID, workload:ENTRY_ID or finding:FINGERPRINT", key)
}

// workload classifies e together with its node, when its parent is one.
func (a *inventoryAPI) workload(ctx context.Context, c *inventory.Classifier, e model.Entry) (inventory.Item, error) {
	n, err := a.cfg.Store.GetNode(ctx, e.ParentID)
	switch {
	case err == nil:
		return c.Workload(e, &n), nil
	case errkind.Is(err, errkind.NotFound):
		return c.Workload(e, nil), nil
	}
	return inventory.Item{}, err
}

func (a *inventoryAPI) ReportFindings(ctx context.Context, req *inventoryv1.ReportFindingsRequest) (*inventoryv1.ReportFindingsResponse, error) {
	r := store.FindingReport{Host: req.GetHost(), Labels: req.GetLabels(), Scope: req.GetScope()}
	for i, pf := range req.GetFindings() {
		f, err := findingFromProto(i, pf)
		if err != nil {
			return nil, err
		}
		r.Findings = append(r.Findings, f)
	}
	res, err := a.cfg.Store.ReportFindings(ctx, r)
	if err != nil {
		return nil, err
	}
	a.cfg.Log.InfoContext(ctx, "findings reported", "host", r.Host, "findings", len(r.Findings),
		"new", res.New, "reopened", res.Reopened, "gone", res.Gone)
	return &inventoryv1.ReportFindingsResponse{
		New: int32(res.New), Seen: int32(res.Seen), Reopened: int32(res.Reopened), Gone: int32(res.Gone),
	}, nil
}

func (a *inventoryAPI) ResolveFinding(ctx context.Context, req *inventoryv1.ResolveFindingRequest) (*inventoryv1.InventoryItem, error) {
	kind, key, err := inventory.ParseItemID(req.GetId())
	if err == nil && kind != "" && kind != inventory.KindFinding {
		err = errkind.New(errkind.InvalidArgument, "id %q is not a finding: use finding:FINGERPRINT", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	f, err := a.cfg.Store.ResolveFinding(ctx, key, req.GetReason())
	if err != nil {
		return nil, err
	}
	return a.toProto(ctx, a.cfg.classifier(inventory.Thresholds{}).Finding(f))
}

func (a *inventoryAPI) SetNodeLabels(ctx context.Context, req *inventoryv1.SetNodeLabelsRequest) (*inventoryv1.InventoryItem, error) {
	id, err := apiconv.ParseID("spiffe_id", req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	if len(req.GetSet()) == 0 && len(req.GetRemove()) == 0 {
		return nil, errkind.New(errkind.InvalidArgument, "set or remove: give at least one label")
	}
	n, err := a.cfg.Store.SetNodeLabels(ctx, id, req.GetSet(), req.GetRemove())
	if err != nil {
		return nil, err
	}
	return itemToProto(a.cfg.classifier(inventory.Thresholds{}).Node(n)), nil
}

// coverageOptions converts and checks the view of a coverage request.
func coverageOptions(by string, activeWithin int64, depth int32) (inventory.CoverageOptions, error) {
	dim, err := inventory.ParseDimension(by)
	if err != nil {
		return inventory.CoverageOptions{}, err
	}
	window, err := secondsField("active_within_seconds", activeWithin)
	if err != nil {
		return inventory.CoverageOptions{}, err
	}
	if depth != 0 && dim != inventory.ByPath {
		return inventory.CoverageOptions{}, errkind.New(errkind.InvalidArgument, "path_depth applies only with by path")
	}
	return inventory.CoverageOptions{By: dim, ActiveWithin: window, PathDepth: int(depth)}.WithDefaults()
}

func (a *inventoryAPI) CreateCoverageReport(ctx context.Context, req *inventoryv1.CreateCoverageReportRequest) (*inventoryv1.CoverageReport, error) {
	opts, err := coverageOptions(req.GetBy(), req.GetActiveWithinSeconds(), req.GetPathDepth())
	if err != nil {
		return nil, err
	}
	cov, err := a.computeCoverage(ctx, opts)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(cov)
	if err != nil {
		return nil, fmt.Errorf("encode coverage report: %w", err)
	}
	saved, prev, err := a.cfg.Store.SaveCoverageReport(ctx, store.CoverageReport{CreatedAt: a.cfg.Now(), Dimension: opts.Key(), Report: data})
	if err != nil {
		return nil, err
	}
	var prevCov *inventory.Coverage
	if prev.ID != 0 {
		if prevCov, err = decodeCoverage(prev); err != nil {
			// A report the server cannot read back only costs the delta.
			a.cfg.Log.WarnContext(ctx, "previous coverage report unreadable", "id", prev.ID, "error", err)
			prev = store.CoverageReport{}
		}
	}
	return coverageToProto(saved, cov, prev, prevCov), nil
}

// computeCoverage computes coverage now: by environment and owner from the
// store's SQL aggregations, by path page by page (see
// inventory.Classifier.Coverage). The migration plan is the top open
// findings by risk, read as one page.
func (a *inventoryAPI) computeCoverage(ctx context.Context, opts inventory.CoverageOptions) (inventory.Coverage, error) {
	if err := a.settle(ctx); err != nil {
		return inventory.Coverage{}, err
	}
	cov, err := a.cfg.classifier(inventory.Thresholds{}).Coverage(ctx, a.cfg.Store, a.cfg.ServerID, opts)
	if err != nil {
		return inventory.Coverage{}, err
	}
	top, _, err := a.cfg.Store.ListFindingsPage(ctx, store.FindingPage{Status: []store.FindingStatus{store.FindingOpen}, ByRisk: true, Limit: inventory.PlanSize})
	if err != nil {
		return inventory.Coverage{}, err
	}
	conf := a.cfg.configured()
	for i := range top {
		cov.Plan = append(cov.Plan, inventory.NewPlanItem(&top[i], conf))
	}
	return cov, nil
}

func decodeCoverage(r store.CoverageReport) (*inventory.Coverage, error) {
	var c inventory.Coverage
	if err := json.Unmarshal(r.Report, &c); err != nil {
		return nil, fmt.Errorf("decode coverage report %d: %w", r.ID, err)
	}
	return &c, nil
}

func (a *inventoryAPI) ListCoverageReports(ctx context.Context, req *inventoryv1.ListCoverageReportsRequest) (*inventoryv1.ListCoverageReportsResponse, error) {
	opts, err := coverageOptions(req.GetBy(), req.GetActiveWithinSeconds(), req.GetPathDepth())
	if err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 {
		return nil, errkind.New(errkind.InvalidArgument, "limit %d is negative", req.GetLimit())
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 20
	}
	var before int64
	if tok := req.GetPageToken(); tok != "" {
		n, err := parseOffsetToken(tok)
		if err != nil || n == 0 {
			return nil, errkind.New(errkind.InvalidArgument, "page_token %q: not a token of this listing (use the next_page_token the previous page returned)", tok)
		}
		before = int64(n)
	}
	// One more than the page: the oldest report's delta, and whether there
	// is a next page.
	reports, err := a.cfg.Store.ListCoverageReportsBefore(ctx, opts.Key(), before, limit+1)
	if err != nil {
		return nil, err
	}
	decoded := make([]*inventory.Coverage, len(reports))
	for i, r := range reports {
		if decoded[i], err = decodeCoverage(r); err != nil {
			return nil, err
		}
	}
	resp := &inventoryv1.ListCoverageReportsResponse{}
	for i := 0; i < len(reports) && i < limit; i++ {
		var prev store.CoverageReport
		var prevCov *inventory.Coverage
		if i+1 < len(reports) {
			prev, prevCov = reports[i+1], decoded[i+1]
		}
		resp.Reports = append(resp.Reports, coverageToProto(reports[i], *decoded[i], prev, prevCov))
	}
	if len(reports) > limit {
		resp.NextPageToken = offsetToken(int(reports[limit-1].ID))
	}
	return resp, nil
}

func (a *auditAPI) ListAudit(ctx context.Context, req *inventoryv1.ListAuditRequest) (*inventoryv1.ListAuditResponse, error) {
	switch {
	case req.GetSinceUnixNano() < 0:
		return nil, errkind.New(errkind.InvalidArgument, "since_unix_nano %d is negative", req.GetSinceUnixNano())
	case req.GetAfterSeq() < 0:
		return nil, errkind.New(errkind.InvalidArgument, "after_seq %d is negative", req.GetAfterSeq())
	case req.GetPageSize() < 0:
		return nil, errkind.New(errkind.InvalidArgument, "page_size %d is negative", req.GetPageSize())
	}
	f := store.AuditFilter{Actor: req.GetActor(), Action: req.GetAction(), AfterSeq: req.GetAfterSeq(), Limit: int(req.GetPageSize())}
	if req.GetSinceUnixNano() > 0 {
		f.Since = time.Unix(0, req.GetSinceUnixNano())
	}
	if f.Limit == 0 {
		f.Limit = defaultAuditPage
	}
	f.Limit = min(f.Limit, maxAuditPage)
	recs, err := a.cfg.Store.ListAudit(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &inventoryv1.ListAuditResponse{Records: make([]*inventoryv1.AuditRecord, len(recs))}
	for i, r := range recs {
		resp.Records[i] = auditRecordToProto(r)
	}
	if len(recs) == f.Limit {
		resp.NextAfterSeq = recs[len(recs)-1].Seq
	}
	return resp, nil
}

// auditRecordToProto converts an audit record for the wire.
func auditRecordToProto(r model.AuditRecord) *inventoryv1.AuditRecord {
	return &inventoryv1.AuditRecord{
		Seq: r.Seq, TimeUnixNano: r.Time.UnixNano(), Actor: r.Actor, Action: r.Action, Object: r.Object,
		Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

func (a *auditAPI) VerifyAudit(ctx context.Context, req *inventoryv1.VerifyAuditRequest) (*inventoryv1.VerifyAuditResponse, error) {
	expectSeq, expectHash := req.GetExpectSeq(), req.GetExpectHash()
	if expectSeq < 0 || (expectSeq > 0) != (len(expectHash) > 0) || len(expectHash) > 0 && len(expectHash) != 32 {
		return nil, errkind.New(errkind.InvalidArgument,
			"expect_seq and expect_hash go together: a sequence number and a 32-byte SHA-256 hash, as an earlier verify printed")
	}
	rep, err := a.cfg.Store.VerifyAudit(ctx)
	if err != nil {
		return nil, err
	}
	resp := &inventoryv1.VerifyAuditResponse{
		Ok: rep.OK, Records: rep.Records, FirstBad: rep.FirstBad, Problem: rep.Problem, HeadHash: rep.Head,
	}
	if rep.OK {
		resp.HeadSeq = rep.Records // an intact chain numbers its records 1…n
	} else if rep.FirstBad > 1 {
		resp.HeadSeq = rep.FirstBad - 1
	}
	if rep.OK && expectSeq > 0 {
		recs, err := a.cfg.Store.ListAudit(ctx, store.AuditFilter{AfterSeq: expectSeq - 1, Limit: 1})
		if err != nil {
			return nil, err
		}
		switch {
		case len(recs) == 0 || recs[0].Seq != expectSeq:
			resp.Ok, resp.FirstBad = false, expectSeq
			resp.Problem = fmt.Sprintf("record %d, an earlier head, is missing: the log was truncated", expectSeq)
		case !slices.Equal(recs[0].Hash, expectHash):
			resp.Ok, resp.FirstBad = false, expectSeq
			resp.Problem = fmt.Sprintf("record %d differs from the earlier head: the log was rewritten from there", expectSeq)
		}
	}
	return resp, nil
}

// itemToProto converts an inventory item for the wire.
func itemToProto(it inventory.Item) *inventoryv1.InventoryItem {
	p := &inventoryv1.InventoryItem{
		Id: it.ID, Kind: string(it.Kind), Name: it.Name, Labels: it.Labels, Environment: it.Environment,
		Owner: it.Owner, CreatedAt: apiconv.UnixOrZero(it.CreatedAt), LastSeenAt: apiconv.UnixOrZero(it.LastSeenAt),
	}
	for _, f := range it.Flags {
		p.Flags = append(p.Flags, &inventoryv1.Flag{Code: string(f.Code), Message: f.Message})
	}
	switch {
	case it.Node != nil:
		n := it.Node
		p.Detail = &inventoryv1.InventoryItem_Node{Node: &inventoryv1.NodeDetail{
			SpiffeId: n.SPIFFEID.String(), AttestationType: n.AttestationType, Selectors: selectorStrings(n.Selectors),
			Banned: n.Banned, CertNotAfter: apiconv.UnixOrZero(n.CertNotAfter),
		}}
	case it.Entry != nil:
		e := it.Entry
		p.Detail = &inventoryv1.InventoryItem_Workload{Workload: &inventoryv1.WorkloadDetail{
			EntryId: e.ID, SpiffeId: e.SPIFFEID.String(), ParentId: e.ParentID.String(), Selectors: selectorStrings(e.Selectors),
			X509TtlSeconds: int64(it.X509TTL / time.Second), JwtTtlSeconds: int64(it.JWTTTL / time.Second),
			FirstIssuedAt: apiconv.UnixOrZero(e.FirstIssuedAt), LastIssuedAt: apiconv.UnixOrZero(e.LastIssuedAt),
			FirstServedAt: apiconv.UnixOrZero(e.FirstServedAt), LastServedAt: apiconv.UnixOrZero(e.LastServedAt),
		}}
	case it.Finding != nil:
		p.Detail = &inventoryv1.InventoryItem_Finding{Finding: findingToProto(*it.Finding)}
	}
	return p
}

func selectorStrings(sels []model.Selector) []string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.String()
	}
	return out
}

func findingToProto(f store.Finding) *inventoryv1.Finding {
	p := &inventoryv1.Finding{
		RuleId: f.RuleID, Detector: f.Detector, Kind: f.Kind, Severity: f.Severity, Description: f.Description,
		Preview: f.Preview, Fingerprint: f.Fingerprint, Details: f.Details, FirstSeenAt: apiconv.UnixOrZero(f.FirstSeenAt),
		LastSeenAt: apiconv.UnixOrZero(f.LastSeenAt), Status: string(f.Status), ClosedAt: apiconv.UnixOrZero(f.ClosedAt),
		Resolution: f.Resolution, Risk: int32(f.Risk),
	}
	for _, rf := range f.RiskFactors {
		p.RiskFactors = append(p.RiskFactors, &inventoryv1.RiskFactor{Name: rf.Name, Points: int32(rf.Points), Reason: rf.Reason})
	}
	for _, l := range f.Locations {
		pl := &inventoryv1.FindingLocation{
			Path: l.Path, Line: int32(l.Line), Column: int32(l.Column), EndLine: int32(l.EndLine), Commit: l.Commit,
			Author: l.Author, Email: l.Email, Host: l.Host, FirstSeenAt: apiconv.UnixOrZero(l.FirstSeenAt),
			LastSeenAt: apiconv.UnixOrZero(l.LastSeenAt), GoneAt: apiconv.UnixOrZero(l.GoneAt),
		}
		if !l.CommittedAt.IsZero() {
			pl.Date = l.CommittedAt.UTC().Format(time.RFC3339)
		}
		p.Locations = append(p.Locations, pl)
	}
	return p
}

// findingFromProto converts reported finding i; server-set fields are
// ignored. Errors name the field.
func findingFromProto(i int, p *inventoryv1.Finding) (store.Finding, error) {
	f := store.Finding{
		Fingerprint: p.GetFingerprint(), RuleID: p.GetRuleId(), Detector: p.GetDetector(), Kind: p.GetKind(),
		Severity: p.GetSeverity(), Description: p.GetDescription(), Preview: p.GetPreview(), Details: p.GetDetails(),
	}
	for j, pl := range p.GetLocations() {
		l := store.FindingLocation{
			Path: pl.GetPath(), Line: int(pl.GetLine()), Column: int(pl.GetColumn()), EndLine: int(pl.GetEndLine()),
			Commit: pl.GetCommit(), Author: pl.GetAuthor(), Email: pl.GetEmail(),
		}
		if d := pl.GetDate(); d != "" {
			t, err := time.Parse(time.RFC3339, d)
			if err != nil {
				return store.Finding{}, errkind.New(errkind.InvalidArgument,
					"findings[%d].locations[%d].date %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", i, j, d)
			}
			l.CommittedAt = t
		}
		f.Locations = append(f.Locations, l)
	}
	return f, nil
}

func groupToProto(g inventory.CoverageGroup) *inventoryv1.CoverageGroup {
	return &inventoryv1.CoverageGroup{
		Key: g.Key, Workloads: g.Workloads, SpiffeActive: g.SPIFFEActive, StaticOpen: g.StaticOpen, Brokered: g.Brokered, Nodes: g.Nodes,
		CoveredPercent: g.CoveredPercent, StaticReplaced: g.StaticReplaced, SpiffePercent: g.SPIFFEPercent, ReplacedPercent: g.ReplacedPercent,
	}
}

func deltaToProto(d inventory.CoverageDelta) *inventoryv1.CoverageDelta {
	return &inventoryv1.CoverageDelta{
		Workloads: d.Workloads, SpiffeActive: d.SPIFFEActive, StaticOpen: d.StaticOpen, Brokered: d.Brokered, CoveredPercent: d.CoveredPercent,
		StaticReplaced: d.StaticReplaced,
	}
}

// coverageToProto converts a stored report and its decoded form, with the
// change since prev when prevCov is set. Groups absent from the previous
// report carry no delta.
func coverageToProto(r store.CoverageReport, cov inventory.Coverage, prev store.CoverageReport, prevCov *inventory.Coverage) *inventoryv1.CoverageReport {
	p := &inventoryv1.CoverageReport{
		Id: r.ID, CreatedAt: apiconv.UnixOrZero(r.CreatedAt), By: string(cov.By), ActiveWithinSeconds: cov.ActiveWithinSeconds,
		PathDepth: int32(cov.PathDepth), Total: groupToProto(cov.Total),
	}
	for _, pi := range cov.Plan {
		p.MigrationPlan = append(p.MigrationPlan, &inventoryv1.PlanItem{
			Id: pi.ID, RuleId: pi.RuleID, Kind: pi.Kind, Preview: pi.Preview, Path: pi.Path, MoreLocations: int32(pi.MoreLocations),
			Environment: pi.Environment, Owner: pi.Owner, Risk: int32(pi.Risk), Suggestion: suggestionToProto(pi.Suggestion),
			LinkedCredential: pi.LinkedCredential,
		})
	}
	if prevCov != nil {
		p.PreviousId, p.PreviousCreatedAt = prev.ID, apiconv.UnixOrZero(prev.CreatedAt)
		p.Total.Delta = deltaToProto(inventory.Delta(prevCov.Total, cov.Total))
	}
	for _, g := range cov.Groups {
		pg := groupToProto(g)
		if prevCov != nil {
			if old, ok := prevCov.Group(g.Key); ok {
				pg.Delta = deltaToProto(inventory.Delta(old, g))
			}
		}
		p.Groups = append(p.Groups, pg)
	}
	// Groups that vanished since the previous report stay visible, at zero,
	// so a shrinking gap is seen shrinking.
	if prevCov != nil {
		for _, old := range prevCov.Groups {
			if _, ok := cov.Group(old.Key); !ok {
				pg := groupToProto(inventory.CoverageGroup{Key: old.Key})
				pg.Delta = deltaToProto(inventory.Delta(old, inventory.CoverageGroup{}))
				p.Groups = append(p.Groups, pg)
			}
		}
		slices.SortStableFunc(p.Groups, func(a, b *inventoryv1.CoverageGroup) int {
			return inventory.CompareGroupKeys(a.GetKey(), b.GetKey())
		})
	}
	return p
}
