package server_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/testenv"
)

// inventoryEnv starts a server on a SQLite store at a known path and
// returns inventory and audit clients on its admin socket, and a second
// handle on its store for tampering.
func inventoryEnv(t *testing.T) (*testenv.Env, inventoryv1.InventoryClient, inventoryv1.AuditClient, *store.Store) {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "signet.db")
	env := testenv.New(t, func(c *server.Config) { c.StoreDSN = dsn })
	cc, err := grpc.NewClient("unix://"+env.Server.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	st, err := store.Open(t.Context(), store.Config{DSN: dsn})
	if err != nil {
		t.Fatalf("open a second store handle: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return env, inventoryv1.NewInventoryClient(cc), inventoryv1.NewAuditClient(cc), st
}

func wantInvalid(t *testing.T, what string, err error, field string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), field) {
		t.Errorf("%s: error %v, want InvalidArgument naming %q", what, err, field)
	}
}

func pbFinding(fp, path string) *inventoryv1.Finding {
	return &inventoryv1.Finding{Fingerprint: fp, RuleId: "github-pat", Kind: "token", Severity: "high", Preview: "ghp_…(40)",
		Locations: []*inventoryv1.FindingLocation{{Path: path, Line: 4, Commit: "c0ffee", Date: "2024-01-02T03:04:05Z"}}}
}

func itemIDs(items []*inventoryv1.InventoryItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.GetId())
	}
	return out
}

func TestInventoryAPI(t *testing.T) {
	env, inv, _, _ := inventoryEnv(t)
	ctx := env.Ctx()
	a := env.Attest(nodeA)
	labelled, err := inv.SetNodeLabels(ctx, &inventoryv1.SetNodeLabelsRequest{SpiffeId: nodeA,
		Set: map[string]string{"environment": "k8s", "owner": "platform"}})
	if err != nil {
		t.Fatalf("SetNodeLabels: %v", err)
	}
	if labelled.GetEnvironment() != "kubernetes" || labelled.GetOwner() != "platform" {
		t.Errorf("SetNodeLabels() = %v, want environment kubernetes, owner platform", labelled)
	}
	web := createEntry(t, env, &commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: nodeA, X509TtlSeconds: 48 * 3600,
		Labels: map[string]string{"owner": "payments"}, Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1000"}}})
	api := createEntry(t, env, &commonv1.Entry{SpiffeId: "spiffe://example.org/api", ParentId: nodeA,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:1001"}}})
	if res, _ := sign(t, env, a, web.GetId()); res.GetStatus().GetCode() != 0 {
		t.Fatalf("sign: %v", res.GetStatus())
	}
	rep, err := inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Host: "ci-7", Labels: map[string]string{"environment": "ci"},
		Findings: []*inventoryv1.Finding{pbFinding("aaaa0000bbbb1111", "/repo/.env"), pbFinding("cccc2222dddd3333", "/repo/ci.yml")}})
	if err != nil || rep.GetNew() != 2 {
		t.Fatalf("ReportFindings() = %v, %v; want 2 new", rep, err)
	}

	all, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{})
	if err != nil {
		t.Fatalf("ListInventory: %v", err)
	}
	// Kinds in order; within a kind the store's order (workloads by entry ID).
	workloads := []string{"workload:" + api.GetId(), "workload:" + web.GetId()}
	slices.Sort(workloads)
	want := append(append([]string{"node:" + nodeA}, workloads...), "finding:aaaa0000bbbb1111", "finding:cccc2222dddd3333")
	if got := itemIDs(all.GetItems()); !slices.Equal(got, want) {
		t.Errorf("ListInventory() = %v, want %v", got, want)
	}
	flagged, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Kind: "workload", FlaggedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := flagged.GetItems(); len(got) != 1 || got[0].GetId() != "workload:"+web.GetId() ||
		got[0].GetFlags()[0].GetCode() != "over_long_ttl" || got[0].GetEnvironment() != "kubernetes" ||
		got[0].GetWorkload().GetLastIssuedAt() == 0 {
		t.Errorf("ListInventory(flagged workloads) = %v, want web, over_long_ttl, kubernetes from its node, issued", got)
	}
	// A stricter TTL limit flags api too (the server default, 1h, over 30m).
	strict, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Kind: "workload", FlaggedOnly: true,
		Thresholds: &inventoryv1.Thresholds{MaxX509TtlSeconds: 1800}})
	if err != nil || len(strict.GetItems()) != 2 {
		t.Errorf("ListInventory(max x509 30m) = %v, %v; want both workloads", itemIDs(strict.GetItems()), err)
	}
	if creds, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Kind: "credential"}); err != nil || len(creds.GetItems()) != 0 {
		t.Errorf("ListInventory(credential) = %v, %v; want none (no broker yet)", creds, err)
	}

	for _, id := range []string{"node:" + nodeA, nodeA, "workload:" + web.GetId(), web.GetId(), "spiffe://example.org/web",
		"finding:aaaa0000bbbb1111", "AAAA0000BBBB1111"} {
		it, err := inv.GetInventoryItem(ctx, &inventoryv1.GetInventoryItemRequest{Id: id})
		if err != nil {
			t.Errorf("GetInventoryItem(%q): %v", id, err)
			continue
		}
		if !slices.Contains(want, it.GetId()) {
			t.Errorf("GetInventoryItem(%q) = %s", id, it.GetId())
		}
	}
	f, err := inv.GetInventoryItem(ctx, &inventoryv1.GetInventoryItemRequest{Id: "finding:aaaa0000bbbb1111"})
	if err != nil {
		t.Fatal(err)
	}
	loc := f.GetFinding().GetLocations()[0]
	if f.GetEnvironment() != "ci" || loc.GetHost() != "ci-7" || loc.GetDate() != "2024-01-02T03:04:05Z" ||
		f.GetFinding().GetStatus() != "open" || f.GetFlags()[0].GetCode() != "old_static_credential" {
		t.Errorf("finding = %v, want ci, host ci-7, the commit date, open, flagged old (committed 2024)", f)
	}
	for id, code := range map[string]codes.Code{
		"node:spiffe://example.org/node/zz": codes.NotFound, "no-such-thing": codes.NotFound,
		"credential:x": codes.NotFound, "node:not-an-id": codes.InvalidArgument, "": codes.InvalidArgument,
	} {
		_, err := inv.GetInventoryItem(ctx, &inventoryv1.GetInventoryItemRequest{Id: id})
		wantCode(t, "GetInventoryItem("+id+")", err, code)
	}

	resolved, err := inv.ResolveFinding(ctx, &inventoryv1.ResolveFindingRequest{Id: "finding:cccc2222dddd3333", Reason: "rotated"})
	if err != nil || resolved.GetFinding().GetStatus() != "resolved" {
		t.Errorf("ResolveFinding() = %v, %v", resolved, err)
	}
	open, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Kind: "finding"})
	if err != nil || len(open.GetItems()) != 1 {
		t.Errorf("ListInventory(finding) = %v, %v; want the one open finding", itemIDs(open.GetItems()), err)
	}
	withClosed, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Kind: "finding", IncludeClosed: true})
	if err != nil || len(withClosed.GetItems()) != 2 {
		t.Errorf("ListInventory(finding, closed) = %v, %v; want both", itemIDs(withClosed.GetItems()), err)
	}
}

