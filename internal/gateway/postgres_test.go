package gateway_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/gateway"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

const gatewayID = "spiffe://example.org/gateway"

// brokerEnv is a real server with a broker whose orders-db credential
// leases users of the machine's PostgreSQL and whose partner-api
// credential is a static secret, and an agent issuing this
// process gatewayID; it returns the environment and an X509Source.
func brokerEnv(t testing.TB) (*testenv.Env, *workloadapi.X509Source) {
	t.Helper()
	dsn := storetest.PostgresDSN(t)
	env := testenv.New(t, testenv.WithBroker(t, testenv.Broker{
		Files: map[string]string{"admin.dsn": dsn},
		Credentials: `
orders-db:
  provider: postgres
  dsn_file: {{dir}}/admin.dsn
  creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]
  default_ttl: 15m
partner-api: {provider: static, default_ttl: 15m}
`,
		Policy: `
rules:
  - name: gateway-orders
    credentials: [orders-db, partner-api]
    when: subject.id == "` + gatewayID + `" && context.ticket.startsWith("CHG-")
`}))
	t.Cleanup(func() {
		// Leave no role behind in the shared database.
		for _, c := range []string{"orders-db", "partner-api"} {
			_, _ = env.Server.Broker().RevokeAll(context.Background(), store.LeaseFilter{Credential: c}, "test done")
		}
	})
	return env, agentSource(t, env, gatewayID, 0)
}

// agentSource registers id for this process's uid on the node
// spiffe://example.org/node/gw (X.509-SVIDs of x509TTL seconds; 0: the
// default), starts that node's agent and returns an X509Source on its
// Workload API, closed when the test ends.
func agentSource(t testing.TB, env *testenv.Env, id string, x509TTL int64) *workloadapi.X509Source {
	t.Helper()
	env.CreateEntry(&commonv1.Entry{SpiffeId: id, ParentId: "spiffe://example.org/node/gw", X509TtlSeconds: x509TTL,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}}})
	a := env.StartAgent("spiffe://example.org/node/gw")
	a.AwaitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+a.Config.SocketPath)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// runGateway starts a gateway for yamlText and returns it once every
