package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/mysql/mysqltest"
)

func TestParseGrant(t *testing.T) {
	good := map[string]string{
		"SELECT ON reports.*":                         "GRANT SELECT ON `reports`.* TO 'u'@'%'",
		"select, insert ON reports.orders":            "GRANT SELECT, INSERT ON `reports`.`orders` TO 'u'@'%'",
		"SELECT,  SHOW   VIEW on `my-db`.`t`":         "GRANT SELECT, SHOW VIEW ON `my-db`.`t` TO 'u'@'%'",
		"CREATE TEMPORARY TABLES, LOCK TABLES ON a.*": "GRANT CREATE TEMPORARY TABLES, LOCK TABLES ON `a`.* TO 'u'@'%'",
		"SELECT ON *.*":                               "GRANT SELECT ON *.* TO 'u'@'%'",
	}
	for in, want := range good {
		g, err := parseGrant(in)
		if err != nil {
			t.Errorf("parseGrant(%q) error = %v", in, err)
			continue
		}
		if got := g.statement("'u'@'%'"); got != want {
			t.Errorf("parseGrant(%q) renders %s, want %s", in, got, want)
		}
	}
	bad := map[string]string{
		"ALL ON reports.*":                           "ALL is refused",
		"ALL PRIVILEGES ON reports.*":                "ALL is refused",
		"SUPER ON *.*":                               `"SUPER" is not one`,
		"GRANT OPTION ON reports.*":                  `"GRANT OPTION"`,
		"SELECT ON reports.* TO 'root'@'%'":          "want PRIVILEGE",
		"SELECT ON reports.*; DROP USER root":        "want PRIVILEGE",
		"SELECT ON reports":                          "want PRIVILEGE",
		"SELECT (col) ON reports.t":                  `"SELECT (COL)"`,
		"SELECT ON *.t":                              "needs a database",
		"SELECT ON `a`b`.*":                          "want PRIVILEGE",
		"":                                           "want PRIVILEGE",
		"SELECT ON reports.* WITH GRANT OPTION":      "want PRIVILEGE",
		"SELECT ON reports.*\nGRANT ALL ON *.* TO x": "want PRIVILEGE",
	}
	for in, want := range bad {
		if _, err := parseGrant(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseGrant(%q) error = %v, want one containing %q", in, err, want)
		}
	}
	if _, err := parseGrants(nil); err == nil || !strings.Contains(err.Error(), "grants: at least one") {
		t.Errorf("parseGrants(nil) error = %v", err)
	}
	if _, err := parseGrants([]string{"SELECT ON a.*", "SUPER ON *.*"}); err == nil || !strings.Contains(err.Error(), "grants[1]") {
		t.Errorf("parseGrants error = %v, want it to name grants[1]", err)
	}
}

func TestUserName(t *testing.T) {
	a, b := UserName("lease-1"), UserName("lease-2")
	if a == b || len(a) != 31 || !strings.HasPrefix(a, "signet_") {
		t.Errorf("UserName = %q, %q", a, b)
	}
	if strings.ContainsAny(UserName(`x'; DROP USER root; --`), `'"; `) {
		t.Error("UserName carries its input")
	}
}

// FuzzParseGrant: a grant is either refused or renders a single GRANT
// statement with no quote, semicolon or line break outside backquoted
// names.
func FuzzParseGrant(f *testing.F) {
	for _, s := range []string{"SELECT ON reports.*", "SELECT, INSERT ON `a b`.`c`", "ALL ON *.*", "SELECT ON a.*; DROP USER x", "SELECT ON `a``b`.*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := parseGrant(s)
		if err != nil {
			return
		}
		out := g.statement("ACCOUNT")
		// Strip backquoted names; what remains is Signet's own text.
		var rest strings.Builder
		in := false
		for i := 0; i < len(out); i++ {
			if out[i] == '`' {
				if in && i+1 < len(out) && out[i+1] == '`' {
					i++
					continue
				}
				in = !in
				continue
			}
			if !in {
				rest.WriteByte(out[i])
			}
		}
		if in || strings.ContainsAny(rest.String(), "';\n\r\"\\") || !strings.HasPrefix(out, "GRANT ") || !strings.HasSuffix(out, " TO ACCOUNT") {
			t.Fatalf("parseGrant(%q) accepted; renders %q", s, out)
		}
	})
}

// fixture makes a database with two tables and a second database, dropped
// when the test ends.
func fixture(t *testing.T) (dsn, db string) {
	t.Helper()
	dsn = mysqltest.DSN(t)
	admin := mysqltest.Open(t, dsn)
	db = "signet_t_" + strings.ToLower(rand.Text()[:10])
	for _, s := range []string{
		"CREATE DATABASE " + db, "CREATE TABLE " + db + ".orders (id INT)", "INSERT INTO " + db + ".orders VALUES (1), (2)",
		"CREATE DATABASE " + db + "_other", "CREATE TABLE " + db + "_other.secrets (v TEXT)",
	} {
		if _, err := admin.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + db)
		_, _ = admin.Exec("DROP DATABASE IF EXISTS " + db + "_other")
	})
	return dsn, db
}

