package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/brokerclient"
)

// TestCredentialGetWithoutBroker runs `signet credential get` with neither
// --broker nor SIGNET_BROKER_URL: it reaches the broker at the URL the
// local agent learned from its server, https://<http_address host>:<the
// port it bound>. The server is restarted on its agent API address twice:
// with a new HTTPS port, which the agent learns and the CLI follows, and
// on a wildcard http_address, which advertises nothing, so the CLI says
// what to set (and SIGNET_BROKER_URL still works).
func TestCredentialGetWithoutBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	socket := filepath.Join(dir, "agent.sock")
	kek := make([]byte, 32)
	rand.Read(kek)
	if err := os.WriteFile(filepath.Join(dir, "broker.kek"), kek, 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policy.yaml"), `
rules:
  - name: app-reads-stripe
    credentials: [stripe]
    when: subject.id == "spiffe://example.org/app"
`)
	cfg := filepath.Join(dir, "server.yaml")
	// startServer (re)starts the server with the given listener addresses
	// and returns what it bound.
	startServer := func(name, bind, https string) (p *proc, agentAPI, httpAddr string) {
		writeFile(t, cfg, fmt.Sprintf(`trust_domain: example.org
data_dir: %[1]s/server
bind_address: %[2]s
http_address: %[3]s
log: {level: info}
broker:
  kek_file: %[1]s/broker.kek
  policy_file: %[1]s/policy.yaml
  credentials:
    stripe: {provider: static, default_ttl: 5m}
`, dir, bind, https))
		p = start(t, name, "server", "run", "--config", cfg)
		agentAPI, httpAddr = serverAddrs(t, p)
		eventually(t, 30*time.Second, name+" healthcheck", func() error {
			_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
			if err != nil {
				return fmt.Errorf("%v: %s", err, errOut)
			}
			return nil
		})
		return p, agentAPI, httpAddr
	}
	server, addr, httpAddr := startServer("server", "127.0.0.1:0", "127.0.0.1:0")

	secret := make([]byte, 16)
	rand.Read(secret)
	value := "sk_test_" + hex.EncodeToString(secret)
	writeFile(t, filepath.Join(dir, "stripe.key"), value+"\n")
	if out := signet(t, "secret", "put", "stripe", "--from-file", filepath.Join(dir, "stripe.key"), "--admin-socket", adminSock); strings.Contains(out, value) {
		t.Fatalf("secret put printed the value: %q", out)
	}
	// secret list pages on the server: a second secret, one per page.
	writeFile(t, filepath.Join(dir, "other.key"), "other-value\n")
	signet(t, "secret", "put", "other", "--from-file", filepath.Join(dir, "other.key"), "--admin-socket", adminSock)
	var page struct {
		Secrets []struct{ Name string } `json:"secrets"`
		Next    string                  `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(signet(t, "secret", "list", "--limit", "1", "--json", "--admin-socket", adminSock)), &page); err != nil ||
		len(page.Secrets) != 1 || page.Secrets[0].Name != "other" || page.Next == "" {
		t.Fatalf("secret list --limit 1 = %+v, %v; want other and a next page", page, err)
	}
	page.Secrets = nil
	if err := json.Unmarshal([]byte(signet(t, "secret", "list", "--limit", "1", "--json", "--page-token", page.Next, "--admin-socket", adminSock)), &page); err != nil ||
		len(page.Secrets) != 1 || page.Secrets[0].Name != "stripe" {
		t.Fatalf("secret list --page-token = %+v, %v; want stripe", page, err)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, signet(t, "bundle", "show", "--admin-socket", adminSock))
	nodeID := "spiffe://example.org/node/brokerdefault"
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID, "--spiffe-id", "spiffe://example.org/app",
		"--selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	agent := start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundle, "--join-token", token,
		"--socket", socket, "--data-dir", filepath.Join(dir, "agent"), "--sync-interval", "200ms", "--log-format", "json")
	fetchID(t, socket)

	// get runs credential get without --broker, in an environment without
	// SIGNET_BROKER_URL (plus extraEnv).
	get := func(extraEnv ...string) (string, string, error) {
		cmd := exec.Command(signetBin, "credential", "get", "stripe", "--socket", socket, "--json")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, brokerclient.EnvURL+"=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, extraEnv...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	// gets checks that get returns the sealed value under an active lease.
	gets := func(t *testing.T, extraEnv ...string) {
		t.Helper()
		out, errOut, err := get(extraEnv...)
		if err != nil {
			t.Fatalf("credential get stripe: %v\nstderr: %s", err, errOut)
		}
		var res struct {
			LeaseID    string            `json:"lease_id"`
			Credential string            `json:"credential"`
			Data       map[string]string `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("credential get --json printed %q: %v", out, err)
		}
		if res.Credential != "stripe" || res.Data["value"] != value || res.LeaseID == "" {
			t.Fatalf("credential get = %+v, want stripe's value %q under a lease", res, value)
		}
		if leases := signet(t, "lease", "list", "--admin-socket", adminSock, "--credential", "stripe"); !strings.Contains(leases, res.LeaseID) {
			t.Errorf("lease list does not show %s:\n%s", res.LeaseID, leases)
		}
	}
	// learns waits for the agent to log that it learned want.
	learns := func(t *testing.T, want string) {
		t.Helper()
		eventually(t, 30*time.Second, "agent learns "+want, func() error {
			if !strings.Contains(agent.out.String(), `"broker_url":"`+want+`"`) {
				return fmt.Errorf("no \"broker URL learned from the server\" record with %s in the agent's log", want)
			}
			return nil
		})
	}

	t.Run("the advertised URL is the bound HTTPS address", func(t *testing.T) {
		if strings.HasSuffix(httpAddr, ":0") || !strings.HasPrefix(httpAddr, "127.0.0.1:") {
			t.Fatalf("server reports https=%q, want 127.0.0.1 and the port it bound", httpAddr)
		}
		learns(t, "https://"+httpAddr)
		gets(t)
	})

	t.Run("a restarted server's new HTTPS port is followed", func(t *testing.T) {
		server.stop()
		// The agent keeps dialling addr: the server binds it again.
		var again string
		server, again, httpAddr = startServer("server (new https port)", addr, "127.0.0.1:0")
		if again != addr {
			t.Fatalf("restarted server bound %s, want %s", again, addr)
		}
		learns(t, "https://"+httpAddr)
		eventually(t, 30*time.Second, "credential get after the restart", func() error {
			_, errOut, err := get()
			if err != nil {
				return fmt.Errorf("%v: %s", err, errOut)
			}
			return nil
		})
		gets(t)
	})

	t.Run("a server on a wildcard address advertises nothing", func(t *testing.T) {
		server.stop()
		var wildcard string
		server, _, wildcard = startServer("server (wildcard https)", addr, "0.0.0.0:0")
		_, port, err := net.SplitHostPort(wildcard)
		if err != nil {
			t.Fatalf("server reports https=%q: %v", wildcard, err)
		}
		eventually(t, 30*time.Second, "credential get refused without a URL", func() error {
			_, errOut, err := get()
			if err == nil || !strings.Contains(errOut, "--broker is required (or "+brokerclient.EnvURL+")") ||
				!strings.Contains(errOut, "advertises no HTTPS address") {
				return fmt.Errorf("credential get: %v, stderr %q; want it to ask for --broker or %s", err, errOut, brokerclient.EnvURL)
			}
			return nil
		})
		gets(t, brokerclient.EnvURL+"=https://127.0.0.1:"+port)
	})
}
