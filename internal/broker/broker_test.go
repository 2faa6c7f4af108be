package broker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/postgres"
	"github.com/signet-id/signet/internal/broker/seal"
	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

const testPolicy = `
rules:
  - name: etl-reads-orders
    credentials: [orders-db]
    when: >
      subject.id == "spiffe://example.org/etl" &&
      context.ticket.startsWith("CHG-")
    ttl: 10m
  - name: billing-gets-stripe
    credentials: [stripe]
    when: subject.id == "spiffe://example.org/billing"
`

var (
	etl     = spiffeid.RequireFromString("spiffe://example.org/etl")
	billing = spiffeid.RequireFromString("spiffe://example.org/billing")
	other   = spiffeid.RequireFromString("spiffe://example.org/other")
	node    = spiffeid.RequireFromString("spiffe://example.org/signet/agent/join_token/a")
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	b      *broker.Broker
	st     *store.Store
	dbPath string
	clock  *clock
	pg     *postgres.Provider // nil without the postgres credential
	pgDSN  string
	reg    *prometheus.Registry
}

func newSealer(t testing.TB) *seal.Sealer {
	k := make([]byte, seal.KeySize)
	rand.Read(k)
	s, err := seal.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func buildCredential(t testing.TB, deps provider.Deps, section string) broker.Credential {
	t.Helper()
	reg, err := builtin.CredentialProviders()
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(section), &n); err != nil {
		t.Fatal(err)
	}
	m := n.Content[0]
	var prov string
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Value == "provider" {
			prov = m.Content[i+1].Value
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			break
		}
	}
	p, err := reg.BuildAt(deps, prov, "broker.credentials."+deps.Credential, m)
	if err != nil {
		t.Fatalf("build %s: %v", deps.Credential, err)
	}
	return broker.Credential{Name: deps.Credential, ProviderName: prov, Provider: p, MaxTTL: time.Hour}
}

func newEnv(t *testing.T, withPostgres bool) *env { return newEnvTB(t, withPostgres) }

