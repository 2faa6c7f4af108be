package inventoryapi

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cputime"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// Inventory scale of the benchmarks: issue 17's goal is under a second for
// each listing and report at this size, on SQLite and PostgreSQL.
const (
	benchFindings  = 100_000
	benchWorkloads = 10_000
	benchHosts     = 20
)

var benchEnvs = []string{"production", "staging", "ci", "vm", "legacy"}

// seedBench fills s with benchWorkloads entries over 100 nodes and
// benchFindings findings reported by benchHosts hosts, each with one or two
// locations, labelled with environments and owners.
func seedBench(b *testing.B, s *store.Store) {
	b.Helper()
	ctx := b.Context()
	entries := make([]store.Entry, benchWorkloads)
	for i := range entries {
		entries[i] = store.Entry{
			SPIFFEID:  spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/team-%02d/svc-%05d", i%50, i)),
			ParentID:  spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/node/n%03d", i%100)),
			Selectors: []store.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 1000+i)}},
			Labels:    map[string]string{"environment": benchEnvs[i%len(benchEnvs)], "owner": fmt.Sprintf("team-%02d", i%50)},
		}
	}
	if _, err := s.CreateEntries(ctx, entries, true); err != nil {
		b.Fatalf("CreateEntries: %v", err)
	}
	for n := range 100 {
		node := store.Node{SPIFFEID: spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/node/n%03d", n)), AttestationType: "join_token",
			Labels: map[string]string{"environment": benchEnvs[n%len(benchEnvs)]}}
		if _, err := s.CreateNode(ctx, node); err != nil {
			b.Fatalf("CreateNode: %v", err)
		}
	}
	// Brokered credentials: a lease for one workload in ten.
	for i := 0; i < benchWorkloads; i += 10 {
		l := store.Lease{ID: fmt.Sprintf("lease-%05d", i), Credential: "orders-db", Provider: "postgres", Subject: entries[i].SPIFFEID,
			Node: entries[i].ParentID, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if _, err := s.CreateLease(ctx, l); err != nil {
			b.Fatalf("CreateLease: %v", err)
		}
	}
	per := benchFindings / benchHosts
	kinds := []string{"password", "token", "private-key", "cloud-credential", "api-key"}
	for h := range benchHosts {
		fs := make([]store.Finding, per)
		for i := range fs {
			n := h*per + i
			f := store.Finding{Fingerprint: fmt.Sprintf("%016x", uint64(n)*2654435761+1), RuleID: "bench-rule", Detector: "signet",
				Kind: kinds[n%len(kinds)], Severity: "high", Preview: "abcd…(32)",
				Locations: []store.FindingLocation{{Path: fmt.Sprintf("/srv/app-%d/conf/%d.env", n%300, n), Line: 1}}}
			if n%3 == 0 {
				f.Locations = append(f.Locations, store.FindingLocation{Path: fmt.Sprintf("/srv/repo-%d/x.env", n%40), Line: 2,
					Commit: fmt.Sprintf("%040x", n), CommittedAt: time.Now().Add(-time.Duration(n%700) * 24 * time.Hour)})
			}
			fs[i] = f
		}
		labels := map[string]string{"environment": benchEnvs[h%len(benchEnvs)], "owner": fmt.Sprintf("team-%02d", h)}
		if _, err := s.ReportFindings(ctx, store.FindingReport{Host: fmt.Sprintf("host-%02d", h), Labels: labels, Findings: fs}); err != nil {
			b.Fatalf("ReportFindings: %v", err)
		}
	}
}

// reportCPU, deferred at the start of a benchmark, reports the process's
// CPU time per operation ("cpu-ns/op"): on a loaded machine it says more
// than the wall time. It leaves out a PostgreSQL server's own CPU.
func reportCPU(b *testing.B) func() {
	c0 := cputime.Now()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cputime.Now()-c0)/float64(b.N), "cpu-ns/op")
		}
	}
}

