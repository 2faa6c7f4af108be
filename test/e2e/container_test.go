package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestContainersAreNotTheHost runs a real server and agent, registers an
// entry for this test's uid made only of unix selectors, and fetches an
// SVID with the signet CLI (a go-spiffe Workload API client) twice: on the
// host, where it gets the entry, and in a new PID namespace (unshare --pid
// --fork), where the same uid is a containerized caller and is refused.
// With unix:container:true on an entry, the containerized caller gets that
// entry's SVID, and only that one.
func TestContainersAreNotTheHost(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed; .ci/run installs it")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "true").CombinedOutput(); err != nil {
		t.Skipf("the kernel refuses a new PID namespace (%v: %s): run as root", err, bytes.TrimSpace(out))
	}
	t.Parallel()
	dir := t.TempDir()
	serverDir := filepath.Join(dir, "server")
	adminSock := filepath.Join(serverDir, "admin.sock")
	socket := filepath.Join(dir, "agent.sock")
	nodeID := "spiffe://example.org/node/containers"
	uid := strconv.Itoa(os.Getuid())

	server := start(t, "server", "server", "run", "--trust-domain", "example.org", "--data-dir", serverDir,
		"--bind-address", "127.0.0.1:0", "--log-level", "debug", "--log-format", "text")
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	addr, _ := serverAddrs(t, server)
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundlePath, []byte(signet(t, "bundle", "show", "--admin-socket", adminSock)), 0o644); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(signet(t, "token", "create", "--admin-socket", adminSock, "--spiffe-id", nodeID))
	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/host-only", "--selector", "unix:uid:"+uid)
	start(t, "agent", "agent", "run", "--server-address", addr, "--trust-bundle", bundlePath, "--join-token", token,
		"--socket", socket, "--data-dir", filepath.Join(dir, "agent"), "--sync-interval", "200ms",
		"--log-level", "debug", "--log-format", "text")

	fetch := func(inContainer bool) (string, string, error) {
		args := []string{"svid", "fetch", "--socket", socket, "--timeout", "5s"}
		cmd := exec.Command(signetBin, args...)
		if inContainer {
			cmd = exec.Command(unshare, append([]string{"--pid", "--fork", signetBin}, args...)...)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}

	eventually(t, 30*time.Second, "host caller gets the host entry", func() error {
		out, errOut, err := fetch(false)
		if err != nil || !strings.Contains(out, "spiffe://example.org/host-only") {
			return fmt.Errorf("svid fetch: %v, stdout %q, stderr %q", err, out, errOut)
		}
		return nil
	})

	t.Run("containerized caller with the same uid is refused", func(t *testing.T) {
		out, errOut, err := fetch(true)
		if err == nil || strings.Contains(out, "spiffe://") {
			t.Fatalf("svid fetch in a new PID namespace succeeded: stdout %q", out)
		}
		if !strings.Contains(errOut, "no identity issued") {
			t.Fatalf("svid fetch in a new PID namespace: %v, stderr %q; want PermissionDenied (no identity issued)", err, errOut)
		}
	})

	signet(t, "entry", "create", "--admin-socket", adminSock, "--parent-id", nodeID,
		"--spiffe-id", "spiffe://example.org/in-container", "--selector", "unix:uid:"+uid, "--selector", "unix:container:true")

	t.Run("an entry with unix:container:true admits it", func(t *testing.T) {
		eventually(t, 30*time.Second, "containerized caller gets its SVID", func() error {
			out, errOut, err := fetch(true)
			if err != nil || !strings.Contains(out, "spiffe://example.org/in-container") {
				return fmt.Errorf("svid fetch in a new PID namespace: %v, stdout %q, stderr %q", err, out, errOut)
			}
			if strings.Contains(out, "spiffe://example.org/host-only") {
				return fmt.Errorf("the containerized caller also got the host-only entry: %q", out)
			}
			return nil
		})
		// The host caller is unaffected: it gets the host entry only.
		out, errOut, err := fetch(false)
		if err != nil || !strings.Contains(out, "spiffe://example.org/host-only") || strings.Contains(out, "in-container") {
			t.Errorf("host svid fetch: %v, stdout %q, stderr %q; want host-only alone", err, out, errOut)
		}
	})
}
