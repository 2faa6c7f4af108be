package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv"
)

// TestExec drives `signet exec` with the built binary against a real
// server and agent: the child sees a static credential in its
// environment; at 2/3 of its 3 s lease signet fetches a fresh one and
// restarts the child (which then sees a rotated value); signals reach the
// child and its exit status is signet's; a refusal and a template naming
// a missing field stop before the child runs; no file under the server's
// or the agent's data dir, and nothing signet logged, holds a value.
func TestExec(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	serverDir, agentDir := filepath.Join(dir, "server"), filepath.Join(dir, "agent")
	adminSock := filepath.Join(serverDir, "admin.sock")
	socket := filepath.Join(dir, "run", "agent.sock")
	key := make([]byte, 32)
	rand.Read(key)
	writeFile(t, filepath.Join(dir, "broker.kek"), string(key))
	os.Chmod(filepath.Join(dir, "broker.kek"), 0o600)
	writeFile(t, filepath.Join(dir, "policy.yaml"), `
rules:
  - name: app-uses-keys
    credentials: [api-key, db-pass]
    when: subject.id == "spiffe://example.org/app" && context.ticket.startsWith("CHG-")
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
    api-key: {provider: static, default_ttl: 3s, max_ttl: 1m}
    db-pass: {provider: static, default_ttl: 1m}
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
	bundle := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundle, signet(t, "bundle", "show", "--admin-socket", adminSock))
	nodeID := "spiffe://example.org/node/exec"
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID, "--spiffe-id", "spiffe://example.org/app",
		"--selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	os.MkdirAll(filepath.Dir(socket), 0o755)
	start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundle, "--join-token", token,
		"--socket", socket, "--data-dir", agentDir, "--sync-interval", "200ms")

	// The values go in through stdin: no file holds them.
	values := []string{secretValue(t), secretValue(t), secretValue(t)}
	putSecret := func(verb, name, value string) {
		t.Helper()
		cmd := exec.Command(signetBin, "secret", verb, name, "--from-file", "-", "--admin-socket", adminSock)
		cmd.Stdin = strings.NewReader(value)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("secret %s %s: %v %s", verb, name, err, out)
		}
	}
	putSecret("put", "api-key", values[0])
	putSecret("put", "db-pass", values[2])
	broker := "https://" + httpAddr
	eventually(t, 30*time.Second, "the agent serves the workload's SVID", func() error {
		_, errOut, err := signetRun("credential", "get", "db-pass", "--socket", socket, "--broker", broker, "--context", "ticket=CHG-0")
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	execArgs := func(args ...string) []string {
		return append([]string{"exec", "--socket", socket, "--broker", broker}, args...)
	}

	// A child that records its start with the credential, and the signals
	// it traps (installed before it says it started).
	script := `trap 'echo "usr1 $$"' USR1
trap 'echo "term $$"; exit 3' TERM
echo "start $$ $LEASE $API_KEY"
while :; do sleep 0.1; done`
	ex := startExec(t, execArgs("--credential", "api-key", "--context", "ticket=CHG-1", "--env", "API_KEY={{.value}}",
		"--env", "LEASE={{.lease_id}}", "--grace", "5s", "--", "/bin/sh", "-c", script)...)
	startLine := regexp.MustCompile(`(?m)^start (\d+) (\S+) (\S+)$`)
	eventually(t, 20*time.Second, "the child started with the credential", func() error {
		if m := startLine.FindStringSubmatch(ex.stdout.String()); m == nil || m[3] != values[0] {
			return fmt.Errorf("child output %q", ex.stdout.String())
		}
		return nil
	})

	t.Run("renewal restarts the child with a fresh credential", func(t *testing.T) {
		putSecret("rotate", "api-key", values[1])
		eventually(t, 20*time.Second, "a child with the rotated value", func() error {
			if !strings.Contains(ex.stdout.String(), " "+values[1]+"\n") {
				return fmt.Errorf("child output %q", ex.stdout.String())
			}
			return nil
		})
		starts := startLine.FindAllStringSubmatch(ex.stdout.String(), -1)
		first, last := starts[0], starts[len(starts)-1]
		if first[1] == last[1] || first[2] == last[2] {
			t.Errorf("first child (pid %s, lease %s) and last (pid %s, lease %s): want another process on another lease",
				first[1], first[2], last[1], last[2])
		}
		if !strings.Contains(ex.stdout.String(), "term "+first[1]+"\n") {
			t.Errorf("the first child was not stopped with SIGTERM before the restart:\n%s", ex.stdout.String())
		}
		if !strings.Contains(ex.stderr.String(), "credentials renewed; restarting the command") {
			t.Errorf("signet did not log the renewal:\n%s", ex.stderr.String())
		}
	})

	t.Run("signals are forwarded and the exit status passes through", func(t *testing.T) {
		// Right after a child started (the next restart is ~2 s away).
		n := len(startLine.FindAllString(ex.stdout.String(), -1))
		eventually(t, 20*time.Second, "a fresh child", func() error {
			if len(startLine.FindAllString(ex.stdout.String(), -1)) <= n {
				return errors.New("no new start yet")
			}
			return nil
		})
		starts := startLine.FindAllStringSubmatch(ex.stdout.String(), -1)
		pid := starts[len(starts)-1][1]
		if err := ex.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the child got SIGUSR1", func() error {
			if !strings.Contains(ex.stdout.String(), "usr1 "+pid+"\n") {
				return fmt.Errorf("child output %q", ex.stdout.String())
			}
			return nil
		})
		if err := ex.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := ex.wait(t); code != 3 {
			t.Errorf("signet exec exited %d after SIGTERM, want the child's 3", code)
		}
		for script, want := range map[string]int{"exit 7": 7, "kill -KILL $$": 128 + 9} {
			c := exec.Command(signetBin, execArgs("--credential", "db-pass", "--context", "ticket=CHG-1", "--env", "V={{.value}}",
				"--", "/bin/sh", "-c", script)...)
			out, err := c.CombinedOutput()
			if code := c.ProcessState.ExitCode(); code != want {
				t.Errorf("signet exec -- sh -c %q exited %d (%v), want %d:\n%s", script, code, err, want, out)
			}
		}
	})

	t.Run("several credentials", func(t *testing.T) {
		out, errOut, err := signetRun(execArgs("--credential", "api-key", "--credential", "db-pass", "--context", "ticket=CHG-2",
			"--env", "A={{.api_key.value}}", "--env", "B={{.db_pass.value}}", "--", "/bin/sh", "-c", `echo "$A $B"`)...)
		if err != nil || out != values[1]+" "+values[2]+"\n" {
			t.Errorf("child printed %q (%v), want both values:\n%s", out, err, errOut)
		}
	})

	t.Run("refusals stop before the child runs", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"denied", []string{"--credential", "api-key", "--env", "V={{.value}}"}, []string{"unauthorized_client: policy denies credential api-key to spiffe://example.org/app"}},
			{"missing field", []string{"--credential", "api-key", "--context", "ticket=CHG-3", "--env", "U={{.username}}"},
				[]string{`--env U: the credential has no field "username"; it has credential, expires_at, lease_id, value`}},
		} {
			c := exec.Command(signetBin, execArgs(append(tc.args, "--", "/bin/sh", "-c", "echo ran")...)...)
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			c.Run()
			if code := c.ProcessState.ExitCode(); code != 1 {
				t.Errorf("%s: exit status %d, want 1", tc.name, code)
			}
			if stdout.Len() > 0 {
				t.Errorf("%s: the child ran: %q", tc.name, stdout.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("%s: stderr %q lacks %q", tc.name, stderr.String(), w)
				}
			}
		}
	})

	t.Run("no credential on disk or in signet's log", func(t *testing.T) {
		for _, root := range []string{serverDir, agentDir} {
			err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				for i, v := range values {
					if bytes.Contains(b, []byte(v)) {
						t.Errorf("%s holds value %d", path, i)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		for i, v := range values {
			if strings.Contains(ex.stderr.String(), v) {
				t.Errorf("signet exec's log holds value %d", i)
			}
		}
	})
}

// secretValue is a random value no file holds by chance.
func secretValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return "sk_test_" + hex.EncodeToString(b)
}

// execProc is a running `signet exec`: the child's stdout apart from
// signet's (and the child's) stderr.
type execProc struct {
	cmd            *exec.Cmd
	stdout, stderr *testenv.LogBuffer
	done           chan struct{}
}

func startExec(t *testing.T, args ...string) *execProc {
	t.Helper()
	p := &execProc{cmd: exec.Command(signetBin, args...), stdout: &testenv.LogBuffer{}, stderr: &testenv.LogBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- signet exec stdout ---\n%s\n--- stderr ---\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

// wait returns the exit status of signet exec.
func (p *execProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		t.Fatal("signet exec did not exit")
		return 0
	}
}
