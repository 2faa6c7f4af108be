package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/broker/provider/ssh/sshdtest"
)

// TestSSHCertificateLifecycle drives the built binary the way the issue's
// operator does: `signet ssh ca show` configures a real sshd's
// TrustedUserCAKeys, a workload runs `signet credential get prod-ssh
// --write FILE` (its key generated locally) and logs in with
// `ssh -i FILE`'s files, `signet lease revoke` revokes it and, once
// `signet ssh krl --output` refreshed sshd's RevokedKeys, the login fails.
// The credential binds source-address to the node's addresses (the agent
// process calls the server from 127.0.0.1) and the policy rule narrows its
// principals.
func TestSSHCertificateLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	if _, err := os.Stat(sshdtest.Path); err != nil {
		t.Skip("openssh-server is not installed")
	}
	dir := t.TempDir()
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	kek := make([]byte, 32)
	rand.Read(kek)
	kekFile := filepath.Join(dir, "broker.kek")
	if err := os.WriteFile(kekFile, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	writeFile(t, policy, "rules:\n  - name: deployer-ssh\n    credentials: [prod-ssh]\n    when: subject.id == \"spiffe://example.org/deployer\"\n    ttl: 10m\n    ssh: {principals: [deploy]}\n")
	cfg := filepath.Join(dir, "server.yaml")
	writeFile(t, cfg, fmt.Sprintf(`trust_domain: example.org
data_dir: %s
bind_address: 127.0.0.1:0
http_address: 127.0.0.1:0
log: {level: debug, format: text}
broker:
  kek_file: %s
  policy_file: %s
  credentials:
    prod-ssh: {provider: ssh, ca_key_file: %s, principals: [deploy, ops], extensions: [permit-pty], default_ttl: 5m,
               source_address_from_node: true}
`, serverDir, kekFile, policy, filepath.Join(dir, "ssh-user-ca")))
	server := start(t, "server", "server", "run", "--config", cfg)
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	addr, httpAddr := serverAddrs(t, server)
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, signet(t, "bundle", "show", "--admin-socket", adminSock))
	nodeID := "spiffe://example.org/node/ssh-client"
	tok := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	sock := filepath.Join(dir, "agent.sock")
	start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundle, "--join-token", tok,
		"--socket", sock, "--data-dir", filepath.Join(dir, "agent"), "--log-level", "warn")
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/deployer", "--selector", "unix:uid:"+strconv.Itoa(os.Getuid()))
	broker := "https://" + httpAddr
	fetchID(t, sock)

	caPub := signet(t, "ssh", "ca", "show", "--broker", broker, "--socket", sock)
	if !strings.HasPrefix(caPub, "ssh-ed25519 ") || !strings.Contains(caPub, "signet-prod-ssh") {
		t.Fatalf("ssh ca show = %q, want the ed25519 CA key", caPub)
	}
	srv := sshdtest.Start(t, caPub, "deploy")

	keyFile := filepath.Join(dir, "home", ".ssh", "signet")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	var out string
	eventually(t, 30*time.Second, "credential get", func() error {
		o, errOut, err := signetRun("credential", "get", "prod-ssh", "--write", keyFile, "--socket", sock, "--broker", broker)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		out = o
		return nil
	})
	m := regexp.MustCompile(`of lease (\S+) `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("credential get --write printed %q, want the lease id", out)
	}
	lease := m[1]
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, want mode 0600", keyFile, err)
	}
	login := func() error {
		kb, err := os.ReadFile(keyFile)
		if err != nil {
			return err
		}
		key, err := gossh.ParsePrivateKey(kb)
		if err != nil {
			return err
		}
		cb, err := os.ReadFile(keyFile + "-cert.pub")
		if err != nil {
			return err
		}
		return srv.Login(t.Context(), key, string(cb))
	}
	cb, err := os.ReadFile(keyFile + "-cert.pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(cb)
	if err != nil {
		t.Fatal(err)
	}
	if c := pub.(*gossh.Certificate); c.CriticalOptions["source-address"] != "127.0.0.1/32" || strings.Join(c.ValidPrincipals, ",") != "deploy" {
		t.Errorf("certificate source-address %q principals %v, want the agent's 127.0.0.1/32 and the rule's [deploy]",
			c.CriticalOptions["source-address"], c.ValidPrincipals)
	}
	if err := login(); err != nil {
		t.Fatalf("login with the files credential get --write made: %v", err)
	}

	krl := filepath.Join(dir, "signet_revoked.krl")
	signet(t, "lease", "revoke", lease, "--admin-socket", adminSock)
	signet(t, "ssh", "krl", "--broker", broker, "--socket", sock, "--output", krl)
	b, err := os.ReadFile(krl)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetKRL(b); err != nil {
		t.Fatal(err)
	}
	if err := login(); err == nil {
		t.Fatal("login after lease revoke and a KRL refresh succeeded")
	}
}
