package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signet-id/signet/internal/store/storetest"
)

// TestGatewayPostgresEgress drives the built binary with the real psql
// client and the real PostgreSQL: a server with a broker (on port 0), an
// agent, and `signet gateway run` with a postgres egress route and no
// broker_url (the agent's learned URL is used). psql with no password
// runs a query as the leased user; `signet lease revoke` ends an open
// psql session and an open pgx session; the next psql gets a fresh lease.
func TestGatewayPostgresEgress(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	psqlBin, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("needs the psql client")
	}
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	d := deployBroker(t, brokerSetup{Node: "egress", Policy: `
rules:
  - name: gateway-reads-orders
    credentials: [orders-db]
    when: subject.id == "spiffe://example.org/gateway" && context.purpose == "legacy-report"
`, Files: map[string]string{"admin.dsn": dsn}, Credentials: `
orders-db:
  provider: postgres
  dsn_file: {{dir}}/admin.dsn
  creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]
  default_ttl: 15m
`, Workloads: map[string]string{"spiffe://example.org/gateway": fmt.Sprintf("unix:uid:%d", os.Getuid())}})
	dir, adminSock, socket := d.dir, d.adminSock, d.socket
	t.Cleanup(func() {
		_, _, _ = signetRun("lease", "revoke", "--admin-socket", adminSock, "--credential", "orders-db")
	})

	cfg := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfg, fmt.Sprintf(`agent_socket: %s
egress:
  - listen: 127.0.0.1:0
    protocol: postgres
    upstream: 127.0.0.1:5432
    credential: orders-db
    context: {purpose: legacy-report}
    upstream_tls: {mode: disable}
`, socket))
	gw := start(t, "gateway", "gateway", "run", "--config", cfg, "--log-format", "json")
	gwAddr := routeAddrs(t, gw, 1)["egress[0]"]
	_, port, _ := strings.Cut(gwAddr, ":")

	// psql as a legacy application: no password, nothing in its
	// environment but the connection's host, port, user and database.
	psql := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, psqlBin, append([]string{"-X", "-w", "-h", "127.0.0.1", "-p", port, "-U", "anything", "-d", "test"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
		return cmd
	}
	query := func(q string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := psql(ctx, "-Atc", q).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	var user1 string
	eventually(t, 30*time.Second, "psql through the gateway", func() error {
		var err error
		if user1, err = query("select current_user"); err != nil {
			return fmt.Errorf("%v: %s", err, user1)
		}
		return nil
	})
	if user1 == "anything" || user1 == "postgres" || !strings.Contains(gw.out.String(), `"user":"`+user1+`"`) {
		t.Fatalf("psql through the gateway ran as %q; want the user of the gateway's lease:\n%s", user1, gw.out.String())
	}
	leases := signet(t, "lease", "list", "--admin-socket", adminSock, "--credential", "orders-db", "--json")
	var ll struct {
		Leases []struct {
			SPIFFEID string `json:"spiffe_id"`
			State    string `json:"state"`
		} `json:"leases"`
	}
	if err := json.Unmarshal([]byte(leases), &ll); err != nil || len(ll.Leases) != 1 || ll.Leases[0].SPIFFEID != "spiffe://example.org/gateway" {
		t.Fatalf("lease list: %v %s; want one lease of the gateway", err, leases)
	}

	t.Run("lease revoke ends open psql and pgx sessions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out bytes.Buffer
		long := psql(ctx, "-Atc", "select pg_sleep(120)")
		long.Stdout, long.Stderr = &out, &out
		if err := long.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- long.Wait() }()
		conn, err := pgx.Connect(ctx, "postgres://legacy@"+gwAddr+"/test?sslmode=disable")
		if err != nil {
			t.Fatalf("pgx through the gateway: %v", err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(context.Background())
		eventually(t, 30*time.Second, "psql's query running", func() error {
			var n int
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'select pg_sleep%'", user1).Scan(&n); err != nil || n != 1 {
				return fmt.Errorf("%d sessions, %v", n, err)
			}
			return nil
		})
		signet(t, "lease", "revoke", "--admin-socket", adminSock, "--credential", "orders-db")
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("psql's session survived lease revoke: %s", out.String())
			}
			if !strings.Contains(out.String(), "terminat") && !strings.Contains(out.String(), "closed the connection") {
				t.Errorf("psql after revoke: %v %s; want the session terminated", err, out.String())
			}
		case <-ctx.Done():
			t.Fatalf("psql still running after lease revoke: %s", out.String())
		}
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
			t.Error("the pgx session survived lease revoke")
		}
		user2, err := query("select current_user")
		if err != nil || user2 == user1 || user2 == "" {
			t.Errorf("psql after revoke: %q, %v; want a fresh leased user", user2, err)
		}
	})

	if strings.Contains(gw.out.String(), "password") {
		t.Errorf("the gateway logged something about a password:\n%s", gw.out.String())
	}
}
