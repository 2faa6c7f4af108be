package inventory_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// seedEdges adds to seed's fixture the cases where the store's SQL has to
// agree with the classifier: agentless (CI) parents and a look-alike,
// labels that normalise, one SPIFFE ID on two nodes, and pairs whose
// leases sit on different nodes.
func seedEdges(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := t.Context()
	id := spiffeid.RequireFromString
	sel := []model.Selector{{Type: "unix", Value: "uid:1001"}}
	entries := []model.Entry{
		{ID: "gh-1", SPIFFEID: id("spiffe://example.org/ci/gh/deploy"), ParentID: id("spiffe://example.org/signet/ci/github"), Selectors: sel},
		{ID: "gh-2", SPIFFEID: id("spiffe://example.org/ci/gh/build"), ParentID: id("spiffe://example.org/signet/ci/github"), Selectors: sel,
			Labels: map[string]string{"environment": "Production", "owner": " platform "}},
		{ID: "lookalike", SPIFFEID: id("spiffe://example.org/x/job"), ParentID: id("spiffe://example.org/x/signet/ci/github"), Selectors: sel},
		{ID: "spaces", SPIFFEID: id("spiffe://example.org/ns/odd"), ParentID: id("spiffe://example.org/node/k8s"), Selectors: sel,
			Labels: map[string]string{"environment": "  "}},
		{ID: "shared-a", SPIFFEID: id("spiffe://example.org/shared/svc"), ParentID: id("spiffe://example.org/node/k8s"), Selectors: sel,
			Labels: map[string]string{"owner": "alpha"}},
		{ID: "shared-b", SPIFFEID: id("spiffe://example.org/shared/svc"), ParentID: id("spiffe://example.org/node/vm"), Selectors: sel,
			Labels: map[string]string{"owner": "beta"}},
	}
	res, err := s.CreateEntries(ctx, entries, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	// gh-1 was issued (not served) an hour ago: agentless, so active.
	if err := s.TouchEntries(ctx, []string{"gh-1"}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	lease := func(lid, cred, node string, issued time.Duration) {
		l := store.Lease{ID: lid, Credential: cred, Provider: "static", Subject: id("spiffe://example.org/shared/svc"),
			IssuedAt: now.Add(-issued), ExpiresAt: now.Add(time.Hour)}
		if node != "" {
			l.Node = id("spiffe://example.org/node/" + node)
		}
		if _, err := s.CreateLease(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	// Two locations whose byte order and a linguistic collation disagree
	// ("/Zeta" before "/alpha" by bytes): the primary path is by bytes.
	if _, err := s.ReportFindings(ctx, store.FindingReport{Host: "mixed-1", Findings: []store.Finding{{
		Fingerprint: "f7f7f7f7", RuleID: "generic-api-key", Kind: "api-key",
		Locations: []store.FindingLocation{{Path: "/alpha/y.env", Line: 1}, {Path: "/Zeta/x.env", Line: 3}},
	}}}); err != nil {
		t.Fatal(err)
	}
	lease("s1", "orders-db", "k8s", 2*time.Minute) // older lease of the pair: on k8s (alpha)
	lease("s2", "orders-db", "vm", time.Minute)    // newest: on vm (beta) decides
	lease("s3", "stripe", "", time.Minute)         // no node: the first entry by ID (shared-a)
}

func backends(t *testing.T) map[string]func(t *testing.T) *store.Store {
	return map[string]func(t *testing.T) *store.Store{
		"sqlite": func(t *testing.T) *store.Store {
			return openStore(t, store.DriverSQLite, filepath.Join(t.TempDir(), "signet.db"))
		},
		"postgres": func(t *testing.T) *store.Store {
			return openStore(t, store.DriverPostgres, storetest.PostgresDSN(t))
		},
	}
}

// TestStoreCoverageMatchesClassifier: the report the store aggregates
// equals the one computed over every item in memory, for every dimension
// and window.
func TestStoreCoverageMatchesClassifier(t *testing.T) {
	for backend, openFn := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			s := openFn(t)
			seed(t, s)
			seedEdges(t, s)
			in, err := inventory.Load(t.Context(), s, serverID, "", true)
			if err != nil {
				t.Fatal(err)
			}
			c := inventory.Classifier{Now: now}
			items := c.Items(in)
			for _, opts := range []inventory.CoverageOptions{
				{By: inventory.ByEnvironment}, {By: inventory.ByOwner}, {By: inventory.ByPath}, {By: inventory.ByPath, PathDepth: 2},
				{By: inventory.ByEnvironment, ActiveWithin: 7 * inventory.Day}, {By: inventory.ByOwner, ActiveWithin: time.Minute},
			} {
				want, err := inventory.ComputeCoverage(items, now, opts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.Coverage(t.Context(), s, serverID, opts)
				if err != nil {
					t.Fatalf("Coverage(%+v): %v", opts, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Coverage(%+v) (-in memory +store):\n%s", opts, diff)
				}
			}
			// Spot checks that the fixture exercises what it claims.
			got, err := c.Coverage(t.Context(), s, serverID, inventory.CoverageOptions{By: inventory.ByOwner})
			if err != nil {
				t.Fatal(err)
			}
			if g, _ := got.Group("beta"); g.Brokered != 1 {
				t.Errorf("beta (the newest lease's workload) brokered %d, want 1", g.Brokered)
			}
			if g, _ := got.Group("alpha"); g.Brokered != 1 {
				t.Errorf("alpha (the first entry, for a lease without a node) brokered %d, want 1", g.Brokered)
			}
			env, err := c.Coverage(t.Context(), s, serverID, inventory.CoverageOptions{By: inventory.ByEnvironment})
			if err != nil {
				t.Fatal(err)
			}
			if g, _ := env.Group("ci"); g.Workloads != 2 || g.SPIFFEActive != 2 {
				t.Errorf("ci: %+v; want 2 workloads (ci-job, gh-1), both active", g)
			}
		})
	}
}

// TestPageListsEveryItemOnce: paging through every kind with small pages
// lists each item once, classified as in memory.
func TestPageListsEveryItemOnce(t *testing.T) {
	type row struct{ ID, Env, Owner string }
	project := func(items []inventory.Item) []row {
		out := make([]row, 0, len(items))
		for _, it := range items {
			out = append(out, row{it.ID, it.Environment, it.Owner})
		}
		slices.SortFunc(out, func(a, b row) int { return strings.Compare(a.ID, b.ID) })
		return out
	}
	for backend, openFn := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			s := openFn(t)
			seed(t, s)
			seedEdges(t, s)
			c := inventory.Classifier{Now: now}
			for _, closed := range []bool{false, true} {
				in, err := inventory.Load(t.Context(), s, serverID, "", closed)
				if err != nil {
					t.Fatal(err)
				}
				want := project(c.Items(in))
				var got []inventory.Item
				req := inventory.PageRequest{Limit: 3, IncludeClosed: closed}
				for pages := 0; ; pages++ {
					if pages > 100 {
						t.Fatal("paging does not end")
					}
					items, next, err := c.Page(t.Context(), s, serverID, req)
					if err != nil {
						t.Fatalf("Page: %v", err)
					}
					if len(items) > 3 {
						t.Fatalf("a page of %d items, limit 3", len(items))
					}
					got = append(got, items...)
					if next == "" {
						break
					}
					req.Token = next
				}
				if diff := cmp.Diff(want, project(got)); diff != "" {
					t.Errorf("closed=%v: paged listing (-in memory +paged):\n%s", closed, diff)
				}
			}

			// The store pieces the console pages with.
			if total, banned, err := s.NodeTotals(t.Context()); err != nil || total != 3 || banned != 0 {
				t.Errorf("NodeTotals = %d, %d, %v; want 3, 0", total, banned, err)
			}
			fs, next, err := s.ListFindingsPage(t.Context(), store.FindingPage{After: "f2f2f2f2", Limit: 2})
			if err != nil || len(fs) != 2 || fs[0].Fingerprint != "f3f3f3f3" || next == "" {
				t.Errorf("ListFindingsPage(after f2) = %d findings, next %q, %v; want f3, f4 and more", len(fs), next, err)
			}
			if _, _, err := s.ListFindingsPage(t.Context(), store.FindingPage{After: "f2f2f2f2", ByRisk: true}); !errkind.Is(err, errkind.InvalidArgument) {
				t.Errorf("after with a risk order: %v, want InvalidArgument", err)
			}

			// A filtered kind pages too, and its token is refused by another kind.
			stale := func(it *inventory.Item) bool { return it.Kind == inventory.KindWorkload }
			items, next, err := c.Page(t.Context(), s, serverID, inventory.PageRequest{Kind: inventory.KindWorkload, Limit: 2, Keep: stale})
			if err != nil || len(items) != 2 || next == "" {
				t.Fatalf("Page(workload, 2) = %d items, next %q, %v", len(items), next, err)
			}
			_, _, err = c.Page(t.Context(), s, serverID, inventory.PageRequest{Kind: inventory.KindNode, Token: next})
			if !errkind.Is(err, errkind.InvalidArgument) || !strings.Contains(err.Error(), "page_token") {
				t.Errorf("a workload token for nodes: %v, want InvalidArgument naming page_token", err)
			}
			for _, bad := range []string{"x", "bm90IGpzb24", strings.Repeat("A", 4000)} {
				if _, _, err := c.Page(t.Context(), s, serverID, inventory.PageRequest{Token: bad}); !errkind.Is(err, errkind.InvalidArgument) {
					t.Errorf("token %.10q: %v, want InvalidArgument", bad, err)
				}
			}
			if _, _, err := c.Page(t.Context(), s, serverID, inventory.PageRequest{Limit: inventory.MaxPage + 1}); !errkind.Is(err, errkind.InvalidArgument) {
				t.Errorf("limit past the maximum: %v, want InvalidArgument", err)
			}
			if _, _, err := c.Page(t.Context(), s, serverID, inventory.PageRequest{Kind: inventory.KindNode, ByRisk: true}); !errkind.Is(err, errkind.InvalidArgument) {
				t.Errorf("risk order of nodes: %v, want InvalidArgument", err)
			}
		})
	}
}
