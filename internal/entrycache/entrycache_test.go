package entrycache

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
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

// TestApplyCreatedMatchesReadBack: entries taken from CreateEntries'
// results leave the cache exactly as reading the same change back from the
// store would, on a real SQLite store; a batch the cache is not exactly
// one revision behind is refused. On SQLite and PostgreSQL.
func TestApplyCreatedMatchesReadBack(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testApplyCreated(t, store.DriverSQLite, filepath.Join(t.TempDir(), "s.db")) })
	t.Run("postgres", func(t *testing.T) { testApplyCreated(t, store.DriverPostgres, storetest.PostgresDSN(t)) })
}

func testApplyCreated(t *testing.T, driver, dsn string) {
	ctx := t.Context()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	serverID := spiffeid.RequireFromPath(td, "/signet/server")
	st, err := store.Open(ctx, store.Config{Driver: driver, DSN: dsn, NodeAliasParent: serverID})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	direct, readBack := New(serverID), New(serverID)
	sync := func() {
		t.Helper()
		cs, err := st.EntryChanges(ctx, readBack.Revision())
		if err != nil {
			t.Fatal(err)
		}
		readBack.Apply(cs)
	}
	sync()
	direct.Apply(store.EntryChangeSet{Revision: readBack.Revision(), Full: true})

	var batch []model.Entry
	for i := range 50 {
		batch = append(batch, model.Entry{
			SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/w/%d", i)), ParentID: spiffeid.RequireFromPath(td, "/node/a"),
			Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}, {Type: "unix", Value: "gid:0"}},
			DNSNames:  []string{"w.example.org"}, Labels: map[string]string{"team": "t"}, Admin: i == 0,
			X509TTL: time.Hour, ExpiresAt: time.Now().Add(time.Hour), Hint: "h",
		})
	}
	batch = append(batch, batch[1]) // a duplicate: fails alone
	results, err := st.CreateEntries(ctx, batch, false)
	if err != nil {
		t.Fatal(err)
	}
	var created []model.Entry
	for _, r := range results {
		if r.Err == nil {
			created = append(created, r.Entry)
		}
	}
	if len(created) != 50 {
		t.Fatalf("created %d entries, want 50", len(created))
	}
	if !direct.ApplyCreated(created[0].Revision, created) {
		t.Fatal("ApplyCreated refused the batch right after the cache's revision")
	}
	sync()
	if direct.Revision() != readBack.Revision() || direct.Len() != readBack.Len() {
		t.Fatalf("revision/len: direct %d/%d, read back %d/%d", direct.Revision(), direct.Len(), readBack.Revision(), readBack.Len())
	}
	for _, e := range created {
		if diff := cmp.Diff(readBack.Get(e.ID), direct.Get(e.ID), cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b }),
			cmp.Comparer(func(a, b spiffeid.TrustDomain) bool { return a == b })); diff != "" {
			t.Errorf("entry %s (-read back +direct):\n%s", e.ID, diff)
		}
	}
	if !direct.IsAdmin(created[0].SPIFFEID, time.Now()) {
		t.Error("admin entry not indexed as admin")
	}

	// Two more writes: the second batch alone is not the whole change
	// since the cache's revision.
	first, err := st.CreateEntries(ctx, []model.Entry{{SPIFFEID: spiffeid.RequireFromPath(td, "/x"),
		ParentID: spiffeid.RequireFromPath(td, "/node/a"), Selectors: []model.Selector{{Type: "unix", Value: "uid:900"}}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := st.CreateEntries(ctx, []model.Entry{{SPIFFEID: spiffeid.RequireFromPath(td, "/y"),
		ParentID: spiffeid.RequireFromPath(td, "/node/a"), Selectors: []model.Selector{{Type: "unix", Value: "uid:901"}}}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if direct.ApplyCreated(second[0].Entry.Revision, []model.Entry{second[0].Entry}) {
		t.Error("ApplyCreated took a batch that skips a revision")
	}
	if direct.Get(second[0].Entry.ID) != nil || direct.Revision() != first[0].Entry.Revision-1 {
		t.Error("a refused ApplyCreated changed the cache")
	}
}

// TestNodeEntriesPaged pages through a node's entries (direct and through
// an alias) by cursor: every entry once, in ID order, while entries are
// added, moved and deleted between calls the way the change feed does.
func TestNodeEntriesPaged(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := func(p string) spiffeid.ID { return spiffeid.RequireFromPath(td, p) }
	now := time.Unix(1_800_000_000, 0)
	serverID := id("/signet/server")
	node := id("/node/a")
	nodeSels := []model.Selector{{Type: "test", Value: "role:web"}}
	c := New(serverID)
	var all []model.Entry
	all = append(all, model.Entry{ID: "alias", SPIFFEID: id("/alias"), ParentID: serverID, Selectors: nodeSels})
	for i := range 250 {
		parent := node
		if i%3 == 0 {
			parent = id("/alias")
		}
		e := model.Entry{ID: fmt.Sprintf("e%04d", (i*7919)%250), SPIFFEID: id(fmt.Sprintf("/w/%d", i)), ParentID: parent,
			Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}}}
		if i == 17 {
			e.ExpiresAt = now.Add(-time.Second)
		}
		all = append(all, e)
	}
	// Half in a full load, the rest one by one (the sorted-insert path).
	c.Apply(store.EntryChangeSet{Revision: 1, Full: true, Changed: all[:126]})
	for i, e := range all[126:] {
		c.Apply(store.EntryChangeSet{Revision: int64(2 + i), Changed: []model.Entry{e}})
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, more := c.NodeEntriesAfter(node, nodeSels, now, after, 40)
		for _, e := range page {
			got = append(got, e.ID)
		}
		if !more {
			break
		}
		if len(page) != 40 || pages > 10 {
			t.Fatalf("page %d: %d entries with more to come, want 40", pages, len(page))
		}
		after = page[len(page)-1].ID
	}
	if len(got) != 249 || !slices.IsSorted(got) || slices.Contains(got, "alias") {
		t.Fatalf("paged %d entries (sorted: %v), want the 249 unexpired ones in ID order", len(got), slices.IsSorted(got))
	}
	whole := c.NodeEntries(node, nodeSels, now)
	if len(whole) != len(got) || whole[0].ID != got[0] || whole[len(whole)-1].ID != got[len(got)-1] {
		t.Errorf("NodeEntries differs from the pages: %d entries", len(whole))
	}
	// Delete every other entry and move some to another node: the rest
	// stays in order, none twice.
	var del []string
	var moved []model.Entry
	for i, e := range all[1:] {
		switch i % 4 {
		case 0:
			del = append(del, e.ID)
		case 1:
			e.ParentID = id("/node/b")
			moved = append(moved, e)
		}
	}
	c.Apply(store.EntryChangeSet{Revision: 1000, Changed: moved, Deleted: del})
	rest := c.NodeEntries(node, nodeSels, now)
	ids := make([]string, len(rest))
	for i, e := range rest {
		ids = append(ids[:i], e.ID)
		if slices.Contains(del, e.ID) || e.ParentID == id("/node/b") {
			t.Errorf("entry %s still listed for the node after delete/move", e.ID)
		}
	}
	if !slices.IsSorted(ids) || len(ids) != 124 {
		t.Errorf("after delete/move: %d entries (sorted %v), want 124 in order", len(ids), slices.IsSorted(ids))
	}
	if c.Len() != 251-len(del) {
		t.Errorf("Len = %d, want %d", c.Len(), 251-len(del))
	}
}

// TestGetReturnsCopy: what the cache hands out is the caller's; changing it
// does not change the cache.
func TestGetReturnsCopy(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	c := New(spiffeid.RequireFromPath(td, "/signet/server"))
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	in := model.Entry{ID: "x", SPIFFEID: spiffeid.RequireFromPath(td, "/w"), ParentID: spiffeid.RequireFromPath(td, "/node/a"),
		Selectors: []model.Selector{{Type: "unix", Value: "uid:1"}}, DNSNames: []string{"a.example.org"}, Hint: "h",
		FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.org")},
		X509TTL:       time.Hour, JWTTTL: time.Minute, ExpiresAt: exp, Revision: 3, Admin: true}
	c.Apply(store.EntryChangeSet{Revision: 3, Full: true, Changed: []model.Entry{in}})
	got := c.Get("x")
	if diff := cmp.Diff(&in, got, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b }),
		cmp.Comparer(func(a, b spiffeid.TrustDomain) bool { return a == b })); diff != "" {
		t.Fatalf("Get (-in +got):\n%s", diff)
	}
	got.Selectors[0].Value, got.DNSNames[0] = "changed", "changed"
	if again := c.Get("x"); again.Selectors[0].Value != "uid:1" || again.DNSNames[0] != "a.example.org" {
		t.Errorf("changing a returned entry changed the cache: %+v", again)
	}
}

