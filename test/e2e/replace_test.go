package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/store/storetest"
)

// TestFoundToReplaced drives the built binary on a PostgreSQL store, with
// a broker whose postgres credential talks to the machine's PostgreSQL: a
// .pgpass found by `scan --report` suggests the configured credential;
// `inventory replace` links it; the finding stays linked while the secret
// is present, and while it is gone but the credential unused, and is
// replaced once a workload in its environment has had a lease; coverage
// counts it and the audit log holds the link and the proof.
func TestFoundToReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	storeDSN, adminDSN := storetest.PostgresDSN(t), storetest.PostgresDSN(t)
	d := deployBroker(t, brokerSetup{Node: "db-host", Policy: `
rules:
  - name: etl-gets-orders
    credentials: [orders-db]
    when: subject.id == "spiffe://example.org/etl"
`, Server: fmt.Sprintf("store: {driver: postgres, dsn: %q}", storeDSN), Files: map[string]string{"admin.dsn": adminDSN}, Credentials: `
orders-db:
  provider: postgres
  dsn_file: {{dir}}/admin.dsn
  creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]
  default_ttl: 5m
`, Workloads: map[string]string{"spiffe://example.org/etl": fmt.Sprintf("unix:uid:%d", os.Getuid())}})
	admin := []string{"--admin-socket", d.adminSock}
	// The workload's environment comes from its node.
	eventually(t, 30*time.Second, "label the node", func() error {
		_, errOut, err := signetRun(append([]string{"agent", "label", "spiffe://example.org/node/db-host", "environment=production"}, admin...)...)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})

	tree := t.TempDir()
	pgpass := filepath.Join(tree, "home", "app", ".pgpass")
	secret := "planted-" + secretValue(t)
	if err := os.MkdirAll(filepath.Dir(pgpass), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, pgpass, "orders.db.internal:5432:orders:app:"+secret+"\n")
	scan := func(wantFindings bool) {
		t.Helper()
		out, errOut, err := signetRun(append([]string{"scan", "--report", "--label", "environment=production", tree}, admin...)...)
		if wantFindings != (err != nil) || strings.Contains(out+errOut, secret) {
			t.Fatalf("scan --report: %v (want findings: %v)\n%s\n%s", err, wantFindings, out, errOut)
		}
	}
	scan(true)

	type item struct {
		ID      string `json:"id"`
		Finding struct {
			Status     string `json:"status"`
			Risk       int    `json:"risk"`
			Suggestion struct {
				Provider    string   `json:"provider"`
				Credentials []string `json:"credentials"`
				Text        string   `json:"text"`
			} `json:"suggestion"`
			Replacement *struct {
				State   string   `json:"state"`
				Missing []string `json:"missing"`
			} `json:"replacement"`
		} `json:"finding"`
	}
	var list struct {
		Items []item `json:"items"`
	}
	out := signet(t, append([]string{"inventory", "list", "--kind", "finding", "--sort", "risk", "--json"}, admin...)...)
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("inventory list: %v\n%s", err, out)
	}
	f := list.Items[0]
	if f.Finding.Suggestion.Provider != "postgres" || len(f.Finding.Suggestion.Credentials) != 1 || f.Finding.Suggestion.Credentials[0] != "orders-db" ||
		!strings.Contains(f.Finding.Suggestion.Text, "orders-db") || f.Finding.Risk == 0 || strings.Contains(out, secret) {
		t.Fatalf("the .pgpass finding should suggest the configured orders-db credential: %+v", f.Finding)
	}
	show := func() item {
		t.Helper()
		var it item
		out := signet(t, append([]string{"inventory", "show", f.ID, "--json"}, admin...)...)
		if err := json.Unmarshal([]byte(out), &it); err != nil {
			t.Fatalf("inventory show: %v\n%s", err, out)
		}
		return it
	}

	out = signet(t, append([]string{"inventory", "replace", f.ID, "--with", "credential", "orders-db", "--note", "CHG-42"}, admin...)...)
	if !strings.Contains(out, "linked "+f.ID+" to credential orders-db (linked)") || !strings.Contains(out, "secret still present") {
		t.Fatalf("inventory replace = %q", out)
	}
	if _, errOut, err := signetRun(append([]string{"inventory", "replace", f.ID, "--with", "credential", "nope"}, admin...)...); err == nil ||
		!strings.Contains(errOut, "not configured in broker.credentials (configured: orders-db)") {
		t.Errorf("replace with an unknown credential: %v %s", err, errOut)
	}
	text := signet(t, append([]string{"inventory", "show", f.ID}, admin...)...)
	if !strings.Contains(text, "linked, secret still present") || !strings.Contains(text, "orders-db (CHG-42)") {
		t.Fatalf("inventory show after link:\n%s", text)
	}

	// The credential is used while the secret is still there: not yet.
	var grant map[string]any
	eventually(t, 30*time.Second, "credential get", func() error {
		out, errOut, err := signetRun("credential", "get", "orders-db", "--socket", d.socket, "--broker", d.broker, "--json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return json.Unmarshal([]byte(out), &grant)
	})
	if it := show(); it.Finding.Status != "open" || it.Finding.Replacement == nil || it.Finding.Replacement.State != "linked" ||
		len(it.Finding.Replacement.Missing) != 1 || !strings.Contains(it.Finding.Replacement.Missing[0], "secret still present") {
		t.Fatalf("used but still present: %+v", it.Finding)
	}

	// The file goes; a complete rescan no longer sees it: replaced.
	if err := os.Remove(pgpass); err != nil {
		t.Fatal(err)
	}
	scan(false)
	it := show()
	if it.Finding.Status != "replaced" || it.Finding.Replacement.State != "replaced" || len(it.Finding.Replacement.Missing) != 0 {
		t.Fatalf("after removal, rescan and use: %+v", it.Finding)
	}
	var cov struct {
		Total struct {
			StaticOpen     int64 `json:"static_open"`
			StaticReplaced int64 `json:"static_replaced"`
		} `json:"total"`
		Groups []struct {
			Key            string `json:"key"`
			StaticReplaced int64  `json:"static_replaced"`
		} `json:"groups"`
	}
	out = signet(t, append([]string{"coverage", "--json"}, admin...)...)
	if err := json.Unmarshal([]byte(out), &cov); err != nil || cov.Total.StaticReplaced != 1 || cov.Total.StaticOpen != 0 {
		t.Fatalf("coverage: %v\n%s", err, out)
	}
	audit := signet(t, append([]string{"audit", "list", "--json"}, admin...)...)
	for _, want := range []string{`"action":"finding.link"`, `"action":"finding.replaced"`, `"credential":"orders-db"`, `"note":"CHG-42"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if strings.Contains(audit, secret) {
		t.Error("audit log holds the secret")
	}
}

// TestLinkedButUnused: a secret gone from a rescan whose linked credential
// was never leased stays linked, and says so.
func TestLinkedButUnused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	storeDSN, adminDSN := storetest.PostgresDSN(t), storetest.PostgresDSN(t)
	d := deployBroker(t, brokerSetup{Node: "db-host", Policy: "rules: []\n",
		Server: fmt.Sprintf("store: {driver: postgres, dsn: %q}", storeDSN), Files: map[string]string{"admin.dsn": adminDSN}, Credentials: `
orders-db:
  provider: postgres
  dsn_file: {{dir}}/admin.dsn
  creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]
`})
	admin := []string{"--admin-socket", d.adminSock}
	tree := t.TempDir()
	pgpass := filepath.Join(tree, ".pgpass")
	writeFile(t, pgpass, "db:5432:orders:app:planted-"+secretValue(t)+"\n")
	if _, _, err := signetRun(append([]string{"scan", "--report", "--label", "environment=production", tree}, admin...)...); err == nil {
		t.Fatal("scan found nothing")
	}
	var list struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(signet(t, append([]string{"inventory", "list", "--kind", "finding", "--json"}, admin...)...)), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("inventory list: %v %+v", err, list)
	}
	id := list.Items[0].ID
	signet(t, append([]string{"inventory", "replace", id, "--with", "credential", "orders-db"}, admin...)...)
	if err := os.Remove(pgpass); err != nil {
		t.Fatal(err)
	}
	signet(t, append([]string{"scan", "--report", tree}, admin...)...)
	text := signet(t, append([]string{"inventory", "show", id}, admin...)...)
	if !strings.Contains(text, "gone") ||
		!strings.Contains(text, "no lease of orders-db for a workload in production") || strings.Contains(text, "secret still present") {
		t.Fatalf("gone but unused:\n%s", text)
	}
}
