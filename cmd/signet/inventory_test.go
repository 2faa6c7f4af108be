package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
)

const cliNode = "spiffe://example.org/node/a"

// cliEnv is a running server on the given store driver, the admin socket
// flag to reach it, and a second handle on its store for tampering.
type cliEnv struct {
	env    *testenv.Env
	st     *store.Store
	socket string
}

func newCLIEnv(t *testing.T, driver string) *cliEnv {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "signet.db")
	if driver == store.DriverPostgres {
		dsn = storetest.PostgresDSN(t) // skips when PostgreSQL is unreachable
	}
	env := testenv.New(t, func(c *server.Config) { c.StoreDriver, c.StoreDSN = driver, dsn })
	st, err := store.Open(t.Context(), store.Config{Driver: driver, DSN: dsn})
	if err != nil {
		t.Fatalf("open a second store handle: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return &cliEnv{env: env, st: st, socket: env.Server.AdminSocket()}
}

// run executes `signet args... --admin-socket S` in-process.
func (c *cliEnv) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return execCLI(t, append(args, "--admin-socket", c.socket)...)
}

// mustRun is run that fails the test on an error.
func (c *cliEnv) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := c.run(t, args...)
	if err != nil {
		t.Fatalf("signet %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// exec runs raw SQL on the server's database, bypassing the store.
func (c *cliEnv) exec(t *testing.T, query string) {
	t.Helper()
	if _, err := c.st.DB().ExecContext(t.Context(), query); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

func execCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// createEntries creates one entry per SPIFFE ID path under cliNode and
// returns their IDs.
func (c *cliEnv) createEntries(t *testing.T, labels map[string]string, paths ...string) []string {
	t.Helper()
	var ids []string
	for i, p := range paths {
		resp, err := c.env.Admin.CreateEntries(c.env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{{
			SpiffeId: "spiffe://example.org" + p, ParentId: cliNode, Labels: labels,
			Selectors: []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 1000+i)}},
		}}})
		if err != nil || resp.GetResults()[0].GetStatus().GetCode() != 0 {
			t.Fatalf("CreateEntries: %v %v", err, resp)
		}
		ids = append(ids, resp.GetResults()[0].GetEntry().GetId())
	}
	return ids
}

func testFinding(fp, path string) *inventoryv1.Finding {
	return &inventoryv1.Finding{Fingerprint: fp, RuleId: "aws-access-token", Detector: "gitleaks", Kind: "cloud-credential",
		Severity: "critical", Description: "AWS access key", Preview: "AKIA…(20)",
		Locations: []*inventoryv1.FindingLocation{{Path: path, Line: 12, Column: 3}}}
}

func TestReportFindings(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	conn := &adminConn{socket: c.socket}
	resp, err := reportFindings(t.Context(), conn, "", map[string]string{"environment": "ci"}, []string{"/repo"},
		[]*inventoryv1.Finding{testFinding("1234abcd1234abcd", "/repo/main.tf")})
	if err != nil || resp.GetNew() != 1 {
		t.Fatalf("reportFindings() = %v, %v; want 1 new", resp, err)
	}
	out := c.mustRun(t, "inventory", "show", "finding:1234abcd1234abcd", "--json")
	var it itemJSON
	if err := json.Unmarshal([]byte(out), &it); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if it.Environment != "ci" || it.Finding == nil || it.Finding.Locations[0].Host == "" || it.Finding.Status != "open" {
		t.Errorf("reported finding = %+v, want ci, this host, open", it)
	}
	_, err = reportFindings(t.Context(), conn, "h", nil, nil, []*inventoryv1.Finding{testFinding("zz", "/x")})
	if err == nil || !strings.Contains(err.Error(), "findings[0].fingerprint") {
		t.Errorf("reportFindings(bad fingerprint) error = %v, want it to name findings[0].fingerprint", err)
	}
	_, err = reportFindings(t.Context(), &adminConn{socket: filepath.Join(t.TempDir(), "none.sock")}, "h", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "no admin socket") {
		t.Errorf("reportFindings(no server) error = %v", err)
	}
}

