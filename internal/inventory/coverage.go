package inventory

import (
	"cmp"
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// Dimension is what a coverage report groups by.
type Dimension string

// Coverage dimensions.
const (
	ByEnvironment Dimension = "environment" // the environment label
	ByOwner       Dimension = "owner"       // the owner label
	// ByPath groups workloads by their SPIFFE ID's leading path segments
	// and findings by the leading directories of their primary path.
	ByPath Dimension = "path"
)

// ParseDimension parses a dimension name; empty means ByEnvironment.
func ParseDimension(s string) (Dimension, error) {
	switch d := Dimension(s); d {
	case "":
		return ByEnvironment, nil
	case ByEnvironment, ByOwner, ByPath:
		return d, nil
	}
	return "", errkind.New(errkind.InvalidArgument, "by %q is not supported: use environment, owner or path", s)
}

// Coverage defaults and limits.
const (
	DefaultActiveWithin = 24 * time.Hour
	DefaultPathDepth    = 1
	MaxPathDepth        = 16
)

// CoverageOptions configure ComputeCoverage.
type CoverageOptions struct {
	By Dimension // default ByEnvironment
	// ActiveWithin: a workload issued an SVID this recently runs on a
	// short-lived SPIFFE identity. Default 24h.
	ActiveWithin time.Duration
	// PathDepth is how many leading path segments form a ByPath group.
	// Default 1.
	PathDepth int
}

// WithDefaults fills zero fields and checks the others, naming the field
// in errors.
func (o CoverageOptions) WithDefaults() (CoverageOptions, error) {
	if o.By == "" {
		o.By = ByEnvironment
	}
	if _, err := ParseDimension(string(o.By)); err != nil {
		return o, err
	}
	if o.ActiveWithin == 0 {
		o.ActiveWithin = DefaultActiveWithin
	}
	if o.ActiveWithin < time.Second || o.ActiveWithin > maxAge {
		return o, errkind.New(errkind.InvalidArgument, "active_within %s: use at least 1s and at most 100 years", o.ActiveWithin)
	}
	if o.PathDepth == 0 {
		o.PathDepth = DefaultPathDepth
	}
	if o.PathDepth < 1 || o.PathDepth > MaxPathDepth {
		return o, errkind.New(errkind.InvalidArgument, "path_depth %d: use 1 to %d", o.PathDepth, MaxPathDepth)
	}
	return o, nil
}

// Key names the view o computes, for comparing a report only with earlier
// ones of the same view: the dimension, plus the window and depth when
// they differ from the defaults ("path depth=2", "owner active=7d"). o must
// have its defaults filled.
func (o CoverageOptions) Key() string {
	key := string(o.By)
	if o.By == ByPath && o.PathDepth != DefaultPathDepth {
		key += fmt.Sprintf(" depth=%d", o.PathDepth)
	}
	if o.ActiveWithin != DefaultActiveWithin {
		key += " active=" + FormatAge(o.ActiveWithin)
	}
	return key
}

// Coverage is a coverage report: per group and in total, how many
// workloads run on short-lived SPIFFE identities and how many static
// credentials remain. Its JSON form is what the store keeps.
type Coverage struct {
	By                  Dimension       `json:"by"`
	ActiveWithinSeconds int64           `json:"active_within_seconds"`
	PathDepth           int             `json:"path_depth,omitempty"`
	Groups              []CoverageGroup `json:"groups"`
	Total               CoverageGroup   `json:"total"`
	// Plan is the migration plan: the top open findings by risk with their
	// suggested replacements.
	Plan []PlanItem `json:"plan,omitempty"`
}

// PlanItem is one step of a migration plan: an open finding and what
// should replace it. It carries only what `signet scan` prints (the
// redacted preview, never the secret).
type PlanItem struct {
	ID               string     `json:"id"`
	RuleID           string     `json:"rule_id"`
	Kind             string     `json:"kind"`
	Preview          string     `json:"preview,omitempty"`
	Path             string     `json:"path"`
	MoreLocations    int        `json:"more_locations,omitempty"`
	Environment      string     `json:"environment"`
	Owner            string     `json:"owner"`
	Risk             int        `json:"risk"`
	Suggestion       Suggestion `json:"suggestion"`
	LinkedCredential string     `json:"linked_credential,omitempty"`
}

// PlanSize is how many findings a migration plan lists.
const PlanSize = 10

// NewPlanItem describes an open finding as a migration step.
func NewPlanItem(f *store.Finding, configured map[string]string) PlanItem {
	it := PlanItem{
		ID: ItemID(KindFinding, f.Fingerprint), RuleID: f.RuleID, Kind: f.Kind, Preview: f.Preview, Path: PrimaryPath(f),
		MoreLocations: max(0, len(f.Locations)-1), Environment: NormalizeEnvironment(f.Labels[LabelEnvironment]),
		Owner: ownerOf(f.Labels), Risk: f.Risk, Suggestion: Suggest(f, configured),
	}
	if f.Replacement != nil {
		it.LinkedCredential = f.Replacement.Credential
	}
	return it
}

// CoverageGroup is the coverage of one environment, owner or path.
type CoverageGroup struct {
	Key          string `json:"key"`
	Workloads    int64  `json:"workloads"`     // registration entries
	SPIFFEActive int64  `json:"spiffe_active"` // of those, issued an SVID within the window
	StaticOpen   int64  `json:"static_open"`   // open static-credential findings
	// Brokered are the short-lived credentials from the broker in use:
	// distinct (credential, workload) pairs with an open lease, each one in
	// place of a static secret.
	Brokered int64 `json:"brokered"`
	Nodes    int64 `json:"nodes"` // attested nodes (not part of coverage)
	// StaticReplaced are the static-credential findings proven replaced by
	// a brokered credential.
	StaticReplaced int64 `json:"static_replaced"`
	// CoveredPercent is the short-lived share, (SPIFFEActive + Brokered) /
	// (SPIFFEActive + Brokered + StaticOpen), in percent, rounded to 0.1;
	// nil when all are zero.
	CoveredPercent *float64 `json:"covered_percent,omitempty"`
	// SPIFFEPercent is SPIFFEActive / Workloads and ReplacedPercent is
	// StaticReplaced / (StaticOpen + StaticReplaced), in percent, rounded
	// to 0.1; nil when the denominator is zero.
	SPIFFEPercent   *float64 `json:"spiffe_percent,omitempty"`
	ReplacedPercent *float64 `json:"replaced_percent,omitempty"`
}

// pct returns n/d in percent rounded to 0.1, nil when d is zero.
func pct(n, d int64) *float64 {
	if d <= 0 {
		return nil
	}
	p := math.Round(float64(n)*1000/float64(d)) / 10
	return &p
}

func (g *CoverageGroup) finish() {
	short := g.SPIFFEActive + g.Brokered
	g.CoveredPercent = pct(short, short+g.StaticOpen)
	g.SPIFFEPercent = pct(g.SPIFFEActive, g.Workloads)
	g.ReplacedPercent = pct(g.StaticReplaced, g.StaticOpen+g.StaticReplaced)
}

// GroupKey returns the group an item falls in under dimension by (with
// depth for ByPath).
func GroupKey(it *Item, by Dimension, depth int) string {
	switch by {
	case ByOwner:
		return it.Owner
	case ByPath:
		switch {
		case it.Node != nil:
			return idPathPrefix(it.Node.SPIFFEID.Path(), depth)
		case it.Entry != nil:
			return idPathPrefix(it.Entry.SPIFFEID.Path(), depth)
		case it.Finding != nil:
			return filePathPrefix(PrimaryPath(it.Finding), depth)
		case it.Lease != nil:
			return idPathPrefix(it.Lease.Subject.Path(), depth)
		}
		return Unknown
	}
	return it.Environment
}

// idPathPrefix returns the first depth segments of a SPIFFE ID path:
// "/ns/prod/sa/web" at depth 2 is "/ns/prod".
func idPathPrefix(p string, depth int) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		return "/"
	}
	return "/" + strings.Join(segs[:min(depth, len(segs))], "/")
}