func TestInventoryBadInput(t *testing.T) {
	env, inv, audit, _ := inventoryEnv(t)
	ctx := env.Ctx()
	_, err := inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Kind: "secrets"})
	wantInvalid(t, "ListInventory(kind)", err, "kind")
	_, err = inv.ListInventory(ctx, &inventoryv1.ListInventoryRequest{Thresholds: &inventoryv1.Thresholds{StaleSeconds: -1}})
	wantInvalid(t, "ListInventory(thresholds)", err, "thresholds.stale_seconds")
	bad := pbFinding("nothex", "/a")
	_, err = inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Host: "h", Findings: []*inventoryv1.Finding{bad}})
	wantInvalid(t, "ReportFindings(fingerprint)", err, "findings[0].fingerprint")
	badDate := pbFinding("00112233", "/a")
	badDate.Locations[0].Date = "yesterday"
	_, err = inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Host: "h", Findings: []*inventoryv1.Finding{badDate}})
	wantInvalid(t, "ReportFindings(date)", err, "findings[0].locations[0].date")
	_, err = inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Findings: []*inventoryv1.Finding{pbFinding("00112233", "/a")}})
	wantInvalid(t, "ReportFindings(host)", err, "host")
	_, err = inv.SetNodeLabels(ctx, &inventoryv1.SetNodeLabelsRequest{SpiffeId: nodeA, Set: map[string]string{"Env": "x"}})
	wantInvalid(t, "SetNodeLabels(key)", err, "label key")
	_, err = inv.SetNodeLabels(ctx, &inventoryv1.SetNodeLabelsRequest{SpiffeId: "web"})
	wantInvalid(t, "SetNodeLabels(id)", err, "spiffe_id")
	_, err = inv.CreateCoverageReport(ctx, &inventoryv1.CreateCoverageReportRequest{By: "team"})
	wantInvalid(t, "CreateCoverageReport(by)", err, "by")
	_, err = inv.CreateCoverageReport(ctx, &inventoryv1.CreateCoverageReportRequest{By: "owner", PathDepth: 2})
	wantInvalid(t, "CreateCoverageReport(depth)", err, "path_depth")
	_, err = audit.ListAudit(ctx, &inventoryv1.ListAuditRequest{PageSize: -1})
	wantInvalid(t, "ListAudit(page_size)", err, "page_size")
	_, err = audit.VerifyAudit(ctx, &inventoryv1.VerifyAuditRequest{ExpectSeq: 3})
	wantInvalid(t, "VerifyAudit(head)", err, "expect_hash")
}

