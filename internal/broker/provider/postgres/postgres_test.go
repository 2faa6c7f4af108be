package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/store/storetest"
)

func TestRender(t *testing.T) {
	sts, err := parseStatements([]string{
		"CREATE ROLE {{name}} LOGIN PASSWORD {{ password }} VALID UNTIL {{expiry}}",
		"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}}",
	})
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{phName: pgx.Identifier{"signet_ab"}.Sanitize(), phPassword: quoteLiteral("p'w"), phExpiry: expiryLiteral(time.Date(2026, 12, 2, 1, 2, 3, 4000, time.UTC))}
	want := `CREATE ROLE "signet_ab" LOGIN PASSWORD 'p''w' VALID UNTIL '2026-12-02T01:02:03.000004Z'`
	if got := sts[0].render(vals); got != want {
		t.Errorf("render = %s\nwant     %s", got, want)
	}
	if got := sts[1].render(vals); got != `GRANT SELECT ON ALL TABLES IN SCHEMA public TO "signet_ab"` {
		t.Errorf("render = %s", got)
	}
}

func TestRoleName(t *testing.T) {
	a, b := RoleName("lease-1"), RoleName("lease-2")
	if a == b || len(a) != len("signet_")+24 || !strings.HasPrefix(a, "signet_") {
		t.Errorf("RoleName = %q, %q", a, b)
	}
	if RoleName(`x"; DROP ROLE postgres; --`) == "" || strings.ContainsAny(RoleName(`"`), `"; `) {
		t.Error("RoleName carries its input")
	}
}

// TestRevokeKillsOpenSession holds a session open as the lease's role and
// checks that Revoke terminates it and that a new connection is refused.
func TestRevokeKillsOpenSession(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	p, err := New("orders-db", dsn, Config{CreationStatements: []string{"CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := t.Context()
	req := provider.Request{LeaseID: "lease-open-session", Credential: "orders-db", Subject: spiffeid.RequireFromString("spiffe://example.org/etl"), ExpiresAt: time.Now().Add(time.Hour)}
	c, err := p.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := pgx.ParseConfig(dsn)
	cfg.User, cfg.Password = c.Data["username"], c.Data["password"]
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect as the lease's role: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, provider.Ref{LeaseID: req.LeaseID, Credential: "orders-db"}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the open session still works after Revoke")
	}
	if c2, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		c2.Close(ctx)
		t.Error("a new connection as the revoked role succeeded")
	}
}

// TestIssueFailureCreatesNothing runs a statement list whose second
// statement fails: the role of the first is rolled back.
func TestIssueFailureCreatesNothing(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	p, err := New("orders-db", dsn, Config{CreationStatements: []string{
		"CREATE ROLE {{name}} LOGIN PASSWORD {{password}}",
		"GRANT SELECT ON no_such_table TO {{name}}",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Issue(t.Context(), provider.Request{LeaseID: "lease-fails", ExpiresAt: time.Now().Add(time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "creation_statements[1]") || !strings.Contains(err.Error(), "SQLSTATE") {
		t.Fatalf("Issue = %v, want an error naming creation_statements[1] and the SQLSTATE", err)
	}
	if ok, err := p.Exists(t.Context(), "lease-fails"); err != nil || ok {
		t.Fatalf("Exists after a failed Issue = %v, %v; want false", ok, err)
	}
}

// FuzzParseStatement: any configured statement either is refused or
// renders with every placeholder replaced and no braces left.
func FuzzParseStatement(f *testing.F) {
	f.Add("CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}")
	f.Add("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}}")
	f.Add("{{name}}}}")
	f.Add("'{{password}}'")
	f.Add("{{{{name}}}}")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseStatement(s)
		if err != nil {
			return
		}
		out := st.render(map[string]string{phName: "N", phPassword: "P", phExpiry: "E"})
		if strings.Contains(out, "{{") || strings.Contains(out, "}}") {
			t.Fatalf("parseStatement(%q) accepted; render left braces: %q", s, out)
		}
	})
}
