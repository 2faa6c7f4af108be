package entrycache

import (
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

func TestEntryCacheNodeEntries(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := func(p string) spiffeid.ID { return spiffeid.RequireFromPath(td, p) }
	sel := func(v string) []model.Selector { return []model.Selector{{Type: "test", Value: v}} }
	now := time.Unix(1_800_000_000, 0)
	serverID := spiffeid.RequireFromPath(td, "/signet/server")
	node := id("/node/a")
	nodeSels := model.SortSelectors([]model.Selector{{Type: "test", Value: "region:eu"}, {Type: "test", Value: "role:web"}})

	c := New(serverID)
	c.Apply(store.EntryChangeSet{Revision: 5, Full: true, Changed: []model.Entry{
		{ID: "direct", SPIFFEID: id("/web"), ParentID: node, Selectors: sel("uid:1")},
		{ID: "other-node", SPIFFEID: id("/db"), ParentID: id("/node/b"), Selectors: sel("uid:1")},
		{ID: "alias-eu", SPIFFEID: id("/alias/eu"), ParentID: serverID, Selectors: sel("region:eu")},
		{ID: "alias-us", SPIFFEID: id("/alias/us"), ParentID: serverID, Selectors: sel("region:us")},
		{ID: "via-eu", SPIFFEID: id("/eu-svc"), ParentID: id("/alias/eu"), Selectors: sel("uid:2")},
		{ID: "via-us", SPIFFEID: id("/us-svc"), ParentID: id("/alias/us"), Selectors: sel("uid:2")},
		{ID: "expired", SPIFFEID: id("/old"), ParentID: node, Selectors: sel("uid:3"), ExpiresAt: now.Add(-time.Second)},
	}})

	var got []string
	for _, e := range c.NodeEntries(node, nodeSels, now) {
		got = append(got, e.ID)
	}
	slices.Sort(got)
	if want := []string{"direct", "via-eu"}; !slices.Equal(got, want) {
		t.Fatalf("nodeEntries = %v, want %v", got, want)
	}
	for id, want := range map[string]bool{"direct": true, "via-eu": true, "via-us": false, "other-node": false, "expired": false, "missing": false} {
		if got := c.BelongsTo(id, node, nodeSels, now) != nil; got != want {
			t.Errorf("belongsTo(%q) = %v, want %v", id, got, want)
		}
	}

	// An incremental change moves an entry away and deletes another.
	c.Apply(store.EntryChangeSet{Revision: 6, Changed: []model.Entry{
		{ID: "direct", SPIFFEID: id("/web"), ParentID: id("/node/b"), Selectors: sel("uid:1")},
	}, Deleted: []string{"via-eu"}})
	if got := c.NodeEntries(node, nodeSels, now); len(got) != 0 {
		t.Fatalf("after moving and deleting: nodeEntries = %d entries, want none", len(got))
	}
	if c.Revision() != 6 || c.Len() != 6 {
		t.Errorf("revision %d size %d, want 6 and 6", c.Revision(), c.Len())
	}
	// A stale change set is ignored.
	c.Apply(store.EntryChangeSet{Revision: 3, Deleted: []string{"other-node"}})
	if c.Get("other-node") == nil {
		t.Error("stale change set was applied")
	}
}

func TestEntryCacheAdmins(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ops := spiffeid.RequireFromPath(td, "/ops")
	now := time.Unix(1_800_000_000, 0)
	sel := []model.Selector{{Type: "unix", Value: "uid:1"}}
	c := New(spiffeid.RequireFromPath(td, "/signet/server"))
	c.Apply(store.EntryChangeSet{Revision: 1, Full: true, Changed: []model.Entry{
		{ID: "a", SPIFFEID: ops, ParentID: spiffeid.RequireFromPath(td, "/node/a"), Selectors: sel, Admin: true},
		{ID: "b", SPIFFEID: ops, ParentID: spiffeid.RequireFromPath(td, "/node/b"), Selectors: sel, Admin: true, ExpiresAt: now.Add(-time.Second)},
	}})
	if !c.IsAdmin(ops, now) {
		t.Fatal("isAdmin(ops) = false with an unexpired admin entry")
	}
	c.Apply(store.EntryChangeSet{Revision: 2, Changed: []model.Entry{
		{ID: "a", SPIFFEID: ops, ParentID: spiffeid.RequireFromPath(td, "/node/a"), Selectors: sel},
	}})
	if c.IsAdmin(ops, now) {
		t.Fatal("isAdmin(ops) = true after the entry lost its admin flag (the other one is expired)")
	}
}
