package inventory_test

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

var (
	now      = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	serverID = spiffeid.RequireFromString("spiffe://example.org/signet/server")
)

func pct(p float64) *float64 { return &p }

// seed fills s with the fixture the expected numbers below are computed
// from by hand.
func seed(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	id := spiffeid.RequireFromString
	for name, labels := range map[string]map[string]string{
		"k8s":  {"environment": "kubernetes", "owner": "platform"},
		"vm":   {"environment": "vm"},
		"bare": nil,
	} {
		_, err := s.CreateNode(ctx, model.Node{SPIFFEID: id("spiffe://example.org/node/" + name), AttestationType: "join_token", Labels: labels})
		must("CreateNode", err)
	}
	entry := func(eid, path, node string, labels map[string]string) model.Entry {
		return model.Entry{ID: eid, SPIFFEID: id("spiffe://example.org" + path), ParentID: id("spiffe://example.org/node/" + node),
			Selectors: []model.Selector{{Type: "unix", Value: "uid:1000"}}, Labels: labels}
	}
	entries := []model.Entry{
		entry("web", "/ns/prod/web", "k8s", map[string]string{"owner": "payments"}),
		entry("api", "/ns/prod/api", "k8s", map[string]string{"owner": "payments", "environment": "k8s"}),
		entry("batch", "/batch/nightly", "vm", map[string]string{"owner": "data"}),
		entry("legacy-app", "/legacy/app", "bare", map[string]string{"owner": "data", "environment": "legacy"}),
		entry("ci-job", "/ci/deploy", "bare", map[string]string{"owner": "payments", "environment": "ci"}),
		// A node alias: not a workload.
		{ID: "alias", SPIFFEID: id("spiffe://example.org/alias/k8s"), ParentID: serverID,
			Selectors: []model.Selector{{Type: "join_token", Value: "x"}}},
	}
	res, err := s.CreateEntries(ctx, entries, true)
	must("CreateEntries", err)
	for _, r := range res {
		must("CreateEntries item", r.Err)
	}
	// Minted for, never served: does not count as an active identity.
	must("TouchEntries", s.TouchEntries(ctx, []string{"alias"}, now))
	for eid, ago := range map[string]time.Duration{"web": time.Hour, "api": 48 * time.Hour, "batch": 3 * time.Hour, "ci-job": 10 * time.Minute} {
		must("TouchEntries", s.TouchEntries(ctx, []string{eid}, now.Add(-ago)))
		must("RecordServed", s.RecordServed(ctx, []store.Served{{EntryID: eid, First: now.Add(-ago), Last: now.Add(-ago)}}))
	}
	find := func(fp, path string) store.Finding {
		return store.Finding{Fingerprint: fp, RuleID: "generic-api-key", Kind: "api-key",
			Locations: []store.FindingLocation{{Path: path, Line: 1}}}
	}
	reports := []store.FindingReport{
		{Host: "ci-1", Labels: map[string]string{"environment": "ci", "owner": "payments"},
			Findings: []store.Finding{find("f1f1f1f1", "/builds/app/.gitlab-ci.yml"), find("f2f2f2f2", "/builds/app/deploy.sh")}},
		{Host: "old-1", Labels: map[string]string{"environment": "legacy", "owner": "data"},
			Findings: []store.Finding{find("f3f3f3f3", "/opt/etl/conf.ini"), find("f4f4f4f4", "/opt/etl/old.ini")}},
		{Host: "dev-1", Findings: []store.Finding{find("f5f5f5f5", "env:AWS_SECRET_ACCESS_KEY")}},
		{Host: "vm-1", Labels: map[string]string{"environment": "vm", "owner": "data"}, Scope: []string{"/etc"},
			Findings: []store.Finding{find("f6f6f6f6", "/etc/app/secret.env")}},
		// Rescanned clean: f6 is gone.
		{Host: "vm-1", Scope: []string{"/etc"}},
	}
	for _, r := range reports {
		_, err := s.ReportFindings(ctx, r)
		must("ReportFindings", err)
	}
	_, err = s.ResolveFinding(ctx, "f4f4f4f4", "rotated")
	must("ResolveFinding", err)
	// Brokered credentials: legacy-app holds two leases of orders-db (one
	// pair) and one of stripe; a workload without an entry holds one; an
	// ended lease and one past its expiry do not count.
	lease := func(lid, cred, subject, node string, exp time.Time, activate bool) {
		l := store.Lease{ID: lid, Credential: cred, Provider: "static", Subject: id("spiffe://example.org" + subject),
			IssuedAt: now.Add(-time.Minute), ExpiresAt: exp}
		if node != "" {
			l.Node = id("spiffe://example.org/node/" + node)
		}
		_, err := s.CreateLease(ctx, l)
		must("CreateLease", err)
		if activate {
			_, err = s.ActivateLease(ctx, lid, nil, time.Time{})
			must("ActivateLease", err)
		}
	}
	lease("l1", "orders-db", "/legacy/app", "bare", now.Add(time.Hour), true)
	lease("l2", "orders-db", "/legacy/app", "bare", now.Add(time.Hour), true)
	lease("l3", "stripe", "/legacy/app", "bare", now.Add(time.Hour), false)
	lease("l4", "stripe", "/ghost", "", now.Add(time.Hour), true)
	lease("l5", "stripe", "/batch/nightly", "vm", now.Add(-time.Second), true)
	lease("l6", "orders-db", "/batch/nightly", "vm", now.Add(time.Hour), true)
	_, err = s.EndLease(ctx, "l6", store.LeaseRevoked, "test")
	must("EndLease", err)
}