func benchAPI(s *store.Store) *inventoryAPI {
	return &inventoryAPI{cfg: Config{Store: s, ServerID: spiffeid.RequireFromString("spiffe://example.org/signet/server"),
		DefaultX509TTL: time.Hour, DefaultJWTTTL: 5 * time.Minute, Now: time.Now, Log: slog.New(slog.DiscardHandler),
		Credentials: func() map[string]string { return map[string]string{"orders-db": "postgres"} }}}
}

// BenchmarkInventoryScale measures, at 100,000 findings and 10,000
// workloads, the first page of `inventory list --kind finding --sort risk`,
// a page deep into it, a page of workloads deep into their listing, and
// `coverage` by environment, owner and path (without storing the report),
// on SQLite and PostgreSQL.
func BenchmarkInventoryScale(b *testing.B) {
	for _, driver := range []string{store.DriverSQLite, store.DriverPostgres} {
		b.Run(driver, func(b *testing.B) {
			dsn := filepath.Join(b.TempDir(), "bench.db")
			if driver == store.DriverPostgres {
				dsn = storetest.PostgresDSN(b)
			}
			s, err := store.Open(b.Context(), store.Config{Driver: driver, DSN: dsn})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			seedBench(b, s)
			a := benchAPI(s)
			list := func(b *testing.B, token string) *inventoryv1.ListInventoryResponse {
				resp, err := a.ListInventory(b.Context(), &inventoryv1.ListInventoryRequest{Kind: "finding", Sort: "risk", PageSize: 100, PageToken: token})
				if err != nil || len(resp.GetItems()) != 100 {
					b.Fatalf("ListInventory: %d items, %v", len(resp.GetItems()), err)
				}
				return resp
			}
			b.Run("list-by-risk-first-page", func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					list(b, "")
				}
			})
			// The token of page 500 (50,000 findings in).
			token := ""
			for range 50 {
				resp, err := a.ListInventory(b.Context(), &inventoryv1.ListInventoryRequest{Kind: "finding", Sort: "risk", PageSize: 1000, PageToken: token})
				if err != nil {
					b.Fatal(err)
				}
				token = resp.GetNextPageToken()
			}
			b.Run("list-by-risk-page-500", func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					list(b, token)
				}
			})
			b.Run("list-workloads-page-50", func(b *testing.B) {
				// The 50th page of 100 workloads: a keyset page and its nodes.
				tok := ""
				for range 49 {
					resp, err := a.ListInventory(b.Context(), &inventoryv1.ListInventoryRequest{Kind: "workload", PageSize: 100, PageToken: tok})
					if err != nil {
						b.Fatal(err)
					}
					tok = resp.GetNextPageToken()
				}
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					resp, err := a.ListInventory(b.Context(), &inventoryv1.ListInventoryRequest{Kind: "workload", PageSize: 100, PageToken: tok})
					if err != nil || len(resp.GetItems()) != 100 {
						b.Fatalf("ListInventory: %d items, %v", len(resp.GetItems()), err)
					}
				}
			})
			for _, by := range []inventory.Dimension{inventory.ByEnvironment, inventory.ByOwner, inventory.ByPath} {
				b.Run("coverage-by-"+string(by), func(b *testing.B) {
					opts, _ := inventory.CoverageOptions{By: by}.WithDefaults()
					b.ReportAllocs()
					defer reportCPU(b)()
					for b.Loop() {
						cov, err := a.computeCoverage(b.Context(), opts)
						if err != nil || cov.Total.Workloads != benchWorkloads || cov.Total.StaticOpen != benchFindings || cov.Total.Brokered != benchWorkloads/10 ||
							cov.Total.Nodes != 100 || len(cov.Plan) != inventory.PlanSize {
							b.Fatalf("coverage: %+v, %v", cov.Total, err)
						}
					}
				})
			}
		})
	}
}
