package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// brokerSetup describes a deployment for the broker's end-to-end tests: a
// server with a broker section and one node whose agent serves the
// workloads' entries.
type brokerSetup struct {
	// Policy is policy.yaml.
	Policy string
	// Credentials is the broker.credentials mapping, unindented; {{dir}}
	// stands for the deployment's directory.
	Credentials string
	// Broker are more keys of the broker section (issue_timeout: 2s).
	Broker string
	// Files are written into the directory, mode 0600, before the server
	// starts (a DSN file, say); {{dir}} as in Credentials.
	Files map[string]string
	// Node names the node: spiffe://example.org/node/<Node>.
	Node string
	// Workloads are the node's entries: SPIFFE ID → a unix selector;
	// empty means spiffe://example.org/app for this test's uid.
	Workloads map[string]string
	// Server are more top-level keys of the server's configuration, one a
	// line (store: {driver: postgres, dsn: ...}).
	Server string
}

// brokerDeployment is a running server (listeners on 127.0.0.1:0) and
// agent. The directory and the agent's socket directory are 0755, so a
// workload of another uid can reach the socket.
type brokerDeployment struct {
	dir, adminSock, socket, bundle string
	// addr is the agent API's address, broker the token endpoint's URL.
	addr, broker string
	server       *proc
	cfg          string
}

// deployBroker starts the deployment s describes and waits until the
// server answers its health check; the agent is started, not awaited.
func deployBroker(t *testing.T, s brokerSetup) *brokerDeployment {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := &brokerDeployment{dir: dir, adminSock: filepath.Join(dir, "server", "admin.sock"),
		socket: filepath.Join(dir, "run", "agent.sock"), bundle: filepath.Join(dir, "bundle.pem"), cfg: filepath.Join(dir, "server.yaml")}
	expand := func(s string) string { return strings.ReplaceAll(s, "{{dir}}", dir) }
	kek := make([]byte, 32)
	rand.Read(kek)
	files := map[string]string{"broker.kek": string(kek), "policy.yaml": s.Policy}
	for name, content := range s.Files {
		files[name] = expand(content)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	indent := func(block string) string {
		lines := strings.Split(strings.TrimSpace(expand(block)), "\n")
		for i, l := range lines {
			lines[i] = "    " + l
		}
		return strings.Join(lines, "\n")
	}
	broker := ""
	if s.Broker != "" {
		broker = "\n" + strings.TrimRight("  "+strings.ReplaceAll(strings.TrimSpace(s.Broker), "\n", "\n  "), " ")
	}
	writeFile(t, d.cfg, fmt.Sprintf(`trust_domain: example.org
data_dir: %[1]s/server
bind_address: 127.0.0.1:0
http_address: 127.0.0.1:0
log: {level: info}%[4]s
broker:
  kek_file: %[1]s/broker.kek
  policy_file: %[1]s/policy.yaml%[2]s
  credentials:
%[3]s
`, dir, broker, indent(s.Credentials), serverKeys(s.Server)))
	d.startServer(t)
	writeFile(t, d.bundle, signet(t, "bundle", "show", "--admin-socket", d.adminSock))
	nodeID := "spiffe://example.org/node/" + s.Node
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", d.adminSock, "--spiffe-id", nodeID))
	workloads := s.Workloads
	if len(workloads) == 0 {
		workloads = map[string]string{"spiffe://example.org/app": fmt.Sprintf("unix:uid:%d", os.Getuid())}
	}
	for id, sel := range workloads {
		signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", nodeID, "--spiffe-id", id, "--selector", sel)
	}
	if err := os.MkdirAll(filepath.Dir(d.socket), 0o755); err != nil {
		t.Fatal(err)
	}
	start(t, "agent", "agent", "run", "--server-address", d.addr, "--trust-bundle", d.bundle, "--join-token", token,
		"--socket", d.socket, "--data-dir", filepath.Join(dir, "agent"), "--sync-interval", "200ms")
	if err := os.Chmod(filepath.Dir(d.socket), 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// serverKeys renders extra top-level configuration keys after a newline.
func serverKeys(block string) string {
	if block = strings.TrimSpace(block); block == "" {
		return ""
	}
	return "\n" + block
}

// startServer (re)starts the server and waits for its health check. Its
// listeners bind port 0; addr and broker are what it bound the first time
// (a restarted server is on new ports: only its admin socket is the same).
func (d *brokerDeployment) startServer(t *testing.T) *proc {
	t.Helper()
	d.server = start(t, "server", "server", "run", "--config", d.cfg)
	addr, https := serverAddrs(t, d.server)
	if d.addr == "" {
		d.addr, d.broker = addr, "https://"+https
	}
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", d.adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	return d.server
}

// putSecret runs `signet secret put|rotate NAME` with the value on stdin,
// so that no file holds it.
func (d *brokerDeployment) putSecret(t *testing.T, verb, name, value string) {
	t.Helper()
	cmd := exec.Command(signetBin, "secret", verb, name, "--from-file", "-", "--admin-socket", d.adminSock)
	cmd.Stdin = strings.NewReader(value)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret %s %s: %v %s", verb, name, err, out)
	}
}

// secretValue is a random value for a static secret.
func secretValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return "sk_test_" + hex.EncodeToString(b)
}