// TestLoaderReplaceMatchesApply: a full reload streamed through a Loader
// (more entries than one of its batches) leaves the cache as Apply of the
// same Full set does, and replaces what was there.
func TestLoaderReplaceMatchesApply(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	serverID := spiffeid.RequireFromPath(td, "/signet/server")
	var es []model.Entry
	for i := range 3000 {
		es = append(es, model.Entry{ID: fmt.Sprintf("e%05d", i), SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/w/%d", i)),
			ParentID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/node/%d", i%7)),
			Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}}, Admin: i == 5, Revision: 9})
	}
	applied, loaded := New(serverID), New(serverID)
	applied.Apply(store.EntryChangeSet{Revision: 9, Full: true, Changed: es})
	loaded.Apply(store.EntryChangeSet{Revision: 3, Full: true, Changed: []model.Entry{{ID: "gone", SPIFFEID: es[0].SPIFFEID,
		ParentID: es[0].ParentID, Selectors: es[0].Selectors}}})
	l := loaded.NewLoader()
	for _, e := range es {
		l.Add(e)
	}
	if loaded.Len() != 1 {
		t.Fatalf("the cache changed before Replace: %d entries", loaded.Len())
	}
	loaded.Replace(l, 9)
	if loaded.Revision() != 9 || loaded.Len() != applied.Len() || loaded.Get("gone") != nil {
		t.Fatalf("after Replace: revision %d, %d entries (want 9, %d), old entry kept: %v",
			loaded.Revision(), loaded.Len(), applied.Len(), loaded.Get("gone") != nil)
	}
	now := time.Now()
	for n := range 7 {
		node := spiffeid.RequireFromPath(td, fmt.Sprintf("/node/%d", n))
		a, b := applied.NodeEntries(node, nil, now), loaded.NodeEntries(node, nil, now)
		if diff := cmp.Diff(a, b, cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })); diff != "" {
			t.Errorf("node %d (-applied +loaded):\n%s", n, diff)
		}
	}
	if !loaded.IsAdmin(es[5].SPIFFEID, now) {
		t.Error("admin entry not indexed after Replace")
	}
	empty := New(serverID)
	empty.Replace(nil, 4)
	if empty.Len() != 0 || empty.Revision() != 4 {
		t.Errorf("Replace(nil): %d entries at %d", empty.Len(), empty.Revision())
	}
}