func TestInventoryCommands(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	c.env.Attest(cliNode)
	out := c.mustRun(t, "agent", "label", cliNode, "environment=vm", "owner=infra", "zone=a")
	if !strings.Contains(out, "environment=vm owner=infra zone=a") {
		t.Errorf("agent label = %q", out)
	}
	out = c.mustRun(t, "agent", "label", cliNode, "zone-")
	if !strings.Contains(out, "labels: environment=vm owner=infra\n") {
		t.Errorf("agent label zone- = %q, want zone removed", out)
	}
	ids := c.createEntries(t, map[string]string{"owner": "payments"}, "/web", "/batch")
	if _, err := reportFindings(t.Context(), &adminConn{socket: c.socket}, "build-1", map[string]string{"environment": "ci", "owner": "payments"},
		nil, []*inventoryv1.Finding{testFinding("00ff00ff00ff00ff", "/builds/app/.env")}); err != nil {
		t.Fatal(err)
	}
	// The batch entry was created 40 days ago and never used.
	old := time.Now().Add(-40 * 24 * time.Hour).UnixNano()
	c.exec(t, fmt.Sprintf("UPDATE entries SET created_at = %d WHERE id = '%s'", old, ids[1]))

	out = c.mustRun(t, "inventory", "list")
	for _, want := range []string{"ID", "node:" + cliNode, "workload:" + ids[0], "finding:00ff00ff00ff00ff", "AKIA…(20) in /builds/app/.env",
		"vm", "payments", "stale"} {
		if !strings.Contains(out, want) {
			t.Errorf("inventory list lacks %q:\n%s", want, out)
		}
	}
	out = c.mustRun(t, "inventory", "list", "--stale", "30d", "--json")
	var list struct{ Items []itemJSON }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(list.Items) != 1 || list.Items[0].ID != "workload:"+ids[1] || list.Items[0].Environment != "vm" ||
		!strings.HasPrefix(list.Items[0].Flags[0].Message, "never issued an SVID; created ") {
		t.Errorf("list --stale 30d = %+v, want only the unused batch workload (environment vm from its node)", list.Items)
	}
	if out := c.mustRun(t, "inventory", "list", "--stale", "60d", "--json"); strings.Contains(out, ids[1]) {
		t.Errorf("list --stale 60d includes a workload created 40 days ago:\n%s", out)
	}
	out = c.mustRun(t, "inventory", "list", "--kind", "finding", "--csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][0] != "id" || rows[1][0] != "finding:00ff00ff00ff00ff" ||
		rows[1][5] != "environment=ci;owner=payments" {
		t.Errorf("list --csv = %q, %v", rows, err)
	}
	out = c.mustRun(t, "inventory", "list", "--kind", "workload", "--flagged", "--max-x509-ttl", "30m")
	if !strings.Contains(out, "over_long_ttl") || !strings.Contains(out, ids[0]) {
		t.Errorf("list --max-x509-ttl 30m does not flag the 1h default TTL:\n%s", out)
	}

	out = c.mustRun(t, "inventory", "show", ids[0])
	for _, want := range []string{"Entry ID:", ids[0], "Parent ID:", cliNode, "X509-SVID TTL:", "1h", "Last minted:", "Last served:", "Environment:", "vm"} {
		if !strings.Contains(out, want) {
			t.Errorf("inventory show lacks %q:\n%s", want, out)
		}
	}
	out = c.mustRun(t, "inventory", "show", "finding:00ff00ff00ff00ff")
	for _, want := range []string{"Fingerprint:", "Preview:", "AKIA…(20)", "Location:", "build-1:/builds/app/.env:12", "Status:", "open"} {
		if !strings.Contains(out, want) {
			t.Errorf("inventory show finding lacks %q:\n%s", want, out)
		}
	}
	out = c.mustRun(t, "inventory", "resolve", "00ff00ff00ff00ff", "--reason", "rotated")
	if out != "resolved finding:00ff00ff00ff00ff (rotated)\n" {
		t.Errorf("inventory resolve = %q", out)
	}
	if out := c.mustRun(t, "inventory", "list", "--kind", "finding"); strings.Contains(out, "00ff00ff") {
		t.Errorf("resolved finding still listed as open:\n%s", out)
	}
	if out := c.mustRun(t, "inventory", "list", "--kind", "finding", "--all"); !strings.Contains(out, "00ff00ff") {
		t.Errorf("list --all lacks the resolved finding:\n%s", out)
	}
}

func TestInventoryBadInput(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"inventory", "list", "--kind", "secret"}, `--kind "secret": use node, workload, credential or finding`},
		{[]string{"inventory", "list", "--stale", "3x"}, `--stale "3x": want a positive duration such as 30d`},
		{[]string{"inventory", "list", "--stale", "-5d"}, `--stale "-5d"`},
		{[]string{"inventory", "list", "--max-credential-age", "soon"}, `--max-credential-age "soon"`},
		{[]string{"inventory", "list", "--json", "--csv"}, "--json and --csv are mutually exclusive"},
		{[]string{"inventory", "show", "node:spiffe://example.org/nope"}, "node spiffe://example.org/nope not found"},
		{[]string{"inventory", "show", "workload:"}, `nothing after "workload:"`},
		{[]string{"inventory", "resolve", "00ff00ff"}, "--reason is required"},
		{[]string{"agent", "label", cliNode, "novalue"}, `label "novalue": want key=value`},
		{[]string{"agent", "label", cliNode, "Env=x"}, `label key "Env"`},
		{[]string{"coverage", "--by", "team"}, `--by "team": use environment, owner or path`},
		{[]string{"coverage", "--depth", "2"}, "--depth applies only with --by path"},
		{[]string{"coverage", "--active-within", "0d"}, `--active-within "0d"`},
		{[]string{"audit", "list", "--since", "yesterday"}, `--since "yesterday": want an age such as 24h or 7d, an RFC 3339 time`},
		{[]string{"audit", "verify", "--expect-head", "12:zz"}, `--expect-head "12:zz": want SEQ:HASH`},
	}
	for _, tc := range cases {
		_, _, err := c.run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("signet %s: error %v, want one line containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