func newEnvTB(t testing.TB, withPostgres bool) *env {
	t.Helper()
	e := &env{dbPath: filepath.Join(t.TempDir(), "signet.db"), clock: &clock{t: time.Now().UTC()}}
	st, err := store.Open(t.Context(), store.Config{DSN: e.dbPath, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	pol, err := policy.Parse("policy.yaml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	src := &broker.SecretSource{}
	creds := []broker.Credential{buildCredential(t, provider.Deps{Credential: "stripe", Secrets: src}, "provider: static")}
	if withPostgres {
		e.pgDSN = storetest.PostgresDSN(t)
		f := filepath.Join(t.TempDir(), "admin.dsn")
		os.WriteFile(f, []byte(e.pgDSN), 0o600)
		c := buildCredential(t, provider.Deps{Credential: "orders-db"}, fmt.Sprintf(`
provider: postgres
dsn_file: %s
creation_statements: ["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]
`, f))
		e.pg = c.Provider.(*postgres.Provider)
		creds = append(creds, c)
	}
	e.reg = prometheus.NewRegistry()
	m, err := broker.NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.b, err = broker.New(t.Context(), broker.Config{
		Store: st, Sealer: newSealer(t), Policy: pol, Credentials: creds, Now: e.clock.Now,
		IssueTimeout: 10 * time.Second, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	src.B = e.b
	t.Cleanup(func() { e.b.Close() })
	return e
}

func etlRequest() broker.Request {
	return broker.Request{Credential: "orders-db", Subject: etl, Node: broker.Node{ID: node, AttestationMethod: "join_token"},
		Context: map[string]any{"ticket": "CHG-1"}}
}

func TestSealedSecretNeverInTheDatabase(t *testing.T) {
	e := newEnv(t, false)
	secret := []byte("sk_live_" + rand.Text())
	if _, err := e.b.PutSecret(t.Context(), "stripe", secret); err != nil {
		t.Fatal(err)
	}
	g, err := e.b.Request(t.Context(), broker.Request{Credential: "stripe", Subject: billing})
	if err != nil {
		t.Fatalf("Request(stripe) = %v", err)
	}
	if g.Data["value"] != string(secret) || g.Lease.SecretVersion != 1 || g.Lease.State != store.LeaseActive {
		t.Fatalf("grant = %+v", g)
	}
	// Checkpoint so every page is in the main file, then read it and the WAL.
	if _, err := e.st.DB().Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{e.dbPath, e.dbPath + "-wal"} {
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, secret) || bytes.Contains(b, secret[8:]) {
			t.Fatalf("%s contains the secret's bytes", p)
		}
	}
	// Other callers do not get it, and the denial is audited.
	_, err = e.b.Request(t.Context(), broker.Request{Credential: "stripe", Subject: other})
	if errkind.Of(err) != errkind.PermissionDenied {
		t.Fatalf("Request(other) = %v, want PermissionDenied", err)
	}
	deny, _ := e.st.ListAudit(t.Context(), store.AuditFilter{Action: "broker.deny"})
	if len(deny) != 1 || deny[0].Detail["subject"] != other.String() || !strings.Contains(deny[0].Detail["rules"], "billing-gets-stripe: false") {
		t.Errorf("deny audit = %+v", deny)
	}
	all, _ := e.st.ListAudit(t.Context(), store.AuditFilter{})
	for _, r := range all {
		for k, v := range r.Detail {
			if strings.Contains(v, string(secret)) {
				t.Errorf("audit %s detail %s holds the secret", r.Action, k)
			}
		}
	}
}

func TestWrongKEKFailsStart(t *testing.T) {
	e := newEnv(t, false)
	pol, _ := policy.Parse("p", []byte(testPolicy))
	_, err := broker.New(t.Context(), broker.Config{Store: e.st, Sealer: newSealer(t), Policy: pol})
	if err == nil || !strings.Contains(err.Error(), "broker.kek_file: this is not the key-encryption key") {
		t.Fatalf("New(other KEK) = %v, want a clear KEK error", err)
	}
}

func TestSecretRotationListsStaleLeases(t *testing.T) {
	e := newEnv(t, false)
	ctx := t.Context()
	if _, err := e.b.PutSecret(ctx, "stripe", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	g1, err := e.b.Request(ctx, broker.Request{Credential: "stripe", Subject: billing})
	if err != nil {
		t.Fatal(err)
	}
	sec, stale, err := e.b.RotateSecret(ctx, "stripe", []byte("v2"))
	if err != nil || sec.Version != 2 {
		t.Fatalf("RotateSecret = %+v, %v", sec, err)
	}
	if len(stale) != 1 || stale[0].ID != g1.Lease.ID {
		t.Errorf("stale = %+v, want the v1 lease", stale)
	}
	g2, _ := e.b.Request(ctx, broker.Request{Credential: "stripe", Subject: billing})
	if g2.Data["value"] != "v2" || g2.Lease.SecretVersion != 2 {
		t.Errorf("after rotation grant = %+v", g2)
	}
	if _, err := e.b.PutSecret(ctx, "bin", []byte{0xff, 0xfe}); errkind.Of(err) != errkind.InvalidArgument {
		t.Errorf("PutSecret(binary) = %v", err)
	}
	list, _ := e.b.ListSecrets(ctx)
	if len(list) != 1 || list[0].Sealed != nil {
		t.Errorf("ListSecrets = %+v", list)
	}
}

func TestRequestErrors(t *testing.T) {
	e := newEnv(t, false)
	e.b.PutSecret(t.Context(), "stripe", []byte("v"))
	cases := map[string]struct {
		r    broker.Request
		kind errkind.Kind
		want string
	}{
		"unknown credential": {broker.Request{Credential: "nope", Subject: billing}, errkind.NotFound, `credential "nope" is not configured`},
		"ttl over max":       {broker.Request{Credential: "stripe", Subject: billing, TTL: 2 * time.Hour}, errkind.InvalidArgument, "exceeds credential stripe's max_ttl of 1h0m0s"},
		"negative ttl":       {broker.Request{Credential: "stripe", Subject: billing, TTL: -time.Second}, errkind.InvalidArgument, "must be positive"},
		"denied":             {broker.Request{Credential: "stripe", Subject: etl}, errkind.PermissionDenied, "policy denies"},
	}
	for name, c := range cases {
		_, err := e.b.Request(t.Context(), c.r)
		if errkind.Of(err) != c.kind || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Request = %v, want %v containing %q", name, err, c.kind, c.want)
		}
	}
	if ls, _ := e.b.ListLeases(t.Context(), store.LeaseFilter{}); len(ls) != 0 {
		t.Errorf("refused requests left leases: %+v", ls)
	}
}

func pgConnect(ctx context.Context, e *env, g broker.Grant) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(e.pgDSN)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = g.Data["username"], g.Data["password"]
	return pgx.ConnectConfig(ctx, cfg)
}

func TestPostgresLeaseLifecycle(t *testing.T) {
	e := newEnv(t, true)
	ctx := t.Context()

	// Missing context: denied, audited, nothing created.
	r := etlRequest()
	r.Context = nil
	if _, err := e.b.Request(ctx, r); errkind.Of(err) != errkind.PermissionDenied {
		t.Fatalf("Request(no context) = %v, want PermissionDenied", err)
	}

	g, err := e.b.Request(ctx, etlRequest())
	if err != nil {
		t.Fatalf("Request = %v", err)
	}
	if ttl := g.Lease.ExpiresAt.Sub(g.Lease.IssuedAt); ttl != 10*time.Minute {
		t.Errorf("lease ttl = %s, want the rule's 10m over the default 15m", ttl)
	}
	conn, err := pgConnect(ctx, e, g)
	if err != nil {
		t.Fatalf("connect with the issued user: %v", err)
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	allow, _ := e.st.ListAudit(ctx, store.AuditFilter{Action: "broker.allow"})
	if len(allow) != 1 || allow[0].Detail["rule"] != "etl-reads-orders" || strings.Contains(allow[0].Detail["context"], g.Data["password"]) {
		t.Errorf("allow audit = %+v", allow)
	}

	// Renew within max_ttl works; past it is refused.
	if _, err := e.b.Renew(ctx, g.Lease.ID, 30*time.Minute); err != nil {
		t.Errorf("Renew(30m) = %v", err)
	}
	if _, err := e.b.Renew(ctx, g.Lease.ID, 2*time.Hour); errkind.Of(err) != errkind.InvalidArgument {
		t.Errorf("Renew(2h) = %v, want InvalidArgument", err)
	}

	// Revoke: the open session dies, a new one is refused, the role is gone.
	l, err := e.b.Revoke(ctx, g.Lease.ID, "operator")
	if err != nil || l.State != store.LeaseRevoked {
		t.Fatalf("Revoke = %+v, %v", l, err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the open session survived revocation")
	}
	if c, err := pgConnect(ctx, e, g); err == nil {
		c.Close(ctx)
		t.Error("a new connection after revocation succeeded")
	}
	if ok, _ := e.pg.Exists(ctx, g.Lease.ID); ok {
		t.Error("role still exists after revocation")
	}
}

func TestSweeperExpiresAndReconciles(t *testing.T) {
	e := newEnv(t, true)
	ctx := t.Context()
	r := etlRequest()
	r.TTL = 5 * time.Second
	expiring, err := e.b.Request(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	live, err := e.b.Request(ctx, etlRequest())
	if err != nil {
		t.Fatal(err)
	}
	// A crash between pending and active: the lease is recorded and the
	// provider created the role, but the lease never activated.
	crashed, err := e.st.CreateLease(ctx, store.Lease{ID: "lease_crashed", Credential: "orders-db", Provider: "postgres",
		Subject: etl, IssuedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pg.Issue(ctx, provider.Request{LeaseID: crashed.ID, Credential: "orders-db", Subject: etl, ExpiresAt: crashed.ExpiresAt}); err != nil {
		t.Fatal(err)
	}

	if n := e.b.Sweep(ctx); n != 0 {
		t.Fatalf("Sweep before anything is due ended %d leases", n)
	}
	e.clock.Add(6 * time.Second)
	if n := e.b.Sweep(ctx); n != 1 {
		t.Fatalf("Sweep after 6s ended %d leases, want the 5s one", n)
	}
	if ok, _ := e.pg.Exists(ctx, expiring.Lease.ID); ok {
		t.Error("the expired lease's role still exists")
	}
	if l, _ := e.st.GetLease(ctx, expiring.Lease.ID); l.State != store.LeaseExpired {
		t.Errorf("expired lease state = %s", l.State)
	}
	if ok, _ := e.pg.Exists(ctx, crashed.ID); !ok {
		t.Fatal("the pending lease was reconciled while its issuance could still be running")
	}
	e.clock.Add(time.Minute) // past twice the issue timeout
	if n := e.b.Sweep(ctx); n != 1 {
		t.Fatalf("Sweep after the grace ended %d leases, want the crashed one", n)
	}
	if ok, _ := e.pg.Exists(ctx, crashed.ID); ok {
		t.Error("the crashed lease's role survived reconciliation")
	}
	if l, _ := e.st.GetLease(ctx, crashed.ID); l.State != store.LeaseRevoked || !strings.Contains(l.Reason, "reconciled") {
		t.Errorf("crashed lease = %s %q", l.State, l.Reason)
	}
	if ok, _ := e.pg.Exists(ctx, live.Lease.ID); !ok {
		t.Error("the sweeper dropped a live lease's role")
	}
	if got := e.gauge(t, "orders-db", "active"); got != 1 {
		t.Errorf("signet_broker_leases{orders-db,active} = %v, want 1", got)
	}
	// Revoke everything of the subject.
	ended, err := e.b.RevokeAll(ctx, store.LeaseFilter{Subject: etl}, "offboarded")
	if err != nil || len(ended) != 1 {
		t.Fatalf("RevokeAll = %d, %v", len(ended), err)
	}
}

func (e *env) gauge(t *testing.T, cred, state string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "signet_broker_leases" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["credential"] == cred && labels["state"] == state {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// TestRevokeRecordsNotRecalled checks that revoking a lease whose provider
// cannot recall the credential says so in the lease.
func TestRevokeRecordsNotRecalled(t *testing.T) {
	e := newEnv(t, false)
	if _, err := e.b.PutSecret(t.Context(), "stripe", []byte("sk_live_1")); err != nil {
		t.Fatal(err)
	}
	g, err := e.b.Request(t.Context(), broker.Request{Credential: "stripe", Subject: billing})
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.b.Revoke(t.Context(), g.Lease.ID, "operator")
	if err != nil || l.State != store.LeaseRevoked || !strings.Contains(l.Reason, "operator (not recalled: static credentials cannot be revoked early") {
		t.Fatalf("Revoke = %+v, %v; want the reason to record that nothing was recalled", l, err)
	}
}