// TestNodePageQueries: NodePage's Since and AllIDs select what filtering
// NodeEntries would, page by page, and NodeEntryIDs and NodeFederatesWith
// agree with NodeEntries.
func TestNodePageQueries(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := func(p string) spiffeid.ID { return spiffeid.RequireFromPath(td, p) }
	now := time.Unix(1_800_000_000, 0)
	serverID, node := id("/signet/server"), id("/node/a")
	nodeSels := []model.Selector{{Type: "test", Value: "role:web"}}
	fed := []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("b.org"), spiffeid.RequireTrustDomainFromString("a.org")}
	all := []model.Entry{{ID: "alias", SPIFFEID: id("/alias"), ParentID: serverID, Selectors: nodeSels, Revision: 1}}
	for i := range 120 {
		parent := node
		switch i % 5 {
		case 0:
			parent = id("/alias")
		case 1:
			parent = id("/node/b")
		}
		e := model.Entry{ID: fmt.Sprintf("e%03d", (i*37)%120), SPIFFEID: id(fmt.Sprintf("/w/%d", i)), ParentID: parent,
			Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}}, Revision: int64(1 + i%9)}
		if i%11 == 0 {
			e.ExpiresAt = now
		}
		if i%13 == 0 {
			e.FederatesWith = fed[i%2:]
		}
		all = append(all, e)
	}
	c := New(serverID)
	c.Apply(store.EntryChangeSet{Revision: 9, Full: true, Changed: all})
	whole := c.NodeEntries(node, nodeSels, now)
	var wantIDs []string
	var wantTDs []spiffeid.TrustDomain
	for _, e := range whole {
		wantIDs = append(wantIDs, e.ID)
		for _, td := range e.FederatesWith {
			if !slices.Contains(wantTDs, td) {
				wantTDs = append(wantTDs, td)
			}
		}
	}
	slices.SortFunc(wantTDs, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	if got := c.NodeEntryIDs(node, nodeSels, now); !slices.Equal(got, wantIDs) {
		t.Errorf("NodeEntryIDs() = %v, want %v", got, wantIDs)
	}
	if got := c.NodeFederatesWith(node, nodeSels, now); !slices.Equal(got, wantTDs) || len(wantTDs) != 2 {
		t.Errorf("NodeFederatesWith() = %v, want %v (both trust domains)", got, wantTDs)
	}
	for _, q := range []Query{{Limit: 7}, {Limit: 5, Since: 4}, {Limit: 6, Since: 4, AllIDs: true}, {Since: 8, AllIDs: true}, {Since: 9}} {
		var want []Item
		for _, e := range whole {
			switch {
			case q.Since <= 0 || e.Revision > q.Since:
				want = append(want, Item{ID: e.ID, Entry: e})
			case q.AllIDs:
				want = append(want, Item{ID: e.ID})
			}
		}
		var got []Item
		for pages := 0; ; pages++ {
			page, more := c.NodePage(node, nodeSels, now, q)
			if q.Limit > 0 && len(page) > q.Limit {
				t.Fatalf("NodePage(%+v) = %d items, more than the limit", q, len(page))
			}
			got = append(got, page...)
			if !more {
				break
			}
			if len(page) == 0 || pages > 200 {
				t.Fatalf("NodePage(%+v): more without progress", q)
			}
			q.After = page[len(page)-1].ID
		}
		same := len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			same = got[i].ID == want[i].ID && (got[i].Entry == nil) == (want[i].Entry == nil) &&
				(got[i].Entry == nil || got[i].Entry.Revision == want[i].Entry.Revision && got[i].Entry.SPIFFEID == want[i].Entry.SPIFFEID)
		}
		if !same {
			t.Errorf("NodePage(%+v) paged through %d items, want %d: %v", q, len(got), len(want), got)
		}
	}
}

