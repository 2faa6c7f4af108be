package console

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Store is the part of the store the console reads. *store.Store
// implements it; the console never writes.
type Store interface {
	inventory.PageSource
	NodeTotals(ctx context.Context) (total, banned int64, err error)
	ListAuthorities(ctx context.Context) ([]model.Authority, error)
	ListCoverageReports(ctx context.Context, dimension string, limit int) ([]model.CoverageReport, error)
	ListAudit(ctx context.Context, f store.AuditFilter) ([]model.AuditRecord, error)
	VerifyAudit(ctx context.Context) (store.AuditReport, error)
}

var _ Store = (*store.Store)(nil)

// Page sizes: the default and the largest a caller may ask for.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
	// maxLeaseRows bounds the leases page (newest states first).
	maxLeaseRows = 500
	// trendReports is how many saved coverage reports the chart shows.
	trendReports = 30
)

// Overview is the overview page: the trust domain, its authorities and the
// replicas that hold them, and counts.
type Overview struct {
	TrustDomain  string      `json:"trust_domain"`
	Authorities  []Authority `json:"authorities"`
	Replicas     []Replica   `json:"replicas"`
	Agents       int         `json:"agents"`
	BannedAgents int         `json:"banned_agents"`
	OpenFindings int         `json:"open_findings"`
	Now          time.Time   `json:"now"`
}