// filePathPrefix returns the first depth directories of a file path:
// "/srv/app/conf/x.env" at depth 2 is "/srv/app"; "x.env" is "."; an
// environment variable ("env:NAME") is "env:".
func filePathPrefix(p string, depth int) string {
	if p == "" {
		return Unknown
	}
	if strings.HasPrefix(p, "env:") {
		return "env:"
	}
	dir := path.Dir(p)
	if dir == "." || dir == "/" {
		return dir
	}
	abs := strings.HasPrefix(dir, "/")
	segs := strings.Split(strings.Trim(dir, "/"), "/")
	key := strings.Join(segs[:min(depth, len(segs))], "/")
	if abs {
		key = "/" + key
	}
	return key
}

// ComputeCoverage computes coverage over items as of now. Every workload
// counts once, as active when its last SVID was served within the window;
// every open finding counts once as open and every replaced one as
// replaced, in the group of its labels (or, by path, of its primary path);
// every (credential, workload) pair with a pending or active lease counts
// once as brokered, in the group of the workload of its newest lease (by
// path, of its SPIFFE ID); closed findings, ended leases and node aliases
// do not count. Groups are ordered by key, with Unknown last. The store's
// aggregations (Classifier.Coverage) count the same way.
func ComputeCoverage(items []Item, now time.Time, opts CoverageOptions) (Coverage, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return Coverage{}, err
	}
	acc := newCoverageAcc(opts)
	var leases []*Item
	for i := range items {
		if items[i].Kind == KindCredential && items[i].Lease != nil {
			leases = append(leases, &items[i])
			continue
		}
		acc.addItem(&items[i], now)
	}
	// A (credential, workload) pair counts under its newest lease, as the
	// store's aggregation counts it.
	slices.SortStableFunc(leases, func(a, b *Item) int {
		return cmp.Or(b.Lease.IssuedAt.Compare(a.Lease.IssuedAt), strings.Compare(a.Lease.ID, b.Lease.ID))
	})
	for _, it := range leases {
		acc.addItem(it, now)
	}
	return acc.result(), nil
}