// TestEntryCacheKeepsItsOwnCopies: whatever the number of selectors (held
// in the entry or beside it), an entry comes back as it went in, built
// from the cache's own copy: changing the input afterwards, or the entry
// returned, changes nothing cached.
func TestEntryCacheKeepsItsOwnCopies(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	node := spiffeid.RequireFromPath(td, "/node/a")
	c := New(spiffeid.RequireFromPath(td, "/signet/server"))
	var in []model.Entry
	for n := 1; n <= 4; n++ {
		e := model.Entry{ID: fmt.Sprintf("e%d", n), SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/w/%d", n)), ParentID: node, Revision: 1}
		for i := range n {
			e.Selectors = append(e.Selectors, model.Selector{Type: "unix", Value: fmt.Sprintf("uid:%d", i)})
		}
		in = append(in, e)
	}
	want := make([]model.Entry, len(in))
	for i, e := range in {
		want[i] = e
		want[i].Selectors = slices.Clone(e.Selectors)
	}
	if !c.ApplyCreated(1, in) {
		t.Fatal("ApplyCreated refused the first revision")
	}
	for i := range in { // the caller reuses its memory
		in[i].Selectors[0].Value = "changed"
		in[i].ID = "changed"
	}
	for _, w := range want {
		got := c.Get(w.ID)
		if got == nil {
			t.Fatalf("Get(%q) = nil", w.ID)
		}
		if got.ID != w.ID || got.SPIFFEID != w.SPIFFEID || got.ParentID != w.ParentID || got.Revision != w.Revision || !slices.Equal(got.Selectors, w.Selectors) {
			t.Errorf("Get(%q) = %+v, want %+v", w.ID, *got, w)
		}
		got.Selectors[0].Value = "mutated"
		if again := c.Get(w.ID); again.Selectors[0].Value != w.Selectors[0].Value {
			t.Errorf("Get(%q) after changing a returned entry: selector %q, want %q", w.ID, again.Selectors[0].Value, w.Selectors[0].Value)
		}
	}
}
