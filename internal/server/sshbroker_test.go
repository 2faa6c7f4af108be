package server_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	gossh "golang.org/x/crypto/ssh"

	brokerexchange "github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/broker/provider/mysql/mysqltest"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/broker/provider/ssh/sshdtest"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

const sshPolicy = `
rules:
  - name: deployer-gets-ssh-and-reports
    credentials: [prod-ssh, reports-db]
    when: subject.id == "spiffe://example.org/deployer"
    ttl: 10m
`

// TestSSHAndMySQLCredentialsThroughTheServer: a workload asks the token
// endpoint for an SSH certificate (sending only its public key) and a
// MySQL user; it logs in to a real sshd with the certificate and to
// MariaDB with the user; `lease revoke` drops the user at once and, once
// the host refreshes the KRL from the server's HTTPS path, refuses the
// certificate.
func TestSSHAndMySQLCredentialsThroughTheServer(t *testing.T) {
	dsn := mysqltest.DSN(t)
	admin := mysqltest.Open(t, dsn)
	db := "signet_srv_" + strings.ToLower(rand.Text()[:10])
	if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + db) })
	dir := t.TempDir()
	dsnFile := writeFile(t, dir, "reports-admin.dsn", dsn, 0o600)
	caFile := filepath.Join(dir, "ssh-user-ca")
	env := testenv.New(t, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.TokenVerifiers = []tokenapi.SubjectVerifier{jobVerifier{ttl: 10 * time.Minute}}
		c.Broker = server.BrokerConfig{
			KEKFile:    kek(t, dir),
			PolicyFile: writeFile(t, dir, "policy.yaml", sshPolicy, 0o600),
			Credentials: creds(t, fmt.Sprintf(`
prod-ssh: {provider: ssh, ca_key_file: %s, principals: [deploy], extensions: [permit-pty], default_ttl: 5m}
reports-db: {provider: mysql, dsn_file: %s, grants: ["SELECT ON %s.*"], default_ttl: 15m}
`, caFile, dsnFile, db)),
		}
	})
	deployer := env.HTTPClient(workloadSVID(t, env, "spiffe://example.org/deployer", "acme/deployer"))
	public := env.HTTPClient(nil)
	fetch := func(path string) []byte {
		t.Helper()
		resp, err := public.Get(env.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	caPub := string(fetch(sshprovider.PathCA))
	srv := sshdtest.Start(t, caPub, "deploy")

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := gossh.NewSignerFromKey(priv)
	form := url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"prod-ssh"},
		"public_key": {string(gossh.MarshalAuthorizedKey(key.PublicKey()))}}
	status, body := exchange(t, deployer, env, form)
	if status != 200 {
		t.Fatalf("ssh credential: %d %v", status, body)
	}
	leaseID := body["lease_id"].(string)
	cert := body["data"].(map[string]any)["certificate"].(string)
	if err := srv.Login(env.Ctx(), key, cert); err != nil {
		t.Fatalf("login with the brokered certificate: %v", err)
	}

	t.Run("no public key", func(t *testing.T) {
		status, body := exchange(t, deployer, env, url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"prod-ssh"}})
		desc, _ := body["error_description"].(string)
		if status == 200 || body["error"] != tokenapi.ErrInvalidRequest || !strings.Contains(desc, "public_key") || !strings.Contains(desc, "prod-ssh") {
			t.Errorf("status %d body %v, want invalid_request naming public_key and the credential", status, body)
		}
	})

	t.Run("mysql", func(t *testing.T) {
		status, body := exchange(t, deployer, env, url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"reports-db"}})
		if status != 200 {
			t.Fatalf("mysql credential: %d %v", status, body)
		}
		data := body["data"].(map[string]any)
		user, pw := data["username"].(string), data["password"].(string)
		udb, err := sql.Open("mysql", mysqltest.WithUser(t, dsn, user, pw))
		if err != nil {
			t.Fatal(err)
		}
		defer udb.Close()
		if err := udb.PingContext(env.Ctx()); err != nil {
			t.Fatalf("connect as the brokered user: %v", err)
		}
		if _, err := env.Server.Broker().Revoke(env.Ctx(), body["lease_id"].(string), "test"); err != nil {
			t.Fatal(err)
		}
		udb2, _ := sql.Open("mysql", mysqltest.WithUser(t, dsn, user, pw))
		defer udb2.Close()
		if err := udb2.PingContext(env.Ctx()); err == nil {
			t.Error("the brokered user still connects after lease revoke")
		}
	})

	before := fetch(sshprovider.PathKRL)
	if _, err := env.Server.Broker().Revoke(env.Ctx(), leaseID, "test"); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetKRL(before); err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(env.Ctx(), key, cert); err != nil {
		t.Fatalf("login with the old KRL: %v", err)
	}
	if err := srv.SetKRL(fetch(sshprovider.PathKRL)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Login(env.Ctx(), key, cert); err == nil {
		t.Fatal("login after lease revoke and a KRL refresh succeeded")
	}
	if fi, err := os.Stat(caFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("generated ca_key_file: %v, want mode 0600", err)
	}
}
