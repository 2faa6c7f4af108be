package builtin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	gossh "golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/awssts"
	"github.com/signet-id/signet/internal/broker/provider/azurewif"
	"github.com/signet-id/signet/internal/broker/provider/gcpwif"
	"github.com/signet-id/signet/internal/broker/provider/githubapp"
	"github.com/signet-id/signet/internal/broker/provider/mysql"
	"github.com/signet-id/signet/internal/broker/provider/mysql/mysqltest"
	"github.com/signet-id/signet/internal/broker/provider/oauth"
	"github.com/signet-id/signet/internal/broker/provider/postgres"
	"github.com/signet-id/signet/internal/broker/provider/providertest"
	"github.com/signet-id/signet/internal/broker/provider/remotetest"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/broker/provider/ssh/sshdtest"
	"github.com/signet-id/signet/internal/broker/provider/static"
	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store/storetest"
)

// memSecrets is a SecretSource holding one secret in memory (the broker's
// sealed store is tested in internal/broker).
type memSecrets map[string][]byte

func (m memSecrets) CurrentSecret(_ context.Context, name string) ([]byte, int64, error) {
	v, ok := m[name]
	if !ok {
		return nil, 0, errkind.New(errkind.NotFound, "secret %s does not exist", name)
	}
	return v, 1, nil
}

func buildProvider(t *testing.T, deps provider.Deps, name, section string) (provider.Provider, error) {
	t.Helper()
	reg, err := builtin.CredentialProviders()
	if err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(section), &n); err != nil {
		t.Fatal(err)
	}
	node := &n
	if len(n.Content) > 0 {
		node = n.Content[0]
	}
	return reg.BuildAt(deps, name, builtin.CredentialsKey+"."+deps.Credential, node)
}