// coverageAcc accumulates a coverage report group by group.
type coverageAcc struct {
	opts   CoverageOptions
	groups map[string]*CoverageGroup
	total  CoverageGroup
	// brokered holds the (credential, subject) pairs counted, so that each
	// counts once.
	brokered map[[2]string]bool
}

func newCoverageAcc(opts CoverageOptions) *coverageAcc {
	return &coverageAcc{opts: opts, groups: map[string]*CoverageGroup{}, total: CoverageGroup{Key: "total"}, brokered: map[[2]string]bool{}}
}

// add adds counts to the group key and to the total.
func (a *coverageAcc) add(key string, add CoverageGroup) {
	g := a.groups[key]
	if g == nil {
		g = &CoverageGroup{Key: key}
		a.groups[key] = g
	}
	for _, t := range []*CoverageGroup{g, &a.total} {
		t.Nodes += add.Nodes
		t.Workloads += add.Workloads
		t.SPIFFEActive += add.SPIFFEActive
		t.StaticOpen += add.StaticOpen
		t.StaticReplaced += add.StaticReplaced
		t.Brokered += add.Brokered
	}
}

// addItem counts one item as ComputeCoverage describes.
func (a *coverageAcc) addItem(it *Item, now time.Time) {
	var add CoverageGroup
	switch it.Kind {
	case KindNode:
		add.Nodes = 1
	case KindWorkload:
		add.Workloads = 1
		if last := it.Entry.LastServedAt; !last.IsZero() && !last.Before(now.Add(-a.opts.ActiveWithin)) {
			add.SPIFFEActive = 1
		}
	case KindFinding:
		switch it.Finding.Status {
		case store.FindingOpen:
			add.StaticOpen = 1
		case store.FindingReplaced:
			add.StaticReplaced = 1
		default:
			return
		}
	case KindCredential:
		l := it.Lease
		if l == nil || (l.State != store.LeasePending && l.State != store.LeaseActive) || !l.ExpiresAt.After(now) {
			return
		}
		p := [2]string{l.Credential, l.Subject.String()}
		if a.brokered[p] {
			return
		}
		a.brokered[p] = true
		add.Brokered = 1
	default:
		return
	}
	a.add(GroupKey(it, a.opts.By, a.opts.PathDepth), add)
}

// result is the report: groups ordered by key, with Unknown last, and
// their percentages.
func (a *coverageAcc) result() Coverage {
	rep := Coverage{By: a.opts.By, ActiveWithinSeconds: int64(a.opts.ActiveWithin / time.Second), Total: a.total}
	if a.opts.By == ByPath {
		rep.PathDepth = a.opts.PathDepth
	}
	rep.Groups = make([]CoverageGroup, 0, len(a.groups))
	for _, g := range a.groups {
		g.finish()
		rep.Groups = append(rep.Groups, *g)
	}
	slices.SortFunc(rep.Groups, func(a, b CoverageGroup) int { return CompareGroupKeys(a.Key, b.Key) })
	rep.Total.finish()
	return rep
}

// CoverageDelta is the change of a group since an earlier report.
type CoverageDelta struct {
	Workloads      int64
	SPIFFEActive   int64
	StaticOpen     int64
	StaticReplaced int64
	Brokered       int64
	// CoveredPercent is in percentage points; nil when either report has no
	// percentage for the group.
	CoveredPercent *float64
}

// Delta returns the change from prev to cur, in percentage points rounded
// to 0.1.
func Delta(prev, cur CoverageGroup) CoverageDelta {
	d := CoverageDelta{
		Workloads: cur.Workloads - prev.Workloads, SPIFFEActive: cur.SPIFFEActive - prev.SPIFFEActive,
		StaticOpen: cur.StaticOpen - prev.StaticOpen, Brokered: cur.Brokered - prev.Brokered,
		StaticReplaced: cur.StaticReplaced - prev.StaticReplaced,
	}
	if cur.CoveredPercent != nil && prev.CoveredPercent != nil {
		p := math.Round((*cur.CoveredPercent-*prev.CoveredPercent)*10) / 10
		d.CoveredPercent = &p
	}
	return d
}

// Group returns the group with the given key, and whether there is one.
func (c *Coverage) Group(key string) (CoverageGroup, bool) {
	for _, g := range c.Groups {
		if g.Key == key {
			return g, true
		}
	}
	return CoverageGroup{}, false
}

// CompareGroupKeys orders group keys: by byte order, with Unknown last.
func CompareGroupKeys(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == Unknown:
		return 1
	case b == Unknown:
		return -1
	}
	return strings.Compare(a, b)
}
