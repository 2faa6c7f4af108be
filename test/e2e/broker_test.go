package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signet-id/signet/internal/broker/provider/postgres"
	"github.com/signet-id/signet/internal/store/storetest"
)

// TestBrokerPostgres drives the built binary against the machine's real
// PostgreSQL: a workload gets a database user and queries with it; another
// identity and a request without context are denied and audited; revoking
// the lease ends the open session and refuses new ones; a 5 s lease's role
// is gone after expiry; a server killed with SIGKILL while issuing leaves
// no role behind after restart.
func TestBrokerPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	d := deployBroker(t, brokerSetup{Node: "broker", Policy: `
rules:
  - name: etl-reads-orders
    credentials: [orders-db, slow-db]
    when: subject.id == "spiffe://example.org/etl" && context.ticket.startsWith("CHG-")
`, Broker: "issue_timeout: 2s", Files: map[string]string{"admin.dsn": dsn}, Credentials: `
orders-db:
  provider: postgres
  dsn_file: {{dir}}/admin.dsn
  creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]
  default_ttl: 15m
  max_ttl: 1h
slow-db:
  provider: postgres
  dsn_file: {{dir}}/admin.dsn
  creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}", "SELECT pg_sleep(30)"]
`, Workloads: map[string]string{
		"spiffe://example.org/etl":   fmt.Sprintf("unix:uid:%d", os.Getuid()),
		"spiffe://example.org/other": "unix:uid:65534",
	}})
	adminSock, socket, broker, server := d.adminSock, d.socket, d.broker, d.server
	get := func(args ...string) (map[string]any, string, error) {
		out, errOut, err := signetRun(append([]string{"credential", "get", "--socket", socket, "--broker", broker, "--json"}, args...)...)
		if err != nil {
			return nil, errOut, err
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			return nil, errOut, fmt.Errorf("output %q: %v", out, err)
		}
		return res, errOut, nil
	}
	var grant map[string]any
	eventually(t, 30*time.Second, "credential get", func() error {
		var errOut string
		var err error
		grant, errOut, err = get("orders-db", "--context", "ticket=CHG-1")
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	data := grant["data"].(map[string]any)
	connect := func(ctx context.Context) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.User, cfg.Password = data["username"].(string), data["password"].(string)
		return pgx.ConnectConfig(ctx, cfg)
	}
	ctx := t.Context()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatalf("connect as the brokered user: %v", err)
	}
	defer conn.Close(context.Background())
	var who string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil || who != data["username"] {
		t.Fatalf("query as the brokered user: %q, %v", who, err)
	}

	t.Run("coverage counts the lease as short-lived", func(t *testing.T) {
		var cov struct {
			Total struct {
				Brokered int64 `json:"brokered"`
			} `json:"total"`
		}
		out := signet(t, "coverage", "--admin-socket", adminSock, "--json")
		if err := json.Unmarshal([]byte(out), &cov); err != nil || cov.Total.Brokered != 1 {
			t.Errorf("coverage total.brokered = %d (%v), want 1: %s", cov.Total.Brokered, err, out)
		}
	})

	t.Run("denied and audited", func(t *testing.T) {
		if _, errOut, err := get("orders-db"); err == nil || !strings.Contains(errOut, "unauthorized_client") {
			t.Errorf("without context: %v %q, want unauthorized_client", err, errOut)
		}
		cmd := exec.Command(signetBin, "credential", "get", "orders-db", "--socket", socket, "--broker", broker, "--context", "ticket=CHG-1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unauthorized_client") {
			t.Errorf("as spiffe://example.org/other: %v %s, want unauthorized_client", err, out)
		}
		audit := signet(t, "audit", "list", "--admin-socket", adminSock, "--action", "broker.deny", "--json")
		if !strings.Contains(audit, "spiffe://example.org/other") || strings.Count(audit, "broker.deny") < 2 {
			t.Errorf("broker.deny records: %s", audit)
		}
	})

	t.Run("revoke ends the session", func(t *testing.T) {
		lease := grant["lease_id"].(string)
		if out := signet(t, "lease", "list", "--admin-socket", adminSock, "--credential", "orders-db"); !strings.Contains(out, lease) || !strings.Contains(out, "active") {
			t.Fatalf("lease list:\n%s", out)
		}
		signet(t, "lease", "revoke", "--admin-socket", adminSock, lease)
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
			t.Error("the open session survived lease revoke")
		}
		if c, err := connect(ctx); err == nil {
			c.Close(ctx)
			t.Error("a new connection after lease revoke succeeded")
		}
	})

	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	roleExists := func(name string) bool {
		var ok bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	t.Run("5s lease gone after expiry", func(t *testing.T) {
		g, errOut, err := get("orders-db", "--context", "ticket=CHG-2", "--ttl", "5s")
		if err != nil {
			t.Fatalf("%v: %s", err, errOut)
		}
		role := g["data"].(map[string]any)["username"].(string)
		if !roleExists(role) {
			t.Fatal("role missing right after issue")
		}
		eventually(t, 30*time.Second, "role dropped after expiry", func() error {
			if roleExists(role) {
				return fmt.Errorf("role %s still in pg_roles", role)
			}
			return nil
		})
	})

	t.Run("SIGKILL while issuing leaves no role", func(t *testing.T) {
		cmd := exec.Command(signetBin, "credential", "get", "slow-db", "--socket", socket, "--broker", broker, "--context", "ticket=CHG-3", "--json")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		var lease string
		eventually(t, 20*time.Second, "pending lease", func() error {
			out := signet(t, "lease", "list", "--admin-socket", adminSock, "--credential", "slow-db", "--state", "pending", "--json")
			var res struct {
				Leases []struct{ ID string } `json:"leases"`
			}
			json.Unmarshal([]byte(out), &res)
			if len(res.Leases) == 0 {
				return fmt.Errorf("no pending lease yet")
			}
			lease = res.Leases[0].ID
			return nil
		})
		if err := server.cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		server.cmd.Wait()
		_ = cmd.Wait()
		server = d.startServer(t) // on new ports: only the admin socket is used from here on
		eventually(t, 60*time.Second, "pending lease reconciled", func() error {
			out := signet(t, "lease", "list", "--admin-socket", adminSock, "--credential", "slow-db", "--json")
			if !strings.Contains(out, lease) || !strings.Contains(out, `"revoked"`) {
				return fmt.Errorf("lease list: %s", out)
			}
			return nil
		})
		out := signet(t, "lease", "list", "--admin-socket", adminSock, "--json")
		var res struct {
			Leases []struct {
				ID, State string
			} `json:"leases"`
		}
		json.Unmarshal([]byte(out), &res)
		for _, l := range res.Leases {
			if l.State == "revoked" || l.State == "expired" {
				if roleExists(postgres.RoleName(l.ID)) {
					t.Errorf("lease %s is %s but its role exists", l.ID, l.State)
				}
			}
		}
		// The same leases a page of one at a time, on the server.
		var paged []string
		token := ""
		for range len(res.Leases) + 1 {
			args := []string{"lease", "list", "--admin-socket", adminSock, "--json", "--limit", "1"}
			if token != "" {
				args = append(args, "--page-token", token)
			}
			var page struct {
				Leases []struct{ ID string } `json:"leases"`
				Next   string                `json:"next_page_token"`
			}
			if err := json.Unmarshal([]byte(signet(t, args...)), &page); err != nil || len(page.Leases) > 1 {
				t.Fatalf("lease list --limit 1 = %+v, %v", page, err)
			}
			for _, l := range page.Leases {
				paged = append(paged, l.ID)
			}
			if token = page.Next; token == "" {
				break
			}
		}
		var all []string
		for _, l := range res.Leases {
			all = append(all, l.ID)
		}
		if strings.Join(paged, ",") != strings.Join(all, ",") {
			t.Errorf("lease list by pages of 1 = %v, want %v", paged, all)
		}
	})
}
