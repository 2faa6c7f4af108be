package inventory

// The in-memory inventory: every record of a kind read and classified at
// once. The server never does this (it pages and aggregates in the store,
// see page.go); the tests use it as the reference the store's pages and
// aggregations must agree with.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Input is what the inventory is computed from.
type Input struct {
	// ServerID is the server's SPIFFE ID: entries parented to it are node
	// aliases, not workloads, and are left out.
	ServerID spiffeid.ID
	Nodes    []model.Node
	Entries  []model.Entry
	Findings []store.Finding
	Leases   []store.Lease
}

// Source is the part of the store the inventory reads.
type Source interface {
	ListNodes(ctx context.Context, f store.NodeFilter) ([]model.Node, error)
	ListEntries(ctx context.Context, f store.EntryFilter) ([]model.Entry, error)
	ListFindings(ctx context.Context, f store.FindingFilter) ([]store.Finding, error)
	ListLeases(ctx context.Context, f store.LeaseFilter) ([]store.Lease, error)
}

// Load reads the records of the given kind (all when zero) from src.
// Findings that are no longer open are included only with closed set.
func Load(ctx context.Context, src Source, serverID spiffeid.ID, kind Kind, closed bool) (Input, error) {
	in := Input{ServerID: serverID}
	var err error
	// Workloads need their nodes for environment inheritance.
	if kind == "" || kind == KindNode || kind == KindWorkload {
		if in.Nodes, err = src.ListNodes(ctx, store.NodeFilter{}); err != nil {
			return Input{}, fmt.Errorf("load inventory: %w", err)
		}
	}
	if kind == "" || kind == KindWorkload {
		if in.Entries, err = src.ListEntries(ctx, store.EntryFilter{}); err != nil {
			return Input{}, fmt.Errorf("load inventory: %w", err)
		}
	}
	if kind == "" || kind == KindFinding {
		f := store.FindingFilter{}
		if !closed {
			f.Status = []store.FindingStatus{store.FindingOpen}
		}
		if in.Findings, err = src.ListFindings(ctx, f); err != nil {
			return Input{}, fmt.Errorf("load inventory: %w", err)
		}
	}
	if kind == "" || kind == KindCredential {
		f := store.LeaseFilter{Limit: maxLeases}
		if !closed {
			f.States = []store.LeaseState{store.LeasePending, store.LeaseActive}
		}
		if in.Leases, err = src.ListLeases(ctx, f); err != nil {
			return Input{}, fmt.Errorf("load inventory: %w", err)
		}
	}
	return in, nil
}

// maxLeases bounds the leases one inventory reads.
const maxLeases = 100000

// Items classifies everything in in, ordered by kind (as in Kinds) and
// then name. Node aliases are left out.
func (c *Classifier) Items(in Input) []Item {
	nodes := make(map[spiffeid.ID]*model.Node, len(in.Nodes))
	out := make([]Item, 0, len(in.Nodes)+len(in.Entries)+len(in.Findings))
	for i := range in.Nodes {
		nodes[in.Nodes[i].SPIFFEID] = &in.Nodes[i]
		out = append(out, c.Node(in.Nodes[i]))
	}
	// A lease belongs to the workload of its subject on its node (else to
	// the first workload with its SPIFFE ID): it takes that workload's
	// environment and owner.
	type placed struct{ id, parent spiffeid.ID }
	workloads := map[placed]int{}
	for _, e := range in.Entries {
		if !in.ServerID.IsZero() && e.ParentID == in.ServerID {
			continue
		}
		out = append(out, c.Workload(e, nodes[e.ParentID]))
		for _, k := range []placed{{e.SPIFFEID, e.ParentID}, {id: e.SPIFFEID}} {
			if _, ok := workloads[k]; !ok {
				workloads[k] = len(out) - 1
			}
		}
	}
	for _, f := range in.Findings {
		out = append(out, c.Finding(f))
	}
	for _, l := range in.Leases {
		it := c.Credential(l)
		i, ok := workloads[placed{l.Subject, l.Node}]
		if !ok {
			i, ok = workloads[placed{id: l.Subject}]
		}
		if ok {
			it.Environment, it.Owner = out[i].Environment, out[i].Owner
		}
		out = append(out, it)
	}
	order := func(k Kind) int { return slices.Index(Kinds, k) }
	slices.SortStableFunc(out, func(a, b Item) int {
		return cmp.Or(cmp.Compare(order(a.Kind), order(b.Kind)), strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	return out
}