func newProvider(t *testing.T, dsn string, grants ...string) *Provider {
	t.Helper()
	p, err := New("reports-db", dsn, Config{Grants: grants})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func request(id string) provider.Request {
	return provider.Request{LeaseID: id, Credential: "reports-db", Subject: spiffeid.RequireFromString("spiffe://example.org/etl"), ExpiresAt: time.Now().Add(time.Hour)}
}

// TestGrantsAreEnforced: the lease's user reads what SELECT ON db.*
// allows and nothing else; Revoke kills its open session and refuses new
// ones.
func TestGrantsAreEnforced(t *testing.T) {
	dsn, db := fixture(t)
	p := newProvider(t, dsn, "SELECT ON "+db+".*")
	ctx := t.Context()
	c, err := p.Issue(ctx, request("lease-grants"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Revoke(context.Background(), provider.Ref{LeaseID: "lease-grants"})
	if c.Data["username"] != UserName("lease-grants") || c.Data["password"] == "" || len(c.Data) != 2 {
		t.Fatalf("data = %v, want username and password", c.Data)
	}
	user := mysqltest.Open(t, mysqltest.WithUser(t, dsn, c.Data["username"], c.Data["password"]))
	user.SetMaxOpenConns(1)
	conn, err := user.Conn(ctx)
	if err != nil {
		t.Fatalf("connect as the lease's user: %v", err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+db+".orders").Scan(&n); err != nil || n != 2 {
		t.Fatalf("SELECT the granted table = %d, %v; want 2 rows", n, err)
	}
	for _, q := range []string{
		"INSERT INTO " + db + ".orders VALUES (3)",
		"SELECT * FROM " + db + "_other.secrets",
		"SELECT * FROM mysql.user",
		"CREATE USER 'x'@'%'",
	} {
		if _, err := conn.ExecContext(ctx, q); err == nil {
			t.Errorf("%s succeeded as the lease's user, want it denied", q)
		}
	}
	if err := p.Revoke(ctx, provider.Ref{LeaseID: "lease-grants", Credential: "reports-db"}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&n); err == nil {
		t.Error("the open session still works after Revoke")
	}
	if err := pingAs(t, dsn, c); err == nil {
		t.Error("a new connection as the revoked user succeeded")
	}
	if ok, err := p.Exists(ctx, "lease-grants"); err != nil || ok {
		t.Errorf("Exists after Revoke = %v, %v", ok, err)
	}
}

func pingAs(t *testing.T, dsn string, c provider.Credential) error {
	db, err := sql.Open("mysql", mysqltest.WithUser(t, dsn, c.Data["username"], c.Data["password"]))
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(t.Context())
}

// TestIssueFailureCreatesNothing: a grant on a database the admin may not
// grant (here: one whose name is refused by the server) drops the user
// again, and the error names the grant and the server's message.
func TestIssueFailureCreatesNothing(t *testing.T) {
	dsn := mysqltest.DSN(t)
	p := newProvider(t, dsn, "SELECT ON mysql.*", "EXECUTE ON `"+strings.Repeat("x", 70)+"`.*")
	_, err := p.Issue(t.Context(), request("lease-fails"))
	if err == nil || !strings.Contains(err.Error(), "grants[1]") || !strings.Contains(err.Error(), "mysql credential reports-db") || !strings.Contains(err.Error(), "(error ") {
		t.Fatalf("Issue = %v, want an error naming the credential, grants[1] and the server's error", err)
	}
	if ok, err := p.Exists(t.Context(), "lease-fails"); err != nil || ok {
		t.Fatalf("Exists after a failed Issue = %v, %v; want false", ok, err)
	}
}

// TestUnreachableServer: the error names the credential and the address,
// never the DSN's password.
func TestUnreachableServer(t *testing.T) {
	p := newProvider(t, "admin:hunter2-secret@tcp(127.0.0.1:1)/", "SELECT ON a.*")
	_, err := p.Issue(t.Context(), request("lease-x"))
	if err == nil || !strings.Contains(err.Error(), "mysql credential reports-db") || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("Issue = %v, want an unreachable-server error naming the credential", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error carries the password: %v", err)
	}
}

func TestNewRefusesBadDSN(t *testing.T) {
	_, err := New("c", "user:secret@@bogus(", Config{Grants: []string{"SELECT ON a.*"}})
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "dsn_file") {
		t.Fatalf("New = %v, want a dsn_file error without the DSN", err)
	}
}