// Authority is one X.509 or JWT authority as the console shows it: no key
// material, only its identity, state and lifetime.
type Authority struct {
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Replica   string    `json:"replica"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	ExpiresIn string    `json:"expires_in"`
	Upstream  bool      `json:"upstream"`
}

// Replica is a server instance that owns authorities (each replica signs
// with its own CA keys).
type Replica struct {
	ID          string `json:"id"`
	Authorities int    `json:"authorities"`
	Active      int    `json:"active"`
}

// Agent is one attested node.
type Agent struct {
	SPIFFEID   string    `json:"spiffe_id"`
	Method     string    `json:"attestation_method"`
	Selectors  []string  `json:"selectors"`
	Banned     bool      `json:"banned"`
	LastSeenAt time.Time `json:"last_seen_at"`
	LastSeen   string    `json:"last_seen"`
	SVIDExpiry time.Time `json:"svid_expires_at"`
	ExpiresIn  string    `json:"svid_expires_in"`
}

// Agents is the agents page: one page of the attested nodes, ordered by
// SPIFFE ID, and the cursor of the next ("" on the last page).
type Agents struct {
	Total  int     `json:"total"`
	After  string  `json:"after,omitempty"`
	Agents []Agent `json:"agents"`
	Next   string  `json:"next_after,omitempty"`
}

// EntryQuery is the entries page's search: any of SPIFFE ID, parent ID and
// selectors (all must match), a cursor and a page size.
type EntryQuery struct {
	SPIFFEID  string `json:"spiffe_id,omitempty"`
	ParentID  string `json:"parent_id,omitempty"`
	Selectors string `json:"selector,omitempty"` // "type:value", several separated by spaces
	After     string `json:"after,omitempty"`
	Limit     int    `json:"limit"`
}

// Entry is one registration entry.
type Entry struct {
	ID        string    `json:"id"`
	SPIFFEID  string    `json:"spiffe_id"`
	ParentID  string    `json:"parent_id"`
	Selectors []string  `json:"selectors"`
	X509TTL   string    `json:"x509_svid_ttl"`
	Admin     bool      `json:"admin"`
	DNSNames  []string  `json:"dns_names,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Entries is the entries page: one page of the search and the cursor of
// the next one ("" on the last page).
type Entries struct {
	Query   EntryQuery `json:"query"`
	Entries []Entry    `json:"entries"`
	Next    string     `json:"next_after,omitempty"`
}

// InventoryItem is one non-human identity of the inventory.
type InventoryItem struct {
	ID          string   `json:"id"`
	Kind        string   `json:"kind"`
	Name        string   `json:"name"`
	Environment string   `json:"environment"`
	Owner       string   `json:"owner"`
	Flags       []string `json:"flags"`
}

// TrendPoint is one saved coverage report's total.
type TrendPoint struct {
	At             time.Time `json:"created_at"`
	CoveredPercent *float64  `json:"covered_percent"`
	Workloads      int64     `json:"workloads"`
	StaticOpen     int64     `json:"static_open"`
}

// Inventory is the inventory and coverage page: one kind's items (paged for
// workloads), the latest saved coverage report and its trend.
type Inventory struct {
	Kind      string                    `json:"kind"`
	Items     []InventoryItem           `json:"items"`
	Next      string                    `json:"next_after,omitempty"`
	Dimension string                    `json:"coverage_dimension"`
	Coverage  *inventory.Coverage       `json:"coverage,omitempty"` // latest saved report
	Groups    []inventory.CoverageGroup `json:"-"`
	Trend     []TrendPoint              `json:"trend"` // oldest first
	Chart     *Chart                    `json:"-"`
}

// Finding is one static credential found by `signet scan`: what the
// scanner prints, never the secret.
type Finding struct {
	Fingerprint string    `json:"fingerprint"`
	RuleID      string    `json:"rule_id"`
	Kind        string    `json:"kind"`
	Severity    string    `json:"severity"`
	Description string    `json:"description"`
	Preview     string    `json:"preview"`
	Status      string    `json:"status"`
	Locations   []string  `json:"locations"`
	FirstSeenAt time.Time `json:"first_seen_at"`
	LastSeenAt  time.Time `json:"last_seen_at"`
}

// Findings is the findings page: one page, ordered by fingerprint, and
// the cursor of the next ("" on the last page).
type Findings struct {
	All      bool      `json:"all"`
	Total    int       `json:"total"`
	After    string    `json:"after,omitempty"`
	Findings []Finding `json:"findings"`
	Next     string    `json:"next_after,omitempty"`
}

// Lease is one brokered credential's lease: who holds what until when.
// Revocation data, context and the credential itself are never shown.
type Lease struct {
	ID         string    `json:"id"`
	Credential string    `json:"credential"`
	Provider   string    `json:"provider"`
	Subject    string    `json:"subject"`
	Node       string    `json:"node,omitempty"`
	State      string    `json:"state"`
	IssuedAt   time.Time `json:"issued_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Reason     string    `json:"reason,omitempty"`
}

// Leases is the leases page.
type Leases struct {
	Leases    []Lease `json:"leases"`
	Truncated bool    `json:"truncated"`
}

// AuditRecord is one record of the audit log.
type AuditRecord struct {
	Seq    int64             `json:"seq"`
	Time   time.Time         `json:"time"`
	Actor  string            `json:"actor"`
	Action string            `json:"action"`
	Object string            `json:"object"`
	Detail map[string]string `json:"detail,omitempty"`
}

// AuditVerification is the result of walking the whole hash chain.
type AuditVerification struct {
	OK       bool   `json:"ok"`
	Records  int64  `json:"records"`
	FirstBad int64  `json:"first_bad,omitempty"`
	Problem  string `json:"problem,omitempty"`
	Head     string `json:"head,omitempty"` // hex
	// VerifiedAt is when the walk ran (results are reused for 30 s).
	VerifiedAt time.Time `json:"verified_at"`
}

// Audit is the audit page: the chain's verification and one page of records.
type Audit struct {
	// Verification is the chain's; the HTML page loads it separately
	// (/audit/verification) so that the records show at once.
	Verification *AuditVerification `json:"verification,omitempty"`
	Records      []AuditRecord      `json:"records"`
	After        int64              `json:"after_seq"`
	Next         int64              `json:"next_after_seq,omitempty"`
}

// data computes the pages from the store.
type data struct {
	st       Store
	td       spiffeid.TrustDomain
	serverID spiffeid.ID
	now      func() time.Time
	x509TTL  time.Duration
	jwtTTL   time.Duration

	verifyMu   sync.Mutex // one audit chain walk at a time
	verified   AuditVerification
	verifiedAt time.Time
}

func (d *data) overview(ctx context.Context) (Overview, error) {
	now := d.now()
	auths, err := d.st.ListAuthorities(ctx)
	if err != nil {
		return Overview{}, fmt.Errorf("list authorities: %w", err)
	}
	o := Overview{TrustDomain: d.td.Name(), Now: now, Authorities: []Authority{}, Replicas: []Replica{}}
	replicas := map[string]*Replica{}
	for _, a := range auths {
		o.Authorities = append(o.Authorities, Authority{
			Kind: string(a.Kind), ID: a.ID, State: string(a.State), Replica: a.ServerID,
			NotBefore: a.NotBefore, NotAfter: a.NotAfter, ExpiresIn: until(now, a.NotAfter),
			Upstream: len(a.UpstreamRoots) > 0,
		})
		r := replicas[a.ServerID]
		if r == nil {
			r = &Replica{ID: a.ServerID}
			replicas[a.ServerID] = r
		}
		r.Authorities++
		if a.State == model.StateActive {
			r.Active++
		}
	}
	for _, r := range replicas {
		o.Replicas = append(o.Replicas, *r)
	}
	slices.SortFunc(o.Replicas, func(a, b Replica) int { return strings.Compare(a.ID, b.ID) })
	slices.SortStableFunc(o.Authorities, func(a, b Authority) int {
		return strings.Compare(a.Kind, b.Kind)*2 + a.NotAfter.Compare(b.NotAfter)
	})
	total, banned, err := d.st.NodeTotals(ctx)
	if err != nil {
		return Overview{}, fmt.Errorf("count agents: %w", err)
	}
	o.Agents, o.BannedAgents = int(total), int(banned)
	if o.OpenFindings, err = d.countFindings(ctx, false); err != nil {
		return Overview{}, err
	}
	return o, nil
}

// countFindings counts the open findings (all: every finding) in SQL.
func (d *data) countFindings(ctx context.Context, all bool) (int, error) {
	counts, err := d.st.CountFindings(ctx, "environment")
	if err != nil {
		return 0, fmt.Errorf("count findings: %w", err)
	}
	n := 0
	for _, c := range counts {
		if all || c.Status == store.FindingOpen {
			n += int(c.Count)
		}
	}
	return n, nil
}

func (d *data) agents(ctx context.Context, after string, limit int) (Agents, error) {
	now := d.now()
	total, _, err := d.st.NodeTotals(ctx)
	if err != nil {
		return Agents{}, fmt.Errorf("count agents: %w", err)
	}
	// One page from the store, by SPIFFE ID.
	nodes, err := d.st.ListNodes(ctx, store.NodeFilter{After: after, Limit: limit + 1})
	if err != nil {
		return Agents{}, fmt.Errorf("list agents: %w", err)
	}
	out := Agents{Total: int(total), After: after}
	if len(nodes) > limit {
		nodes = nodes[:limit]
		out.Next = nodes[limit-1].SPIFFEID.String()
	}
	out.Agents = make([]Agent, 0, len(nodes))
	for _, n := range nodes {
		a := Agent{
			SPIFFEID: n.SPIFFEID.String(), Method: n.AttestationType, Selectors: selectorStrings(n.Selectors),
			Banned: n.Banned, LastSeenAt: n.LastSeenAt, SVIDExpiry: n.CertNotAfter, ExpiresIn: until(now, n.CertNotAfter),
			LastSeen: "never",
		}
		if !n.LastSeenAt.IsZero() {
			a.LastSeen = inventory.FormatAge(now.Sub(n.LastSeenAt).Truncate(time.Second)) + " ago"
		}
		out.Agents = append(out.Agents, a)
	}
	return out, nil
}

// entryFilter checks q and makes it a store filter, naming the field in
// errors.
func (q EntryQuery) entryFilter() (store.EntryFilter, error) {
	var f store.EntryFilter
	var err error
	if q.SPIFFEID != "" {
		if f.SPIFFEID, err = spiffeid.FromString(q.SPIFFEID); err != nil {
			return f, fmt.Errorf("spiffe_id: %v (want spiffe://trust-domain/path)", err)
		}
	}
	if q.ParentID != "" {
		if f.ParentID, err = spiffeid.FromString(q.ParentID); err != nil {
			return f, fmt.Errorf("parent_id: %v (want spiffe://trust-domain/path)", err)
		}
	}
	for _, s := range strings.Fields(q.Selectors) {
		sel, err := model.ParseSelector(s)
		if err != nil {
			return f, fmt.Errorf("selector: %v (want type:value, several separated by spaces)", err)
		}
		f.Selectors = append(f.Selectors, sel)
	}
	if len(f.Selectors) > model.MaxSelectors {
		return f, fmt.Errorf("selector: %d selectors, at most %d", len(f.Selectors), model.MaxSelectors)
	}
	if len(q.After) > model.MaxEntryIDLen {
		return f, fmt.Errorf("after: longer than %d bytes", model.MaxEntryIDLen)
	}
	f.After = q.After
	f.Limit = q.Limit + 1 // one more tells whether a next page exists
	return f, nil
}

func (d *data) entries(ctx context.Context, q EntryQuery) (Entries, error) {
	f, err := q.entryFilter()
	if err != nil {
		return Entries{}, badRequest{err}
	}
	list, err := d.st.ListEntries(ctx, f)
	if err != nil {
		return Entries{}, fmt.Errorf("list entries: %w", err)
	}
	out := Entries{Query: q, Entries: make([]Entry, 0, min(len(list), q.Limit))}
	if len(list) > q.Limit {
		list = list[:q.Limit]
		out.Next = list[len(list)-1].ID
	}
	for _, e := range list {
		ttl := "default"
		if e.X509TTL > 0 {
			ttl = inventory.FormatAge(e.X509TTL)
		}
		out.Entries = append(out.Entries, Entry{
			ID: e.ID, SPIFFEID: e.SPIFFEID.String(), ParentID: e.ParentID.String(), Selectors: selectorStrings(e.Selectors),
			X509TTL: ttl, Admin: e.Admin, DNSNames: e.DNSNames, ExpiresAt: e.ExpiresAt,
		})
	}
	return out, nil
}

func (d *data) inventory(ctx context.Context, kind inventory.Kind, by inventory.Dimension, after string, limit int) (Inventory, error) {
	opts, err := inventory.CoverageOptions{By: by}.WithDefaults()
	if err != nil {
		return Inventory{}, badRequest{fmt.Errorf("by: %v", err)}
	}
	c := &inventory.Classifier{Now: d.now(), DefaultX509TTL: d.x509TTL, DefaultJWTTTL: d.jwtTTL}
	out := Inventory{Kind: string(kind), Dimension: opts.Key(), Items: []InventoryItem{}, Trend: []TrendPoint{}}
	// One page of the kind from the store; after is the page token.
	items, next, err := c.Page(ctx, d.st, d.serverID, inventory.PageRequest{Kind: kind, Limit: limit, Token: after})
	if err != nil {
		if errkind.Is(err, errkind.InvalidArgument) {
			return Inventory{}, badRequest{fmt.Errorf("after: %v", err)}
		}
		return Inventory{}, err
	}
	out.Next = next
	for _, it := range items {
		item := InventoryItem{ID: it.ID, Kind: string(it.Kind), Name: it.Name, Environment: it.Environment, Owner: it.Owner, Flags: []string{}}
		if it.Finding != nil {
			// A finding's name may carry its preview: show only what scan prints.
			item.Name = inventory.PrimaryPath(it.Finding)
		}
		for _, fl := range it.Flags {
			item.Flags = append(item.Flags, string(fl.Code))
		}
		out.Items = append(out.Items, item)
	}
	reports, err := d.st.ListCoverageReports(ctx, opts.Key(), trendReports)
	if err != nil {
		return Inventory{}, fmt.Errorf("list coverage reports: %w", err)
	}
	for i := len(reports) - 1; i >= 0; i-- { // newest first from the store
		var cov inventory.Coverage
		if err := json.Unmarshal(reports[i].Report, &cov); err != nil {
			return Inventory{}, fmt.Errorf("decode coverage report %d: %w", reports[i].ID, err)
		}
		out.Trend = append(out.Trend, TrendPoint{At: reports[i].CreatedAt, CoveredPercent: cov.Total.CoveredPercent,
			Workloads: cov.Total.Workloads, StaticOpen: cov.Total.StaticOpen})
		if i == 0 {
			out.Coverage = &cov
			out.Groups = cov.Groups
		}
	}
	out.Chart = trendChart(out.Trend)
	return out, nil
}

// previewShape is what scan prints of a secret: at most four characters,
// an ellipsis and the length ("ghp_…(40)"), or "(whole file)".
var previewShape = regexp.MustCompile(`^[^\x00-\x1f\x7f]{0,4}…\([0-9]{1,9}\)$`)

// safePreview returns p when it has the shape scan prints, else a fixed
// placeholder: a reporter (any admin with the inventory API) could store
// more of a secret than scan would ever show, and the console never
// renders it.
func safePreview(p string) string {
	if p == "(whole file)" || previewShape.MatchString(p) {
		return p
	}
	return "(hidden)"
}

func (d *data) findings(ctx context.Context, all bool, after string, limit int) (Findings, error) {
	total, err := d.countFindings(ctx, all)
	if err != nil {
		return Findings{}, err
	}
	// One page from the store, by fingerprint.
	p := store.FindingPage{After: after, Limit: limit}
	if !all {
		p.Status = []store.FindingStatus{store.FindingOpen}
	}
	list, next, err := d.st.ListFindingsPage(ctx, p)
	if err != nil {
		if errkind.Is(err, errkind.InvalidArgument) {
			return Findings{}, badRequest{err}
		}
		return Findings{}, fmt.Errorf("list findings: %w", err)
	}
	out := Findings{All: all, Total: total, After: after}
	if next != "" && len(list) > 0 {
		out.Next = list[len(list)-1].Fingerprint
	}
	out.Findings = make([]Finding, 0, len(list))
	for _, f := range list {
		fd := Finding{
			Fingerprint: f.Fingerprint, RuleID: f.RuleID, Kind: f.Kind, Severity: f.Severity, Description: f.Description,
			Preview: safePreview(f.Preview), Status: string(f.Status), FirstSeenAt: f.FirstSeenAt, LastSeenAt: f.LastSeenAt,
			Locations: []string{},
		}
		for _, l := range f.Locations {
			loc := l.Path
			if l.Line > 0 {
				loc = fmt.Sprintf("%s:%d", loc, l.Line)
			}
			if l.Host != "" {
				loc = l.Host + ":" + loc
			}
			if l.Commit != "" {
				loc += "@" + l.Commit[:min(len(l.Commit), 12)]
			}
			fd.Locations = append(fd.Locations, loc)
		}
		out.Findings = append(out.Findings, fd)
	}
	return out, nil
}

func (d *data) leases(ctx context.Context) (Leases, error) {
	list, err := d.st.ListLeases(ctx, store.LeaseFilter{Limit: maxLeaseRows + 1})
	if err != nil {
		return Leases{}, fmt.Errorf("list leases: %w", err)
	}
	out := Leases{Leases: make([]Lease, 0, min(len(list), maxLeaseRows))}
	if len(list) > maxLeaseRows {
		list, out.Truncated = list[:maxLeaseRows], true
	}
	for _, l := range list {
		le := Lease{ID: l.ID, Credential: l.Credential, Provider: l.Provider, Subject: l.Subject.String(),
			State: string(l.State), IssuedAt: l.IssuedAt, ExpiresAt: l.ExpiresAt, Reason: l.Reason}
		if !l.Node.IsZero() {
			le.Node = l.Node.String()
		}
		out.Leases = append(out.Leases, le)
	}
	return out, nil
}

func (d *data) audit(ctx context.Context, after int64, limit int, verify bool) (Audit, error) {
	if after < 0 {
		return Audit{}, badRequest{fmt.Errorf("after: %d is negative", after)}
	}
	out := Audit{After: after, Records: []AuditRecord{}}
	if verify {
		v, err := d.verification(ctx)
		if err != nil {
			return Audit{}, err
		}
		out.Verification = &v
	}
	recs, err := d.st.ListAudit(ctx, store.AuditFilter{AfterSeq: after, Limit: limit + 1})
	if err != nil {
		return Audit{}, fmt.Errorf("list audit log: %w", err)
	}
	if len(recs) > limit {
		recs = recs[:limit]
		out.Next = recs[len(recs)-1].Seq
	}
	for _, r := range recs {
		out.Records = append(out.Records, AuditRecord{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action,
			Object: r.Object, Detail: r.Detail})
	}
	return out, nil
}

// verifyTTL is how long a verification of the audit chain is reused:
// walking the whole chain costs seconds on a large log, so a page reload
// does not redo it.
const verifyTTL = 30 * time.Second

// verification walks the whole audit chain, or returns the walk of the
// last verifyTTL; one walk at a time.
func (d *data) verification(ctx context.Context) (AuditVerification, error) {
	d.verifyMu.Lock()
	defer d.verifyMu.Unlock()
	now := d.now()
	if !d.verifiedAt.IsZero() && now.Sub(d.verifiedAt) < verifyTTL && now.Sub(d.verifiedAt) >= 0 {
		return d.verified, nil
	}
	rep, err := d.st.VerifyAudit(ctx)
	if err != nil {
		return AuditVerification{}, fmt.Errorf("verify audit log: %w", err)
	}
	d.verified = AuditVerification{OK: rep.OK, Records: rep.Records, FirstBad: rep.FirstBad, Problem: rep.Problem,
		Head: fmt.Sprintf("%x", rep.Head), VerifiedAt: now}
	d.verifiedAt = now
	return d.verified, nil
}

// badRequest marks an error in the caller's query (400), not the server.
type badRequest struct{ err error }

func (e badRequest) Error() string { return e.err.Error() }

func selectorStrings(sels []model.Selector) []string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.String()
	}
	return out
}

// until says how long until t from now, or how long ago it passed.
func until(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := t.Sub(now).Truncate(time.Second)
	if d < 0 {
		return "expired " + inventory.FormatAge(-d) + " ago"
	}
	return "in " + inventory.FormatAge(d)
}
