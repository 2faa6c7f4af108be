package inventory

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// PageSource is what paged listings and coverage read: the store's keyset
// pages of each kind, batched look-ups of the nodes and entries that give
// workloads and leases their environment and owner, and its aggregations.
type PageSource interface {
	ListNodes(ctx context.Context, f store.NodeFilter) ([]model.Node, error)
	ListEntries(ctx context.Context, f store.EntryFilter) ([]model.Entry, error)
	ListLeases(ctx context.Context, f store.LeaseFilter) ([]store.Lease, error)
	ListFindingsPage(ctx context.Context, p store.FindingPage) ([]store.Finding, string, error)
	NodesByID(ctx context.Context, ids []spiffeid.ID) (map[spiffeid.ID]model.Node, error)
	EntriesBySPIFFEID(ctx context.Context, ids []spiffeid.ID) ([]model.Entry, error)
	CountNodes(ctx context.Context) ([]store.NodeCount, error)
	CountWorkloads(ctx context.Context, f store.CoverageCountFilter) ([]store.WorkloadCount, error)
	CountBrokered(ctx context.Context, f store.CoverageCountFilter) ([]store.BrokeredCount, error)
	CountFindings(ctx context.Context, by string) ([]store.FindingCount, error)
	FindingPaths(ctx context.Context, statuses []store.FindingStatus, fn func(status store.FindingStatus, path string) error) error
}

// Page sizes of inventory listings.
const (
	DefaultPage = 100
	MaxPage     = store.MaxFindingPage
	// maxPageReads bounds the store reads behind one page when Keep
	// rejects most items: the page then ends early, with a token.
	maxPageReads = 16
	maxTokenLen  = 2048
)

// PageRequest selects one page of an inventory listing.
type PageRequest struct {
	Kind Kind // "" lists every kind, in the order of Kinds
	// IncludeClosed lists closed findings and ended leases too.
	IncludeClosed bool
	// ByRisk orders findings by risk, highest first (Kind must be
	// KindFinding); otherwise they are in fingerprint order.
	ByRisk bool
	// FindingStatus lists findings of these statuses (empty: open ones,
	// or all with IncludeClosed).
	FindingStatus []store.FindingStatus
	Limit         int    // 1 to MaxPage; 0: DefaultPage
	Token         string // the NextToken of the previous page; "": the first page
	// Keep filters items after classification (nil: all). A page may
	// hold fewer than Limit items, even none, and still have a next token.
	Keep func(*Item) bool
}

// pageToken is a position in a listing: the kind being listed and the
// store's keyset cursor within it.
type pageToken struct {
	Kind  Kind   `json:"k"`
	After string `json:"a,omitempty"` // node SPIFFE ID, entry ID, lease ID or the store's finding token
	At    int64  `json:"t,omitempty"` // a lease's issue time (Unix ns)
}

func (t pageToken) encode() string {
	b, _ := json.Marshal(t) // cannot fail: strings and an integer
	return base64.RawURLEncoding.EncodeToString(b)
}

