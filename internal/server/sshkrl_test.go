package server_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	brokerexchange "github.com/signet-id/signet/internal/broker/exchange"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

// TestSSHKRLAcrossReplicas: two replicas share a PostgreSQL store and the
// SSH user CA, each with its own KRL file. A certificate issued and
// revoked on one replica is in the KRL the other serves.
func TestSSHKRLAcrossReplicas(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	dsn := storetest.PostgresDSN(t)
	dir := t.TempDir()
	kekFile, caFile := kek(t, dir), filepath.Join(dir, "ssh-user-ca")
	policyFile := writeFile(t, dir, "policy.yaml", sshPolicy, 0o600)
	replica := func(name string) *testenv.Env {
		return testenv.New(t, func(c *server.Config) {
			c.StoreDriver, c.StoreDSN = "postgres", dsn
			c.HTTPAddress = "127.0.0.1:0"
			c.TokenVerifiers = []tokenapi.SubjectVerifier{jobVerifier{ttl: 10 * time.Minute}}
			c.Broker = server.BrokerConfig{KEKFile: kekFile, PolicyFile: policyFile, Credentials: creds(t, fmt.Sprintf(
				"prod-ssh: {provider: ssh, ca_key_file: %s, krl_file: %s, principals: [deploy], default_ttl: 5m}",
				caFile, filepath.Join(dir, name+".krl.json")))}
		})
	}
	a := replica("a")
	b := replica("b")
	krl := func(env *testenv.Env) []byte {
		t.Helper()
		resp, err := env.HTTPClient(nil).Get(env.URL(sshprovider.PathKRL))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", sshprovider.PathKRL, resp.StatusCode, body)
		}
		return body
	}
	revoked := func(krl []byte, cert string) bool {
		t.Helper()
		kf, cf := filepath.Join(dir, "krl"), filepath.Join(dir, "cert.pub")
		os.WriteFile(kf, krl, 0o600)
		os.WriteFile(cf, []byte(cert+"\n"), 0o600)
		out, err := exec.Command("ssh-keygen", "-Q", "-f", kf, cf).CombinedOutput()
		return err != nil && strings.Contains(string(out), "REVOKED")
	}

	deployer := a.HTTPClient(workloadSVID(t, a, "spiffe://example.org/deployer", "acme/deployer"))
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := gossh.NewSignerFromKey(priv)
	status, body := exchange(t, deployer, a, url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"prod-ssh"},
		"public_key": {string(gossh.MarshalAuthorizedKey(key.PublicKey()))}})
	if status != 200 {
		t.Fatalf("ssh credential: %d %v", status, body)
	}
	cert := body["data"].(map[string]any)["certificate"].(string)
	if revoked(krl(b), cert) {
		t.Fatal("the other replica's KRL lists a certificate nobody revoked")
	}
	if _, err := a.Server.Broker().Revoke(a.Ctx(), body["lease_id"].(string), "test"); err != nil {
		t.Fatal(err)
	}
	if !revoked(krl(a), cert) {
		t.Error("the revoking replica's KRL does not list the certificate")
	}
	if !revoked(krl(b), cert) {
		t.Error("the other replica's KRL does not list a certificate revoked on the first")
	}
}