// route listens.
func runGateway(t testing.TB, yamlText string, src *workloadapi.X509Source, opts gateway.Options) *gateway.Gateway {
	t.Helper()
	cfg, err := gateway.ParseConfig([]byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	n := len(cfg.Ingress) + len(cfg.Egress)
	testenv.WaitFor(t, 10*time.Second, "routes listening", func() error {
		for i := range cfg.Ingress {
			if g.Addr(fmt.Sprintf("ingress[%d]", i)) == nil {
				return fmt.Errorf("ingress[%d] of %d routes not listening", i, n)
			}
		}
		for i := range cfg.Egress {
			if g.Addr(fmt.Sprintf("egress[%d]", i)) == nil {
				return fmt.Errorf("egress[%d] of %d routes not listening", i, n)
			}
		}
		return nil
	})
	return g
}

// TestPostgresEgress runs the gateway in-process against a real server,
// broker, agent and PostgreSQL: an application that logs in with no
// password works as the leased user; a renewal gives new sessions a new
// user while open ones carry on; revoking the lease ends the session and
// the next login gets a fresh lease; a cancel request reaches the
// upstream; a malformed startup packet gets an ErrorResponse.
func TestPostgresEgress(t *testing.T) {
	env, src := brokerEnv(t)
	clock := testclock.New(time.Now())
	logs := &testenv.LogBuffer{}
	g := runGateway(t, fmt.Sprintf(`broker_url: %s
egress:
  - listen: 127.0.0.1:0
    protocol: postgres
    upstream: 127.0.0.1:5432
    credential: orders-db
    context: {ticket: CHG-7}
    upstream_tls: {mode: disable}
`, env.URL("")), src, gateway.Options{Clock: clock, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	addr := g.Addr("egress[0]").String()
	ctx := t.Context()
	// sslmode=prefer: the gateway answers the SSLRequest with 'N'.
	connect := func(t *testing.T) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, "postgres://legacy-app@"+addr+"/whatever?sslmode=prefer&application_name=legacy-report")
		if err != nil {
			t.Fatalf("connect through the gateway: %v\n%s", err, logs)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	who := func(t *testing.T, c *pgx.Conn) (user, app string) {
		t.Helper()
		if err := c.QueryRow(ctx, "SELECT current_user, current_setting('application_name')").Scan(&user, &app); err != nil {
			t.Fatalf("query through the gateway: %v", err)
		}
		return user, app
	}
	activeUsers := func(t *testing.T) map[string]bool {
		t.Helper()
		ls, err := env.Server.Broker().ListLeases(ctx, store.LeaseFilter{Credential: "orders-db", States: []store.LeaseState{store.LeaseActive}})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, l := range ls {
			ids[l.ID] = true
		}
		return ids
	}

	first := connect(t)
	user1, app := who(t, first)
	if user1 == "legacy-app" || user1 == "postgres" || app != "legacy-report" {
		t.Fatalf("through the gateway: current_user %q, application_name %q; want a leased user and the application's name", user1, app)
	}
	if n := len(activeUsers(t)); n != 1 {
		t.Fatalf("%d active leases, want 1", n)
	}

	var user2 string
	t.Run("renewal: new sessions get the new user, open ones carry on", func(t *testing.T) {
		if !clock.WaitForWaiters(1, 10*time.Second) {
			t.Fatal("the lease is not waiting to renew")
		}
		clock.Add(11 * time.Minute) // past two thirds of 15m
		testenv.WaitFor(t, 10*time.Second, "a second lease", func() error {
			if n := len(activeUsers(t)); n != 2 {
				return fmt.Errorf("%d active leases", n)
			}
			return nil
		})
		testenv.WaitFor(t, 10*time.Second, "a new session as the new user", func() error {
			c := connect(t)
			user2, _ = who(t, c)
			if user2 == user1 {
				return fmt.Errorf("still %s", user1)
			}
			return nil
		})
		if u, _ := who(t, first); u != user1 {
			t.Errorf("the session opened before renewal is now %q, want %q", u, user1)
		}
	})

	t.Run("cancel request reaches the upstream", func(t *testing.T) {
		c := connect(t)
		errc := make(chan error, 1)
		go func() { _, err := c.Exec(context.Background(), "SELECT pg_sleep(30)"); errc <- err }()
		admin, err := pgx.Connect(ctx, storetest.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(context.Background())
		testenv.WaitFor(t, 10*time.Second, "the query running", func() error {
			var n int
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").Scan(&n); err != nil || n == 0 {
				return fmt.Errorf("%d running, %v", n, err)
			}
			return nil
		})
		if err := c.PgConn().CancelRequest(ctx); err != nil {
			t.Fatalf("CancelRequest through the gateway: %v", err)
		}
		var pe *pgconn.PgError
		if err := <-errc; !errors.As(err, &pe) || pe.Code != "57014" {
			t.Errorf("cancelled query: %v, want SQLSTATE 57014 (query_canceled)", err)
		}
	})

	t.Run("revoke ends the session; the next login gets a fresh lease", func(t *testing.T) {
		open := connect(t)
		if _, err := env.Server.Broker().RevokeAll(ctx, store.LeaseFilter{Credential: "orders-db"}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := open.Exec(ctx, "SELECT 1"); err == nil {
			t.Error("a session survived the revocation of its lease")
		}
		if _, err := first.Exec(ctx, "SELECT 1"); err == nil {
			t.Error("the first session survived the revocation of its lease")
		}
		c := connect(t)
		if u, _ := who(t, c); u == user1 || u == user2 {
			t.Errorf("after revoke, the new session is %q, a revoked user", u)
		}
	})

	t.Run("malformed startup packets get an ErrorResponse", func(t *testing.T) {
		for name, pkt := range map[string][]byte{
			"too long":    binary.BigEndian.AppendUint32(nil, 1<<20),
			"too short":   binary.BigEndian.AppendUint32(nil, 3),
			"bad version": binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 2<<16),
			"unterminated parameters": append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 13), 3<<16),
				'u', 's', 'e', 'r', 0),
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write(pkt)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			msg, err := pgproto3.NewFrontend(c, c).Receive()
			er, ok := msg.(*pgproto3.ErrorResponse)
			if err != nil || !ok || er.Code != "08P01" || !strings.Contains(er.Message, "startup packet") {
				t.Errorf("%s: got %#v, %v; want ErrorResponse 08P01 about the startup packet", name, msg, err)
			}
			c.Close()
		}
		// The route still serves.
		if u, _ := who(t, connect(t)); u == "" {
			t.Error("no session after malformed packets")
		}
	})

	t.Run("upstream TLS", func(t *testing.T) {
		tg := runGateway(t, fmt.Sprintf(`broker_url: %s
egress:
  - listen: 127.0.0.1:0
    protocol: postgres
    upstream: 127.0.0.1:5432
    credential: orders-db
    context: {ticket: CHG-7}
    upstream_tls: {mode: require}
  - listen: 127.0.0.1:0
    protocol: postgres
    upstream: 127.0.0.1:5432
    credential: orders-db
    context: {ticket: CHG-7}
`, env.URL("")), src, gateway.Options{})
		c, err := pgx.Connect(ctx, "postgres://app@"+tg.Addr("egress[0]").String()+"/x?sslmode=disable")
		if err != nil {
			t.Fatalf("connect through the require route: %v", err)
		}
		defer c.Close(context.Background())
		var ssl bool
		if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
			t.Errorf("upstream session of the require route: ssl %v, %v; want TLS", ssl, err)
		}
		if err := connect(t).QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || ssl {
			t.Error("upstream session of the disable route uses TLS")
		}
		// verify-full (the default) refuses a server certificate the
		// system roots do not vouch for, and says so.
		_, err = pgconn.Connect(ctx, "postgres://app@"+tg.Addr("egress[1]").String()+"/x?sslmode=disable")
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("verify-full route against an unverifiable server: %v, want a certificate error", err)
		}
	})

	t.Run("replication connections are refused", func(t *testing.T) {
		_, err := pgconn.Connect(ctx, "postgres://x@"+addr+"/x?sslmode=disable&replication=database")
		if err == nil || !strings.Contains(err.Error(), "replication connections are not proxied") {
			t.Errorf("replication connection: %v, want a refusal", err)
		}
	})
	if strings.Contains(logs.String(), "password") {
		t.Errorf("the gateway's log mentions a password:\n%s", logs)
	}
}