func TestCoverageReportsKeepTheTrend(t *testing.T) {
	env, inv, _, _ := inventoryEnv(t)
	ctx := env.Ctx()
	a := env.Attest(nodeA)
	if _, err := inv.SetNodeLabels(ctx, &inventoryv1.SetNodeLabelsRequest{SpiffeId: nodeA, Set: map[string]string{"environment": "vm"}}); err != nil {
		t.Fatal(err)
	}
	web := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))
	_, err := inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Host: "vm-1", Labels: map[string]string{"environment": "vm"},
		Findings: []*inventoryv1.Finding{pbFinding("0a0a0a0a", "/etc/app.env")}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := inv.CreateCoverageReport(ctx, &inventoryv1.CreateCoverageReportRequest{})
	if err != nil {
		t.Fatalf("CreateCoverageReport: %v", err)
	}
	if first.GetPreviousId() != 0 || first.GetTotal().GetDelta() != nil || len(first.GetGroups()) != 1 ||
		first.GetGroups()[0].GetKey() != "vm" || first.GetTotal().GetCoveredPercent() != 0 || first.GetTotal().CoveredPercent == nil {
		t.Errorf("first report = %v, want one vm group at 0%% and no previous", first)
	}
	// The workload is served its SVID and the secret is rotated away.
	sign(t, env, a, web.GetId())
	now := time.Now().Unix()
	if _, err := a.Client.Sync(ctx, &agentv1.SyncRequest{Served: []*agentv1.ServedEntry{
		{EntryId: web.GetId(), FirstServedAt: now, LastServedAt: now}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := inv.ResolveFinding(ctx, &inventoryv1.ResolveFindingRequest{Id: "0a0a0a0a", Reason: "rotated"}); err != nil {
		t.Fatal(err)
	}
	second, err := inv.CreateCoverageReport(ctx, &inventoryv1.CreateCoverageReportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d := second.GetTotal().GetDelta()
	if second.GetPreviousId() != first.GetId() || d.GetSpiffeActive() != 1 || d.GetStaticOpen() != -1 || d.GetCoveredPercent() != 100 {
		t.Errorf("second report = %v, want delta +1 active, -1 static, +100 points against the first", second)
	}
	// Another view has its own history.
	byOwner, err := inv.CreateCoverageReport(ctx, &inventoryv1.CreateCoverageReportRequest{By: "owner"})
	if err != nil || byOwner.GetPreviousId() != 0 {
		t.Errorf("first owner report = %v, %v; want no previous", byOwner, err)
	}
	hist, err := inv.ListCoverageReports(ctx, &inventoryv1.ListCoverageReportsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := hist.GetReports(); len(got) != 2 || got[0].GetId() != second.GetId() || got[0].GetTotal().GetDelta() == nil ||
		got[1].GetTotal().GetDelta() != nil {
		t.Errorf("ListCoverageReports() = %v, want both environment reports, newest first, the newest with a delta", got)
	}
}

func TestAuditAPI(t *testing.T) {
	env, inv, audit, st := inventoryEnv(t)
	ctx := env.Ctx()
	env.Attest(nodeA)
	createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))
	if _, err := inv.ReportFindings(ctx, &inventoryv1.ReportFindingsRequest{Host: "h",
		Findings: []*inventoryv1.Finding{pbFinding("abcdef0123456789", "/srv/x")}}); err != nil {
		t.Fatal(err)
	}
	var all []*inventoryv1.AuditRecord
	req := &inventoryv1.ListAuditRequest{PageSize: 2}
	for {
		page, err := audit.ListAudit(ctx, req)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		all = append(all, page.GetRecords()...)
		if page.GetNextAfterSeq() == 0 {
			break
		}
		req.AfterSeq = page.GetNextAfterSeq()
	}
	var actions []string
	for i, r := range all {
		if r.GetSeq() != int64(i+1) {
			t.Errorf("record %d has seq %d", i, r.GetSeq())
		}
		actions = append(actions, r.GetAction())
	}
	for _, want := range []string{"node.attest", "entry.create", "finding.report", "finding.scan"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit actions %v lack %s", actions, want)
		}
	}
	only, err := audit.ListAudit(ctx, &inventoryv1.ListAuditRequest{Action: "finding.report"})
	if err != nil || len(only.GetRecords()) != 1 || only.GetRecords()[0].GetDetail()["fingerprint"] != "abcdef01" ||
		!strings.HasPrefix(only.GetRecords()[0].GetActor(), "admin:uid:") {
		t.Errorf("ListAudit(finding.report) = %v, %v", only, err)
	}

	v, err := audit.VerifyAudit(ctx, &inventoryv1.VerifyAuditRequest{})
	if err != nil || !v.GetOk() || v.GetHeadSeq() != int64(len(all)) || len(v.GetHeadHash()) != 32 {
		t.Fatalf("VerifyAudit() = %v, %v; want ok with head %d", v, err, len(all))
	}
	// Cut off the newest record: the chain left is intact, but the head
	// kept from before names what is missing.
	if _, err := st.DB().ExecContext(ctx, "DELETE FROM audit_log WHERE seq = ?", v.GetHeadSeq()); err != nil {
		t.Fatal(err)
	}
	if plain, err := audit.VerifyAudit(ctx, &inventoryv1.VerifyAuditRequest{}); err != nil || !plain.GetOk() {
		t.Errorf("VerifyAudit() after truncation = %v, %v; want ok (undetectable without a head)", plain, err)
	}
	cut, err := audit.VerifyAudit(ctx, &inventoryv1.VerifyAuditRequest{ExpectSeq: v.GetHeadSeq(), ExpectHash: v.GetHeadHash()})
	if err != nil || cut.GetOk() || cut.GetFirstBad() != v.GetHeadSeq() || !strings.Contains(cut.GetProblem(), "truncated") {
		t.Errorf("VerifyAudit(head) after truncation = %v, %v; want record %d missing", cut, err, v.GetHeadSeq())
	}
}

func TestInventoryOverTLSNeedsAdminSVID(t *testing.T) {
	env := testenv.New(t)
	a := env.Attest(nodeA)
	_, err := inventoryv1.NewInventoryClient(anonConn(t, env)).ListInventory(env.Ctx(), &inventoryv1.ListInventoryRequest{})
	wantCode(t, "inventory over TLS without client cert", err, codes.Unauthenticated)
	_, err = inventoryv1.NewInventoryClient(agentConnRaw(a)).ListInventory(env.Ctx(), &inventoryv1.ListInventoryRequest{})
	wantCode(t, "agent SVID calling inventory", err, codes.PermissionDenied)
	_, err = inventoryv1.NewAuditClient(agentConnRaw(a)).VerifyAudit(env.Ctx(), &inventoryv1.VerifyAuditRequest{})
	wantCode(t, "agent SVID calling audit", err, codes.PermissionDenied)

	admin := createEntry(t, env, entry("spiffe://example.org/ops", nodeA, true))
	key, csr := testenv.NewCSR(t)
	resp, err := a.Client.SignX509SVIDs(env.Ctx(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: admin.GetId(), Csr: csr}}})
	if err != nil {
		t.Fatal(err)
	}
	conn := env.Dial(testenv.SVIDFromChain(t, resp.GetResults()[0].GetCertChain(), key))
	if _, err := inventoryv1.NewInventoryClient(agentConnRaw(conn)).ListInventory(env.Ctx(), &inventoryv1.ListInventoryRequest{}); err != nil {
		t.Errorf("ListInventory with an admin SVID: %v", err)
	}
	if _, err := inventoryv1.NewAuditClient(agentConnRaw(conn)).VerifyAudit(env.Ctx(), &inventoryv1.VerifyAuditRequest{}); err != nil {
		t.Errorf("VerifyAudit with an admin SVID: %v", err)
	}
}
