package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDoctorLive: signet doctor against a running server process and a
// running agent: both healthy (the server's addresses held by itself, the
// agent's socket served), exit 0; the agent's check authenticates the real
// server over TLS.
func TestDoctorLive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	adminSock := filepath.Join(dir, "server", "admin.sock")
	cfg := filepath.Join(dir, "server.yaml")
	writeFile(t, cfg, fmt.Sprintf("trust_domain: example.org\ndata_dir: %s/server\nbind_address: 127.0.0.1:0\n", dir))
	p := start(t, "server", "server", "run", "--config", cfg)
	agentAPI, _ := serverAddrs(t, p)
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})

	out, errOut, err := signetRun("doctor", "--server", "--config", cfg)
	if err != nil || !strings.Contains(out, "a server is running") || !strings.HasSuffix(out, "healthy\n") {
		t.Fatalf("doctor --server on a running server = %v\n%s%s", err, out, errOut)
	}

	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, signet(t, "bundle", "show", "--admin-socket", adminSock))
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", "spiffe://example.org/node/doctor"))
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, token+"\n")
	acfg := filepath.Join(dir, "agent.yaml")
	socket := filepath.Join(dir, "agent.sock")
	writeFile(t, acfg, fmt.Sprintf("server_address: %s\ntrust_bundle: %s\njoin_token_file: %s\ndata_dir: %s/agent\nsocket: %s\nsync_interval: 200ms\n",
		agentAPI, bundle, tokenFile, dir, socket))
	start(t, "agent", "agent", "run", "--config", acfg)
	// Healthy once the agent holds its SVID and serves its socket.
	eventually(t, 30*time.Second, "doctor --agent healthy", func() error {
		out, errOut, err = signetRun("doctor", "--agent", "--config", acfg, "--json")
		var rep struct{ Healthy bool }
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil || err != nil || !rep.Healthy {
			return fmt.Errorf("%v, %v\n%s%s", err, jerr, out, errOut)
		}
		for _, want := range []string{"agent SVID spiffe://example.org/node/doctor is valid", "presents spiffe://example.org/signet/server", "is served (the agent is running)"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("doctor --agent lacks %q:\n%s", want, out)
			}
		}
		return nil
	})

	// The server gone: the agent's doctor names the unreachable server and
	// exits 1.
	p.stop()
	_, _, err = signetRun("doctor", "--agent", "--config", acfg)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("doctor --agent with the server stopped = %v, want exit 1", err)
	}
}