// postgresHarness builds the postgres provider through the registry
// against the machine's PostgreSQL.
func postgresHarness(t *testing.T) providertest.Harness {
	dsn := storetest.PostgresDSN(t)
	dsnFile := filepath.Join(t.TempDir(), "admin.dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf(`
dsn_file: %s
creation_statements:
  - "CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"
  - "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{name}}"
`, dsnFile)
	p, err := buildProvider(t, provider.Deps{Credential: "orders-db"}, postgres.Name, section)
	if err != nil {
		t.Fatalf("build postgres provider: %v", err)
	}
	pp := p.(*postgres.Provider)
	t.Cleanup(func() { pp.Close() })
	base, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return providertest.Harness{
		Provider: p, Credential: "orders-db",
		Use: func(ctx context.Context, c provider.Credential) error {
			cfg := base.Copy()
			cfg.User, cfg.Password = c.Data["username"], c.Data["password"]
			if c.Data["database"] != cfg.Database {
				return fmt.Errorf("data.database = %q, want %q", c.Data["database"], cfg.Database)
			}
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			var who string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&who); err != nil {
				return err
			}
			if who != c.Data["username"] {
				return fmt.Errorf("connected as %q, want %q", who, c.Data["username"])
			}
			return nil
		},
		Exists: pp.Exists,
		// The machine's PostgreSQL trusts 127.0.0.1 without passwords, so
		// VALID UNTIL (a password-authentication check) is not observable.
		EnforcesExpiry: false,
	}
}

// mysqlHarness builds the mysql provider through the registry against the
// machine's MariaDB; Use logs in and reads the granted database.
func mysqlHarness(t *testing.T) providertest.Harness {
	dsn := mysqltest.DSN(t)
	admin := mysqltest.Open(t, dsn)
	db := "signet_conf_" + strings.ToLower(rand.Text()[:10])
	if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE TABLE " + db + ".t (id INT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + db) })
	dsnFile := filepath.Join(t.TempDir(), "admin.dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := buildProvider(t, provider.Deps{Credential: "reports-db"}, mysql.Name, "dsn_file: "+dsnFile+"\ngrants: [\"SELECT ON "+db+".*\"]")
	if err != nil {
		t.Fatalf("build mysql provider: %v", err)
	}
	mp := p.(*mysql.Provider)
	t.Cleanup(func() { mp.Close() })
	return providertest.Harness{
		Provider: p, Credential: "reports-db",
		Use: func(ctx context.Context, c provider.Credential) error {
			udb, err := sql.Open("mysql", mysqltest.WithUser(t, dsn, c.Data["username"], c.Data["password"]))
			if err != nil {
				return err
			}
			defer udb.Close()
			var who string
			if err := udb.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&who); err != nil {
				return err
			}
			if !strings.HasPrefix(who, c.Data["username"]+"@") {
				return fmt.Errorf("connected as %q, want %q", who, c.Data["username"])
			}
			var n int
			return udb.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+db+".t").Scan(&n)
		},
		Exists: mp.Exists,
		// MySQL accounts have no expiry time: the sweeper's Revoke ends them.
		EnforcesExpiry: false,
	}
}

// sshHarness builds the ssh provider through the registry; Use logs in to
// a real sshd (inetd mode on a listener bound here) after refreshing its
// RevokedKeys from the provider's KRL, as an operator's cron would.
func sshHarness(t *testing.T) providertest.Harness {
	dir := t.TempDir()
	p, err := buildProvider(t, provider.Deps{Credential: "prod-ssh"}, sshprovider.Name,
		"ca_key_file: "+filepath.Join(dir, "ssh-user-ca")+"\nprincipals: [deploy]\nextensions: [permit-pty]")
	if err != nil {
		t.Fatalf("build ssh provider: %v", err)
	}
	sp := p.(*sshprovider.Provider)
	srv := sshdtest.Start(t, sp.CAPublicKey(), "deploy")
	var mu sync.Mutex
	keys := map[string]gossh.Signer{} // by lease id
	return providertest.Harness{
		Provider: p, Credential: "prod-ssh",
		Prepare: func(r *provider.Request) {
			_, priv, err := ed25519.GenerateKey(nil)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := gossh.NewSignerFromKey(priv)
			mu.Lock()
			keys[sshprovider.SerialString(r.LeaseID)] = s
			mu.Unlock()
			r.PublicKey = string(gossh.MarshalAuthorizedKey(s.PublicKey()))
		},
		Use: func(ctx context.Context, c provider.Credential) error {
			mu.Lock()
			key := keys[c.Data["serial"]]
			mu.Unlock()
			krl := sp.KRL()
			if err := srv.SetKRL(krl); err != nil {
				return err
			}
			return srv.Login(ctx, key, c.Data["certificate"])
		},
		EnforcesExpiry: true,
	}
}

func TestEveryCredentialProviderPassesConformance(t *testing.T) {
	harnesses := map[string]func(t *testing.T) providertest.Harness{
		postgres.Name:    postgresHarness,
		mysql.Name:       mysqlHarness,
		sshprovider.Name: sshHarness,
		awssts.Name:      awsHarness,
		azurewif.Name:    azureHarness,
		gcpwif.Name:      gcpHarness,
		githubapp.Name:   githubHarness,
		oauth.Name:       func(t *testing.T) providertest.Harness { return oauthHarness(t, "client_credentials") },
		static.Name: func(t *testing.T) providertest.Harness {
			secrets := memSecrets{"stripe": []byte("sk_live_123")}
			p, err := buildProvider(t, provider.Deps{Credential: "stripe", Secrets: secrets}, static.Name, "")
			if err != nil {
				t.Fatal(err)
			}
			return providertest.Harness{Provider: p, Credential: "stripe", Use: func(_ context.Context, c provider.Credential) error {
				if c.Data["value"] != "sk_live_123" || c.SecretVersion != 1 {
					return fmt.Errorf("data = %v version %d", c.Data, c.SecretVersion)
				}
				return nil
			}}
		},
	}
	reg, err := builtin.CredentialProviders()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range reg.Names() {
		mk, ok := harnesses[name]
		if !ok {
			t.Errorf("credential provider %s has no conformance harness", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			providertest.Run(t, mk)
		})
	}
}

func TestCredentialProviderConfigErrors(t *testing.T) {
	dir := t.TempDir()
	dsn := filepath.Join(dir, "admin.dsn")
	if err := os.WriteFile(dsn, []byte("postgres://u:p@127.0.0.1:1/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.dsn")
	if err := os.WriteFile(open, []byte("postgres://u:hunter2@h/db"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.dsn")
	if err := os.WriteFile(bad, []byte("postgres://u:hunter2@h:notaport/db"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := `["CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiry}}"]`
	cases := map[string]struct {
		provider, section string
		want              []string
	}{
		"unknown provider": {"vault", "", []string{"broker.credentials.c: unknown credential provider \"vault\": use one of aws_sts, azure_wif, gcp_wif, github_app, mysql, oauth, postgres, ssh, static"}},
		"unknown key":      {postgres.Name, "dsn_file: " + dsn + "\ncreation_statements: " + good + "\nbogus: 1", []string{"broker.credentials.c.bogus"}},
		"no dsn":           {postgres.Name, "creation_statements: " + good, []string{"broker.credentials.c.dsn_file: required"}},
		"no statements":    {postgres.Name, "dsn_file: " + dsn, []string{"creation_statements: at least one"}},
		"unknown placeholder": {postgres.Name, "dsn_file: " + dsn + "\ncreation_statements: [\"CREATE ROLE {{name}} {{user}}\"]",
			[]string{"creation_statements[0]: unknown placeholder {{user}}"}},
		"quoted placeholder": {postgres.Name, "dsn_file: " + dsn + "\ncreation_statements: [\"CREATE ROLE {{name}} PASSWORD '{{password}}'\"]",
			[]string{"{{password}} is quoted"}},
		"unbalanced": {postgres.Name, "dsn_file: " + dsn + "\ncreation_statements: [\"CREATE ROLE {{name}} {{password\"]",
			[]string{`"{{" without "}}"`}},
		"first statement without name": {postgres.Name, "dsn_file: " + dsn + "\ncreation_statements: [\"SELECT 1\", \"CREATE ROLE {{name}}\"]",
			[]string{"creation_statements[0]: must create the role {{name}}"}},
		"dsn readable by others": {postgres.Name, "dsn_file: " + open + "\ncreation_statements: " + good, []string{"chmod 600"}},
		"bad dsn":                {postgres.Name, "dsn_file: " + bad + "\ncreation_statements: " + good, []string{"not a valid PostgreSQL connection string"}},
		"mysql no grants":        {mysql.Name, "dsn_file: " + dsn, []string{"broker.credentials.c.grants: at least one"}},
		"mysql bad grant":        {mysql.Name, "dsn_file: " + dsn + "\ngrants: [\"SELECT ON a.*\", \"SUPER ON *.*\"]", []string{"grants[1]: privilege \"SUPER\""}},
		"mysql no dsn":           {mysql.Name, "grants: [\"SELECT ON a.*\"]", []string{"broker.credentials.c.dsn_file: required"}},
		"mysql dsn open":         {mysql.Name, "dsn_file: " + open + "\ngrants: [\"SELECT ON a.*\"]", []string{"chmod 600"}},
		"ssh no principals":      {sshprovider.Name, "ca_key_file: " + filepath.Join(dir, "ca"), []string{"broker.credentials.c.principals: at least one"}},
		"ssh from node and fixed": {sshprovider.Name, "ca_key_file: " + filepath.Join(dir, "ca") + "\nprincipals: [deploy]\nsource_address_from_node: true\ncritical_options: {source-address: 10.0.0.0/8}",
			[]string{"source_address_from_node: true conflicts with critical_options.source-address"}},
		"ssh bad extension": {sshprovider.Name, "ca_key_file: " + filepath.Join(dir, "ca") + "\nprincipals: [deploy]\nextensions: [permit-all]", []string{"extensions[0]: unknown extension"}},
		"static settings":   {static.Name, "x: 1", []string{"broker.credentials.c.x"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := buildProvider(t, provider.Deps{Credential: "c", Secrets: memSecrets{}}, c.provider, c.section)
			if err == nil {
				t.Fatal("build succeeded, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error reveals the DSN's password: %v", err)
			}
		})
	}
}

// awsHarness builds aws_sts through the registry against a fake STS that
// verifies the JWT-SVIDs through the issuer's discovery document.
func awsHarness(t *testing.T) providertest.Harness {
	iss := remotetest.NewIssuer(t)
	fake := remotetest.NewSTS(t, iss)
	section := fmt.Sprintf("role_arn: arn:aws:iam::123456789012:role/deploy\nsts_endpoint: %s\n", fake.URL)
	p, err := buildProvider(t, provider.Deps{Credential: "aws-deploy", SignJWTSVID: iss.SignJWTSVID}, awssts.Name, section)
	if err != nil {
		t.Fatalf("build aws_sts provider: %v", err)
	}
	return providertest.Harness{Provider: p, Credential: "aws-deploy", Use: func(_ context.Context, c provider.Credential) error {
		s, ok := fake.Session(c.Data["aws_access_key_id"])
		switch {
		case !ok:
			return fmt.Errorf("STS never issued access key %q", c.Data["aws_access_key_id"])
		case s.Secret != c.Data["aws_secret_access_key"] || s.Token != c.Data["aws_session_token"]:
			return errors.New("secret or session token differ from what STS issued")
		case s.Subject != "spiffe://example.org/etl" || s.SessionName != "example.org@etl" || s.RoleARN != "arn:aws:iam::123456789012:role/deploy":
			return fmt.Errorf("session %+v, want the workload's", s)
		case time.Now().After(s.Expiration):
			return errors.New("session expired")
		}
		return nil
	}}
}

// asUse checks an access token against what the fake AS issued.
func asUse(as *remotetest.AS, scope string) func(context.Context, provider.Credential) error {
	return func(_ context.Context, c provider.Credential) error {
		tok, ok := as.Token(c.Data["access_token"])
		switch {
		case !ok:
			return errors.New("the authorization server never issued this access token")
		case tok.Subject != "spiffe://example.org/etl" || tok.Scope != scope:
			return fmt.Errorf("token %+v, want the workload's with scope %q", tok, scope)
		case time.Now().After(tok.Expires):
			return errors.New("token expired")
		}
		return nil
	}
}

func oauthHarness(t *testing.T, grant string) providertest.Harness {
	iss := remotetest.NewIssuer(t)
	as := remotetest.NewAS(t, iss, remotetest.ASConfig{ClientID: "signet"})
	section := fmt.Sprintf("token_url: %s\nclient_id: signet\nscopes: [orders:read, orders:list]\ngrant_type: %s\n", as.URL, grant)
	p, err := buildProvider(t, provider.Deps{Credential: "partner-api", SignJWTSVID: iss.SignJWTSVID}, oauth.Name, section)
	if err != nil {
		t.Fatalf("build oauth provider: %v", err)
	}
	return providertest.Harness{Provider: p, Credential: "partner-api", Use: asUse(as, "orders:read orders:list")}
}

func azureHarness(t *testing.T) providertest.Harness {
	iss := remotetest.NewIssuer(t)
	const tenant, client = "72f988bf-86f1-41af-91ab-2d7cd011db47", "0f3e0c8a-1d6b-4c4e-9a55-6b8c4f3b2a10"
	as := remotetest.NewAS(t, iss, remotetest.ASConfig{Path: "/" + tenant + "/oauth2/v2.0/token", Audience: azurewif.Audience, ClientID: client})
	host := strings.TrimSuffix(as.URL, "/"+tenant+"/oauth2/v2.0/token")
	section := fmt.Sprintf("tenant_id: %s\nclient_id: %s\nauthority_host: %s\n", tenant, client, host)
	p, err := buildProvider(t, provider.Deps{Credential: "azure-deploy", SignJWTSVID: iss.SignJWTSVID}, azurewif.Name, section)
	if err != nil {
		t.Fatalf("build azure_wif provider: %v", err)
	}
	return providertest.Harness{Provider: p, Credential: "azure-deploy", Use: asUse(as, azurewif.DefaultScope)}
}

// TestOAuthTokenExchange runs the conformance suite over the oauth
// provider in its RFC 8693 mode.
func TestOAuthTokenExchange(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Harness { return oauthHarness(t, "token_exchange") })
}

func gcpHarness(t *testing.T) providertest.Harness {
	iss := remotetest.NewIssuer(t)
	const aud = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/signet/providers/signet"
	const sa = "deploy@acme-prod.iam.gserviceaccount.com"
	g := remotetest.NewGoogle(t, iss, aud, sa)
	section := fmt.Sprintf("audience: %s\nservice_account: %s\nsts_endpoint: %s/v1/token\niam_endpoint: %s\n", aud, sa, g.URL, g.URL)
	p, err := buildProvider(t, provider.Deps{Credential: "gcp-deploy", SignJWTSVID: iss.SignJWTSVID}, gcpwif.Name, section)
	if err != nil {
		t.Fatalf("build gcp_wif provider: %v", err)
	}
	return providertest.Harness{Provider: p, Credential: "gcp-deploy", Use: func(_ context.Context, c provider.Credential) error {
		tok, ok := g.Token(c.Data["access_token"])
		switch {
		case !ok:
			return errors.New("IAM Credentials never issued this access token")
		case tok.Subject != "spiffe://example.org/etl" || tok.ServiceAccount != sa || len(tok.Scopes) != 1 || tok.Scopes[0] != gcpwif.DefaultScope:
			return fmt.Errorf("token %+v, want the workload's for %s", tok, sa)
		case time.Now().After(tok.Expires):
			return errors.New("token expired")
		}
		return nil
	}, EnforcesExpiry: true} // generateAccessToken's lifetime is the lease's
}

// githubKey is one RSA key for every GitHub harness (generating one per
// subtest would dominate the suite's time).
var githubKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func githubHarness(t *testing.T) providertest.Harness {
	key := githubKey()
	keyFile := filepath.Join(t.TempDir(), "gh-app.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	gh := remotetest.NewGitHub(t, 123, &key.PublicKey, "acme", map[string]string{"contents": "write", "metadata": "read", "issues": "write"})
	section := fmt.Sprintf("app_id: 123\nprivate_key_file: %s\nrepositories: [acme/app]\npermissions: {contents: write}\napi_url: %s\n", keyFile, gh.URL)
	p, err := buildProvider(t, provider.Deps{Credential: "gh-release"}, githubapp.Name, section)
	if err != nil {
		t.Fatalf("build github_app provider: %v", err)
	}
	return providertest.Harness{Provider: p, Credential: "gh-release",
		Use: func(ctx context.Context, c provider.Credential) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gh.URL+"/installation/repositories", nil)
			req.Header.Set("Authorization", "Bearer "+c.Data["token"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /installation/repositories: HTTP %d", resp.StatusCode)
			}
			tok, _ := gh.Token(c.Data["token"])
			if len(tok.Repositories) != 1 || tok.Repositories[0] != "acme/app" || len(tok.Permissions) != 2 || tok.Permissions["contents"] != "write" {
				return fmt.Errorf("token scoped to %v %v, want acme/app with contents: write (and metadata: read)", tok.Repositories, tok.Permissions)
			}
			return nil
		},
		PendingOutlives: "GitHub cannot list installation tokens; one whose lease was left pending expires within its hour",
	}
}
