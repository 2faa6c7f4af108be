package console_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/inventory"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/testenv"
)

// Planted secrets: seeded where a careless page could show them, and
// looked for in every page and JSON twin.
const (
	plantedRevokeData  = "PLANTED-REVOKE-DATA-5f1c"
	plantedLeaseCtx    = "PLANTED-LEASE-CONTEXT-77aa"
	plantedPreview     = "AKIAPLANTEDFULLSECRET0099"
	plantedDetail      = "PLANTED-FINDING-DETAIL-31"
	plantedSealed      = "PLANTED-SEALED-SECRET-e3"
	nodeA              = "spiffe://example.org/node/a"
	nodeB              = "spiffe://example.org/node/b"
	seededEntries      = 120
	seededSelectorUID  = 1042
	seededReports      = 3
	seededOpenFindings = 2
)

// seeded is what seed put into a running server.
type seeded struct {
	env       *testenv.Env
	joinToken string // a pending join token: a secret
	secrets   []string
}

// withConsole turns the console on, on a loopback port the test reads back.
func withConsole(c *server.Config) { c.UIAddress = "127.0.0.1:0" }

// seed fills a real server with what every page shows: two attested
// agents, entries (one admin), findings (one whose stored preview holds
// more than scan prints), leases (with revocation data and context), three
// saved coverage reports a day apart, and the audit records all of this
// writes.
func seed(t *testing.T, env *testenv.Env) seeded {
	t.Helper()
	ctx := env.Ctx()
	env.Attest(nodeA)
	env.Attest(nodeB)
	s := seeded{env: env, joinToken: env.JoinToken("spiffe://example.org/node/pending")}
	s.secrets = []string{s.joinToken, plantedRevokeData, plantedLeaseCtx, plantedPreview, plantedDetail, plantedSealed}

	var entries []*commonv1.Entry
	for i := range seededEntries {
		parent := nodeA
		if i%2 == 1 {
			parent = nodeB
		}
		entries = append(entries, &commonv1.Entry{
			SpiffeId: fmt.Sprintf("spiffe://example.org/app/svc-%03d", i), ParentId: parent, Admin: i == 0,
			Selectors: []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 1000+i)}},
			Labels:    map[string]string{"environment": []string{"prod", "staging", "dev"}[i%3], "owner": "payments"},
		})
	}
	resp, err := env.Admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: entries})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	for _, r := range resp.GetResults() {
		if r.GetStatus().GetCode() != 0 {
			t.Fatalf("CreateEntries: %v", r.GetStatus())
		}
	}

	inv := inventoryv1.NewInventoryClient(env.AdminConn())
	_, err = inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Host: "ci-runner-1", Findings: []*inventoryv1.Finding{
		{RuleId: "github-pat", Detector: "gitleaks", Kind: "github-token", Severity: "high", Description: "GitHub personal access token",
			Preview: "ghp_…(40)", Fingerprint: "00112233445566aa",
			Locations: []*inventoryv1.FindingLocation{{Path: "deploy/ci.env", Line: 3}}},
		{RuleId: "aws-access-token", Detector: "gitleaks", Kind: "aws-access-key", Severity: "critical", Description: "AWS access key",
			Preview: plantedPreview, Fingerprint: "ffeeddccbbaa9988", Details: map[string]string{"note": plantedDetail},
			Locations: []*inventoryv1.FindingLocation{{Path: "scripts/backup.sh", Line: 12}}},
	}})
	if err != nil {
		t.Fatalf("ReportFindings: %v", err)
	}

	// Leases and saved coverage reports are written through a second handle
	// on the server's own SQLite database: the broker's issuance path needs
	// a provider and a policy, which this package does not test.
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(env.DataDir, "server", "signet.db")})
	if err != nil {
		t.Fatalf("open the server's store: %v", err)
	}
	defer st.Close()
	if _, err := st.PutSecret(ctx, "db-static", "k1", []byte(plantedSealed)); err != nil {
		t.Fatalf("PutSecret: %v", err)
	}
	now := time.Now()
	for i, cred := range []string{"orders-db", "payments-api", "orders-db"} {
		l, err := st.CreateLease(ctx, store.Lease{ID: fmt.Sprintf("lease-%d", i), Credential: cred, Provider: "postgres",
			Subject: spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/app/svc-%03d", i)), Node: spiffeid.RequireFromString(nodeA),
			Context: map[string]any{"ticket": plantedLeaseCtx}, State: store.LeasePending, IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatalf("CreateLease: %v", err)
		}
		if i < 2 {
			if _, err := st.ActivateLease(ctx, l.ID, []byte(plantedRevokeData), now.Add(time.Hour)); err != nil {
				t.Fatalf("ActivateLease: %v", err)
			}
		}
	}
	opts, err := inventory.CoverageOptions{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for i, pct := range []float64{20, 45, 70} {
		p := pct
		cov := inventory.Coverage{By: opts.By, ActiveWithinSeconds: int64(opts.ActiveWithin / time.Second),
			Groups: []inventory.CoverageGroup{{Key: "prod", Workloads: 40, SPIFFEActive: int64(pct) / 2, StaticOpen: 3, CoveredPercent: &p}},
			Total:  inventory.CoverageGroup{Key: "total", Workloads: seededEntries, SPIFFEActive: int64(pct), StaticOpen: 5, CoveredPercent: &p}}
		data, err := json.Marshal(cov)
		if err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Duration(i-seededReports) * 24 * time.Hour)
		if _, _, err := st.SaveCoverageReport(ctx, store.CoverageReport{CreatedAt: at, Dimension: opts.Key(), Report: data}); err != nil {
			t.Fatalf("SaveCoverageReport: %v", err)
		}
	}
	return s
}

// consoleURL is the console's base URL on the running server.
func consoleURL(t *testing.T, env *testenv.Env, scheme string) string {
	t.Helper()
	a := env.Server.UIAddr()
	if a == nil {
		t.Fatal("the server has no console listener (UIAddress unset)")
	}
	return scheme + "://" + a.String()
}