func badToken(tok string) error {
	return errkind.New(errkind.InvalidArgument, "page_token %q: not a token of this listing (use the next_page_token the previous page returned)", truncate(tok))
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// parsePageToken reads a token of a listing of kind ("" for all kinds).
func parsePageToken(tok string, kind Kind) (pageToken, error) {
	if len(tok) > maxTokenLen {
		return pageToken{}, badToken(tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return pageToken{}, badToken(tok)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var t pageToken
	if err := dec.Decode(&t); err != nil || dec.More() || !slices.Contains(Kinds, t.Kind) || (kind != "" && t.Kind != kind) || t.At < 0 {
		return pageToken{}, badToken(tok)
	}
	if t.Kind != KindCredential && t.At != 0 {
		return pageToken{}, badToken(tok)
	}
	return t, nil
}

// Page returns one page of the inventory in the store's order (nodes by
// SPIFFE ID, workloads by entry ID, leases newest first, findings by
// fingerprint or risk) and the token of the next page ("" at the end).
// Nothing is read beyond the page and the nodes and entries its items
// inherit labels from.
func (c *Classifier) Page(ctx context.Context, src PageSource, serverID spiffeid.ID, req PageRequest) ([]Item, string, error) {
	if req.Kind != "" && !slices.Contains(Kinds, req.Kind) {
		return nil, "", errkind.New(errkind.InvalidArgument, "kind %q is not supported: use node, workload, credential or finding", req.Kind)
	}
	if req.ByRisk && req.Kind != KindFinding {
		return nil, "", errkind.New(errkind.InvalidArgument, "sort risk applies to findings only: add kind finding")
	}
	switch {
	case req.Limit < 0 || req.Limit > MaxPage:
		return nil, "", errkind.New(errkind.InvalidArgument, "page_size %d: use 1 to %d (0: the default)", req.Limit, MaxPage)
	case req.Limit == 0:
		req.Limit = DefaultPage
	}
	pos := pageToken{Kind: req.Kind}
	if pos.Kind == "" {
		pos.Kind = Kinds[0]
	}
	if req.Token != "" {
		var err error
		if pos, err = parsePageToken(req.Token, req.Kind); err != nil {
			return nil, "", err
		}
	}
	keep := req.Keep
	if keep == nil {
		keep = func(*Item) bool { return true }
	}
	var out []Item
	for reads := 0; reads < maxPageReads && len(out) < req.Limit; reads++ {
		want := req.Limit - len(out)
		items, next, more, err := c.read(ctx, src, serverID, req, pos, want)
		if err != nil {
			return nil, "", err
		}
		for i := range items {
			if keep(&items[i]) {
				out = append(out, items[i])
			}
		}
		if more {
			pos = next
			continue
		}
		// This kind is done: on to the next one, when listing them all.
		k := slices.Index(Kinds, pos.Kind)
		if req.Kind != "" || k == len(Kinds)-1 {
			return out, "", nil
		}
		pos = pageToken{Kind: Kinds[k+1]}
	}
	return out, pos.encode(), nil
}

// read reads up to want items of pos.Kind after pos; more reports whether
// the kind has items after next.
func (c *Classifier) read(ctx context.Context, src PageSource, serverID spiffeid.ID, req PageRequest, pos pageToken, want int) (items []Item, next pageToken, more bool, err error) {
	next = pageToken{Kind: pos.Kind}
	switch pos.Kind {
	case KindNode:
		ns, err := src.ListNodes(ctx, store.NodeFilter{After: pos.After, Limit: want + 1})
		if err != nil {
			return nil, next, false, fmt.Errorf("list inventory: %w", err)
		}
		if more = len(ns) > want; more {
			ns = ns[:want]
		}
		for _, n := range ns {
			items = append(items, c.Node(n))
		}
		if len(ns) > 0 {
			next.After = ns[len(ns)-1].SPIFFEID.String()
		}
	case KindWorkload:
		es, err := src.ListEntries(ctx, store.EntryFilter{After: pos.After, Limit: want + 1})
		if err != nil {
			return nil, next, false, fmt.Errorf("list inventory: %w", err)
		}
		if more = len(es) > want; more {
			es = es[:want]
		}
		if len(es) > 0 {
			next.After = es[len(es)-1].ID
		}
		es = slices.DeleteFunc(es, func(e model.Entry) bool { return !serverID.IsZero() && e.ParentID == serverID })
		if items, err = c.workloads(ctx, src, es); err != nil {
			return nil, next, false, err
		}
	case KindCredential:
		f := store.LeaseFilter{Limit: want + 1, After: store.LeaseCursor{ID: pos.After, IssuedAt: timeFromToken(pos.At)}}
		if !req.IncludeClosed {
			f.States = []store.LeaseState{store.LeasePending, store.LeaseActive}
		}
		ls, err := src.ListLeases(ctx, f)
		if err != nil {
			return nil, next, false, fmt.Errorf("list inventory: %w", err)
		}
		if more = len(ls) > want; more {
			ls = ls[:want]
		}
		if len(ls) > 0 {
			last := ls[len(ls)-1]
			next.After, next.At = last.ID, last.IssuedAt.UnixNano()
		}
		if items, err = c.credentials(ctx, src, serverID, ls); err != nil {
			return nil, next, false, err
		}
	case KindFinding:
		p := store.FindingPage{ByRisk: req.ByRisk, Limit: want, Token: pos.After}
		switch {
		case len(req.FindingStatus) > 0:
			p.Status = req.FindingStatus
		case !req.IncludeClosed:
			p.Status = []store.FindingStatus{store.FindingOpen}
		}
		fs, tok, err := src.ListFindingsPage(ctx, p)
		if err != nil {
			return nil, next, false, err
		}
		for _, f := range fs {
			items = append(items, c.Finding(f))
		}
		next.After, more = tok, tok != ""
	}
	return items, next, more, nil
}

func timeFromToken(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// workloads classifies entries with the nodes they inherit labels from,
// read in one batch.
func (c *Classifier) workloads(ctx context.Context, src PageSource, es []model.Entry) ([]Item, error) {
	if len(es) == 0 {
		return nil, nil
	}
	parents := make([]spiffeid.ID, len(es))
	for i := range es {
		parents[i] = es[i].ParentID
	}
	nodes, err := src.NodesByID(ctx, parents)
	if err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	items := make([]Item, len(es))
	for i, e := range es {
		var n *model.Node
		if nd, ok := nodes[e.ParentID]; ok {
			n = &nd
		}
		items[i] = c.Workload(e, n)
	}
	return items, nil
}

// credentials classifies leases, each under its workload: the entry with
// the lease's SPIFFE ID on the lease's node, else the first (by ID) with
// its SPIFFE ID, as CountBrokered counts them.
func (c *Classifier) credentials(ctx context.Context, src PageSource, serverID spiffeid.ID, ls []store.Lease) ([]Item, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	subjects := make([]spiffeid.ID, len(ls))
	for i := range ls {
		subjects[i] = ls[i].Subject
	}
	es, err := src.EntriesBySPIFFEID(ctx, subjects)
	if err != nil {
		return nil, fmt.Errorf("list inventory: %w", err)
	}
	es = slices.DeleteFunc(es, func(e model.Entry) bool { return !serverID.IsZero() && e.ParentID == serverID })
	ws, err := c.workloads(ctx, src, es)
	if err != nil {
		return nil, err
	}
	type placed struct{ id, parent spiffeid.ID }
	byPlace := make(map[placed]int, 2*len(es))
	for i, e := range es { // by ID: the first of each place wins
		for _, k := range []placed{{e.SPIFFEID, e.ParentID}, {id: e.SPIFFEID}} {
			if _, ok := byPlace[k]; !ok {
				byPlace[k] = i
			}
		}
	}
	items := make([]Item, len(ls))
	for i, l := range ls {
		items[i] = c.Credential(l)
		w, ok := byPlace[placed{l.Subject, l.Node}]
		if !ok {
			w, ok = byPlace[placed{id: l.Subject}]
		}
		if ok {
			items[i].Environment, items[i].Owner = ws[w].Environment, ws[w].Owner
		}
	}
	return items, nil
}

// placeOf is where a workload with the raw labels of p counts: the
// environment and owner Classifier.Workload gives it.
func placeOf(p store.WorkloadPlace) (env, owner string) {
	return NormalizeEnvironment(workloadEnvironment(p.Environment, p.NodeEnvironment, p.Agentless)),
		ownerOf(map[string]string{LabelOwner: p.Owner})
}

// Coverage computes a coverage report as of c.Now: by environment or owner
// from the store's aggregations; by path by reading the store's pages one
// at a time (never all of a kind at once). The migration plan is left to
// the caller.
func (c *Classifier) Coverage(ctx context.Context, src PageSource, serverID spiffeid.ID, opts CoverageOptions) (Coverage, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return Coverage{}, err
	}
	acc := newCoverageAcc(opts)
	if opts.By == ByPath {
		err = c.pathCoverage(ctx, src, serverID, opts, acc)
	} else {
		err = c.labelCoverage(ctx, src, serverID, opts, acc)
	}
	if err != nil {
		return Coverage{}, err
	}
	return acc.result(), nil
}

func (c *Classifier) labelCoverage(ctx context.Context, src PageSource, serverID spiffeid.ID, opts CoverageOptions, acc *coverageAcc) error {
	key := func(env, owner string) string {
		if opts.By == ByOwner {
			return owner
		}
		return env
	}
	f := store.CoverageCountFilter{ExcludeParent: serverID, ActiveSince: c.Now.Add(-opts.ActiveWithin), Now: c.Now}
	nodes, err := src.CountNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		acc.add(key(NormalizeEnvironment(n.Environment), ownerOf(map[string]string{LabelOwner: n.Owner})), CoverageGroup{Nodes: n.Nodes})
	}
	ws, err := src.CountWorkloads(ctx, f)
	if err != nil {
		return err
	}
	for _, w := range ws {
		acc.add(key(placeOf(w.WorkloadPlace)), CoverageGroup{Workloads: w.Workloads, SPIFFEActive: w.Active})
	}
	bs, err := src.CountBrokered(ctx, f)
	if err != nil {
		return err
	}
	for _, b := range bs {
		acc.add(key(placeOf(b.WorkloadPlace)), CoverageGroup{Brokered: b.Pairs})
	}
	fs, err := src.CountFindings(ctx, string(opts.By))
	if err != nil {
		return err
	}
	for _, fc := range fs {
		switch fc.Status {
		case store.FindingOpen:
			acc.add(fc.Key, CoverageGroup{StaticOpen: fc.Count})
		case store.FindingReplaced:
			acc.add(fc.Key, CoverageGroup{StaticReplaced: fc.Count})
		}
	}
	return nil
}

// pathCoverage streams nodes, workloads and leases page by page into acc,
// and findings one row at a time from the store (status and primary path
// only).
func (c *Classifier) pathCoverage(ctx context.Context, src PageSource, serverID spiffeid.ID, opts CoverageOptions, acc *coverageAcc) error {
	for _, kind := range []Kind{KindNode, KindWorkload, KindCredential} {
		req := PageRequest{Kind: kind, Limit: MaxPage}
		for {
			items, next, err := c.Page(ctx, src, serverID, req)
			if err != nil {
				return err
			}
			for i := range items {
				acc.addItem(&items[i], c.Now)
			}
			if next == "" {
				break
			}
			req.Token = next
		}
	}
	// Replaced findings count as replaced.
	return src.FindingPaths(ctx, []store.FindingStatus{store.FindingOpen, store.FindingReplaced}, func(st store.FindingStatus, p string) error {
		add := CoverageGroup{StaticOpen: 1}
		if st == store.FindingReplaced {
			add = CoverageGroup{StaticReplaced: 1}
		}
		acc.add(filePathPrefix(p, opts.PathDepth), add)
		return nil
	})
}