// TestPostgresEgressBrokerUnreachable: a postgres route whose broker does
// not answer refuses its connections with the reason, and the gateway's
// other routes keep serving.
func TestPostgresEgressBrokerUnreachable(t *testing.T) {
	env := testenv.New(t)
	src := agentSource(t, env, gatewayID, 0)
	// A listener that never answers TLS stands for a broker that is down.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	g := runGateway(t, fmt.Sprintf(`broker_url: https://%s
ingress:
  - listen: 127.0.0.1:0
    forward: %s
    protocol: tcp
    allow: ['subject.id == "%s"']
egress:
  - listen: 127.0.0.1:0
    protocol: postgres
    upstream: 127.0.0.1:5432
    credential: orders-db
    upstream_tls: {mode: disable}
`, dead.Addr(), echo.Addr(), gatewayID), src, gateway.Options{})

	_, err = pgconn.Connect(t.Context(), "postgres://app@"+g.Addr("egress[0]").String()+"/x?sslmode=disable")
	if err == nil || !strings.Contains(err.Error(), "no orders-db credential from the broker") || !strings.Contains(err.Error(), dead.Addr().String()) {
		t.Errorf("connect with the broker down: %v, want a refusal naming the credential and the broker", err)
	}
	c, err := tls.Dial("tcp", g.Addr("ingress[0]").String(), tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeAny()))
	if err != nil {
		t.Fatalf("the ingress route with the broker down: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo through ingress with the broker down: %q, %v", buf, err)
	}
}
