package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv"
)

// TestHelperCredentials drives `signet helper` with credentials: against a
// server process with a broker (a static credential) and an agent
// process: --once writes the rendered credential file (0600) with the
// broker URL the agent learned and runs on_change once; a denial and a
// template that names a missing field fail --once with the reason; the
// daemon replaces a 3 s lease before it expires, so the file follows a
// rotated secret, and runs on_change after the rewrite.
func TestHelperCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	adminSock := filepath.Join(dir, "server", "admin.sock")
	socket := filepath.Join(dir, "agent.sock")
	kek := make([]byte, 32)
	rand.Read(kek)
	writeFile(t, filepath.Join(dir, "broker.kek"), string(kek))
	if err := os.Chmod(filepath.Join(dir, "broker.kek"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policy.yaml"), `
rules:
  - name: app-reads-orders
    credentials: [orders-db]
    when: subject.id == "spiffe://example.org/app" && context.purpose == "nightly-report"
`)
	writeFile(t, filepath.Join(dir, "server.yaml"), fmt.Sprintf(`
trust_domain: example.org
data_dir: %[1]s/server
bind_address: 127.0.0.1:0
http_address: 127.0.0.1:0
log: {level: info}
broker:
  kek_file: %[1]s/broker.kek
  policy_file: %[1]s/policy.yaml
  credentials:
    orders-db: {provider: static, default_ttl: 10m, max_ttl: 1h}
`, dir))
	server := start(t, "server", "server", "run", "--config", filepath.Join(dir, "server.yaml"))
	addr, httpAddr := serverAddrs(t, server)
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	putSecret := func(verb, value string) {
		f := filepath.Join(dir, "secret")
		writeFile(t, f, value+"\n")
		signet(t, "secret", verb, "orders-db", "--from-file", f, "--admin-socket", adminSock)
		os.Remove(f)
	}
	putSecret("put", "pw-one")
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, signet(t, "bundle", "show", "--admin-socket", adminSock))
	nodeID := "spiffe://example.org/node/helpercreds"
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID, "--spiffe-id", "spiffe://example.org/app",
		"--selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundle, "--join-token", token,
		"--socket", socket, "--data-dir", filepath.Join(dir, "agent"), "--sync-interval", "200ms")

	// helperConfig writes a helper.yaml with one credential and returns it.
	helperConfig := func(name, tmpl, extra string) string {
		tp := filepath.Join(dir, name+".tmpl")
		writeFile(t, tp, tmpl)
		p := filepath.Join(dir, name+".yaml")
		writeFile(t, p, fmt.Sprintf(`agent_socket: %s
x509: {dir: %s, cert: svid.pem, key: svid.key}
credentials:
  - name: orders-db
    template: %s
    file: %s
%s`, socket, filepath.Join(dir, name+"-tls"), tp, filepath.Join(dir, name+".properties"), extra))
		return p
	}
	// helperCmd is `signet helper run` with the environment of the test
	// minus SIGNET_BROKER_URL, plus env.
	helperCmd := func(cfg string, once bool, env ...string) *exec.Cmd {
		args := []string{"helper", "run", "--config", cfg, "--log-format", "text"}
		if once {
			args = append(args, "--once", "--timeout", "30s")
		}
		cmd := exec.Command(signetBin, args...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "SIGNET_BROKER_URL=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
		return cmd
	}

	t.Run("once writes the rendered credential 0600", func(t *testing.T) {
		ran := filepath.Join(dir, "once.ran")
		cfg := helperConfig("once", "jdbc.user=app\njdbc.password={{.value}}\n# lease {{.lease_id}} until {{.expires_at}}\n",
			fmt.Sprintf("    context: {purpose: nightly-report}\n    ttl: 15m\non_change: {command: [sh, -c, 'cat %s >> %s']}\n",
				filepath.Join(dir, "once.properties"), ran))
		// The agent may not have its SVIDs or the broker URL yet: --once
		// waits for them within --timeout.
		if out, err := helperCmd(cfg, true).CombinedOutput(); err != nil {
			t.Fatalf("helper run --once: %v\n%s", err, out)
		}
		out, err := os.ReadFile(filepath.Join(dir, "once.properties"))
		if err != nil || !bytes.HasPrefix(out, []byte("jdbc.user=app\njdbc.password=pw-one\n# lease ")) {
			t.Fatalf("credential file %q, %v", out, err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, "once.properties")); fi.Mode().Perm() != 0o600 {
			t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
		}
		if _, err := os.Stat(filepath.Join(dir, "once-tls", "svid.key")); err != nil {
			t.Errorf("x509 files: %v", err)
		}
		if r, _ := os.ReadFile(ran); !bytes.Equal(r, out) {
			t.Errorf("on_change saw %q, want one run seeing the file %q", r, out)
		}
		leases := signet(t, "lease", "list", "--admin-socket", adminSock, "--credential", "orders-db")
		if !strings.Contains(leases, "spiffe://example.org/app") {
			t.Errorf("no lease of spiffe://example.org/app:\n%s", leases)
		}
	})

	t.Run("once fails with the reason", func(t *testing.T) {
		for _, tc := range []struct {
			name, tmpl, extra string
			want              []string
		}{
			{"denied", "{{.value}}", "    context: {purpose: other}\n", []string{"credentials[0] orders-db", "unauthorized_client"}},
			{"missing-field", "{{.password}}", "    context: {purpose: nightly-report}\n",
				[]string{"credential orders-db", "credentials[0].template", `no field "password"`}},
		} {
			cmd := helperCmd(helperConfig(tc.name, tc.tmpl, tc.extra), true)
			var stderr testenv.LogBuffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Errorf("%s: helper run --once succeeded", tc.name)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("%s: stderr %q, want %q", tc.name, stderr.String(), w)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, tc.name+".properties")); err == nil {
				t.Errorf("%s: the credential file was written", tc.name)
			}
		}
	})

	t.Run("daemon renews the lease and runs on_change", func(t *testing.T) {
		ran := filepath.Join(dir, "daemon.ran")
		file := filepath.Join(dir, "daemon.properties")
		cfg := helperConfig("daemon", "password={{.value}}\nlease={{.lease_id}}\n",
			fmt.Sprintf("    context: {purpose: nightly-report}\n    ttl: 3s\non_change: {command: [sh, -c, 'cat %s >> %s'], timeout: 10s}\n", file, ran))
		// The broker from the environment this time.
		cmd := helperCmd(cfg, false, "SIGNET_BROKER_URL=https://"+httpAddr)
		p := &proc{cmd: cmd, out: &testenv.LogBuffer{}}
		cmd.Stdout, cmd.Stderr = p.out, p.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				t.Logf("--- helper output ---\n%s", p.out.String())
			}
		})
		var first []byte
		eventually(t, 30*time.Second, "the first credential file", func() error {
			var err error
			first, err = os.ReadFile(file)
			return err
		})
		if !bytes.HasPrefix(first, []byte("password=pw-one\n")) {
			t.Fatalf("first file %q", first)
		}
		putSecret("rotate", "pw-two")
		eventually(t, 30*time.Second, "the file rewritten from a new lease", func() error {
			b, _ := os.ReadFile(file)
			if !bytes.HasPrefix(b, []byte("password=pw-two\n")) {
				return fmt.Errorf("file %q", b)
			}
			return nil
		})
		eventually(t, 30*time.Second, "on_change after the rewrite", func() error {
			b, _ := os.ReadFile(ran)
			if !bytes.Contains(b, []byte("password=pw-two")) {
				return fmt.Errorf("on_change saw %q", b)
			}
			return nil
		})
		if b, _ := os.ReadFile(ran); !bytes.HasPrefix(b, first) {
			t.Errorf("the first on_change saw %q, want the first file %q", b, first)
		}
		if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
			t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
		}
		logs := p.out.String()
		if !strings.Contains(logs, "exit_status=0") || !strings.Contains(logs, "credential file written") {
			t.Errorf("helper log lacks the writes or on_change's exit status:\n%s", logs)
		}
		if strings.Contains(logs, "pw-one") || strings.Contains(logs, "pw-two") {
			t.Errorf("the helper's log holds the credential:\n%s", logs)
		}
	})
}