func TestCoverageFromSeededStore(t *testing.T) {
	wantEnv := []inventory.CoverageGroup{
		{Key: "ci", Workloads: 1, SPIFFEActive: 1, StaticOpen: 2, CoveredPercent: pct(33.3)},
		{Key: "kubernetes", Workloads: 2, SPIFFEActive: 1, Nodes: 1, CoveredPercent: pct(100)},
		{Key: "legacy", Workloads: 1, StaticOpen: 1, Brokered: 2, CoveredPercent: pct(66.7)},
		{Key: "vm", Workloads: 1, SPIFFEActive: 1, Nodes: 1, CoveredPercent: pct(100)},
		{Key: "unknown", StaticOpen: 1, Brokered: 1, Nodes: 1, CoveredPercent: pct(50)},
	}
	wantOwner := []inventory.CoverageGroup{
		{Key: "data", Workloads: 2, SPIFFEActive: 1, StaticOpen: 1, Brokered: 2, CoveredPercent: pct(75)},
		{Key: "payments", Workloads: 3, SPIFFEActive: 2, StaticOpen: 2, CoveredPercent: pct(50)},
		{Key: "platform", Nodes: 1},
		{Key: "unknown", StaticOpen: 1, Brokered: 1, Nodes: 2, CoveredPercent: pct(50)},
	}
	wantPath := []inventory.CoverageGroup{
		{Key: "/batch", Workloads: 1, SPIFFEActive: 1, CoveredPercent: pct(100)},
		{Key: "/builds", StaticOpen: 2, CoveredPercent: pct(0)},
		{Key: "/ci", Workloads: 1, SPIFFEActive: 1, CoveredPercent: pct(100)},
		{Key: "/ghost", Brokered: 1, CoveredPercent: pct(100)},
		{Key: "/legacy", Workloads: 1, Brokered: 2, CoveredPercent: pct(100)},
		{Key: "/node", Nodes: 3},
		{Key: "/ns", Workloads: 2, SPIFFEActive: 1, CoveredPercent: pct(100)},
		{Key: "/opt", StaticOpen: 1, CoveredPercent: pct(0)},
		{Key: "env:", StaticOpen: 1, CoveredPercent: pct(0)},
	}
	wantTotal := inventory.CoverageGroup{Key: "total", Workloads: 5, SPIFFEActive: 3, StaticOpen: 4, Brokered: 3, Nodes: 3, CoveredPercent: pct(60)}
	cases := []struct {
		name string
		opts inventory.CoverageOptions
		want []inventory.CoverageGroup
	}{
		{"environment", inventory.CoverageOptions{By: inventory.ByEnvironment}, wantEnv},
		{"owner", inventory.CoverageOptions{By: inventory.ByOwner}, wantOwner},
		{"path", inventory.CoverageOptions{By: inventory.ByPath}, wantPath},
	}
	open := map[string]func(t *testing.T) *store.Store{
		"sqlite": func(t *testing.T) *store.Store {
			return openStore(t, store.DriverSQLite, filepath.Join(t.TempDir(), "signet.db"))
		},
		"postgres": func(t *testing.T) *store.Store {
			return openStore(t, store.DriverPostgres, storetest.PostgresDSN(t))
		},
	}
	for backend, openFn := range open {
		t.Run(backend, func(t *testing.T) {
			s := openFn(t)
			seed(t, s)
			in, err := inventory.Load(t.Context(), s, serverID, "", false)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			c := inventory.Classifier{Now: now, DefaultX509TTL: time.Hour, DefaultJWTTTL: 5 * time.Minute}
			items := c.Items(in)
			for _, tc := range cases {
				got, err := inventory.ComputeCoverage(items, now, tc.opts)
				if err != nil {
					t.Fatalf("ComputeCoverage(%s): %v", tc.name, err)
				}
				for _, g := range got.Groups {
					if w, r := g.SPIFFEPercent, g.ReplacedPercent; (g.Workloads == 0) != (w == nil) || (g.StaticOpen+g.StaticReplaced == 0) != (r == nil) ||
						w != nil && math.Abs(*w-float64(g.SPIFFEActive)*100/float64(g.Workloads)) > 0.05 || r != nil && *r != 0 {
						t.Errorf("group %s: spiffe_percent %v, replaced_percent %v for %+v", g.Key, w, r, g)
					}
				}
				percents := cmpopts.IgnoreFields(inventory.CoverageGroup{}, "SPIFFEPercent", "ReplacedPercent")
				if diff := cmp.Diff(tc.want, got.Groups, percents); diff != "" {
					t.Errorf("ComputeCoverage(by %s) groups (-want +got):\n%s", tc.name, diff)
				}
				if diff := cmp.Diff(wantTotal, got.Total, percents); diff != "" {
					t.Errorf("ComputeCoverage(by %s) total (-want +got):\n%s", tc.name, diff)
				}
				// The store's aggregation (and, by path, its pages) gives
				// the same report.
				fromStore, err := c.Coverage(t.Context(), s, serverID, tc.opts)
				if err != nil {
					t.Fatalf("Coverage(%s): %v", tc.name, err)
				}
				if diff := cmp.Diff(got, fromStore); diff != "" {
					t.Errorf("Coverage(by %s) from the store differs from ComputeCoverage (-items +store):\n%s", tc.name, diff)
				}
			}
			// A wider window counts api (issued 2 days ago) as active.
			got, err := inventory.ComputeCoverage(items, now, inventory.CoverageOptions{By: inventory.ByEnvironment, ActiveWithin: 7 * inventory.Day})
			if err != nil {
				t.Fatal(err)
			}
			if k8s, _ := got.Group("kubernetes"); k8s.SPIFFEActive != 2 || got.Total.SPIFFEActive != 4 {
				t.Errorf("with a 7d window: kubernetes %+v, total %+v; want 2 and 4 active", k8s, got.Total)
			}
		})
	}
}

