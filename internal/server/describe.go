package server

import (
	"context"
	"maps"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/tokenapi"
)

// maxCandidates bounds the entries sharing a SPIFFE ID that a caller
// without an SVID binding is judged against; past it nothing is known.
const maxCandidates = 64

// storeDescriber describes callers of the broker from the store.
//
// The caller is judged by the SVID it presented: the binding recorded
// when that SVID was signed names the registration entry and the node it
// was signed for, so a workload on a dev node cannot borrow the facts of a
// prod node that runs an entry with the same SPIFFE ID. An SVID without a
// binding (signed before bindings were kept) is judged only by what every
// entry with its SPIFFE ID, and every node those entries are parented to,
// have in common: a fact the policy sees then holds wherever the caller
// may run.
type storeDescriber struct{ st *store.Store }

func (d storeDescriber) Describe(ctx context.Context, sub *tokenapi.Subject) (exchange.Description, error) {
	if sub.SVIDDigest != "" {
		b, err := d.st.SVIDBinding(ctx, sub.SVIDDigest)
		switch {
		case err == nil:
			return d.bound(ctx, sub.ID, b)
		case !errkind.Is(err, errkind.NotFound):
			return exchange.Description{}, err
		}
	}
	return d.common(ctx, sub.ID)
}

// bound describes a caller by its SVID's binding. An entry deleted since,
// or a node evicted since, contributes nothing.
func (d storeDescriber) bound(ctx context.Context, id spiffeid.ID, b store.SVIDBinding) (exchange.Description, error) {
	none := exchange.Description{Facts: exchange.FactsNone}
	e, err := d.st.GetEntry(ctx, b.EntryID)
	if errkind.Is(err, errkind.NotFound) {
		return none, nil
	}
	if err != nil {
		return none, err
	}
	if e.SPIFFEID != id {
		return none, nil // the entry now names another ID: its selectors are not the caller's
	}
	desc := exchange.Description{Selectors: slices.Clone(e.Selectors), Entry: e.ID, Facts: exchange.FactsSVID}
	if b.NodeID == "" {
		return desc, nil
	}
	nodeID, err := spiffeid.FromString(b.NodeID)
	if err != nil {
		return desc, nil
	}
	n, found, err := d.node(ctx, nodeID)
	if err != nil || !found {
		return desc, err
	}
	desc.Node = n
	return desc, nil
}

// common describes a caller with no SVID binding by what all candidates
// share: the selectors every entry with its SPIFFE ID has, and, when every
// such entry is parented to an attested node, what those nodes share (the
// node itself when there is one).
func (d storeDescriber) common(ctx context.Context, id spiffeid.ID) (exchange.Description, error) {
	none := exchange.Description{Facts: exchange.FactsNone}
	entries, err := d.st.ListEntries(ctx, store.EntryFilter{SPIFFEID: id, Limit: maxCandidates + 1})
	if err != nil || len(entries) == 0 || len(entries) > maxCandidates {
		return none, err
	}
	desc := exchange.Description{Selectors: slices.Clone(entries[0].Selectors), Facts: exchange.FactsCommon}
	if len(entries) == 1 {
		desc.Entry = entries[0].ID
	}
	for _, e := range entries[1:] {
		desc.Selectors = intersect(desc.Selectors, e.Selectors)
	}
	var nodes []broker.Node
	seen := map[spiffeid.ID]bool{}
	for _, e := range entries {
		if seen[e.ParentID] {
			continue
		}
		seen[e.ParentID] = true
		n, found, err := d.node(ctx, e.ParentID)
		if err != nil {
			return none, err
		}
		if !found {
			// Parented to an alias or to nothing attested: the caller may
			// run on nodes the store cannot enumerate here.
			return desc, nil
		}
		nodes = append(nodes, n)
	}
	desc.Node = commonNode(nodes)
	return desc, nil
}

// node returns the attested node id, found false when there is none.
func (d storeDescriber) node(ctx context.Context, id spiffeid.ID) (broker.Node, bool, error) {
	n, err := d.st.GetNode(ctx, id)
	if errkind.Is(err, errkind.NotFound) {
		return broker.Node{}, false, nil
	}
	if err != nil {
		return broker.Node{}, false, err
	}
	addrs, err := nodeAddresses(ctx, d.st, n.SPIFFEID)
	if err != nil {
		return broker.Node{}, false, err
	}
	return broker.Node{ID: n.SPIFFEID, AttestationMethod: n.AttestationType, Selectors: slices.Clone(n.Selectors),
		Labels: maps.Clone(n.Labels), Addresses: addrs}, true, nil
}

// commonNode is the node when there is one, else what all of them share:
// no ID, the attestation method if they agree, the selectors all have and
// the labels all have with the same value.
func commonNode(nodes []broker.Node) broker.Node {
	if len(nodes) == 0 {
		return broker.Node{}
	}
	out := nodes[0]
	for _, n := range nodes[1:] {
		out.ID, out.Addresses = spiffeid.ID{}, nil // no one node: nothing to bind to
		if n.AttestationMethod != out.AttestationMethod {
			out.AttestationMethod = ""
		}
		out.Selectors = intersect(out.Selectors, n.Selectors)
		maps.DeleteFunc(out.Labels, func(k, v string) bool { return n.Labels[k] != v })
	}
	return out
}

// intersect returns the selectors of a that b also has, in a's order.
func intersect(a, b []model.Selector) []model.Selector {
	out := a[:0:0]
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