func openStore(t *testing.T, driver, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), store.Config{Driver: driver, DSN: dsn, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("store.Open(%s): %v", driver, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCoverageDelta(t *testing.T) {
	prev := inventory.CoverageGroup{Workloads: 4, SPIFFEActive: 1, StaticOpen: 3, CoveredPercent: pct(25)}
	cur := inventory.CoverageGroup{Workloads: 5, SPIFFEActive: 3, StaticOpen: 1, CoveredPercent: pct(75)}
	got := inventory.Delta(prev, cur)
	want := inventory.CoverageDelta{Workloads: 1, SPIFFEActive: 2, StaticOpen: -2, CoveredPercent: pct(50)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Delta() (-want +got):\n%s", diff)
	}
	if d := inventory.Delta(inventory.CoverageGroup{}, cur); d.CoveredPercent != nil {
		t.Errorf("Delta(no previous percentage) = %v, want nil percentage", *d.CoveredPercent)
	}
}

func TestCoverageOptions(t *testing.T) {
	cases := []struct {
		opts    inventory.CoverageOptions
		wantKey string
		wantErr bool
	}{
		{inventory.CoverageOptions{}, "environment", false},
		{inventory.CoverageOptions{By: inventory.ByPath, PathDepth: 2}, "path depth=2", false},
		{inventory.CoverageOptions{By: inventory.ByOwner, ActiveWithin: 7 * inventory.Day}, "owner active=7d", false},
		{inventory.CoverageOptions{By: "team"}, "", true},
		{inventory.CoverageOptions{PathDepth: 17}, "", true},
		{inventory.CoverageOptions{ActiveWithin: -time.Hour}, "", true},
	}
	for _, c := range cases {
		o, err := c.opts.WithDefaults()
		if (err != nil) != c.wantErr {
			t.Errorf("WithDefaults(%+v) error = %v, want error %v", c.opts, err, c.wantErr)
			continue
		}
		if err == nil && o.Key() != c.wantKey {
			t.Errorf("Key(%+v) = %q, want %q", c.opts, o.Key(), c.wantKey)
		}
	}
}
