//go:build linux

package unix_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// needUnshare skips the test when unshare(1) is missing or the kernel
// refuses it a new PID namespace (an unprivileged run, or a sandbox).
func needUnshare(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed; .ci/run installs it")
	}
	if out, err := exec.Command(bin, "--pid", "--fork", "true").CombinedOutput(); err != nil {
		t.Skipf("the kernel refuses a new PID namespace (%v: %s): run as root", err, bytes.TrimSpace(out))
	}
	return bin
}

// TestAttestContainerizedCaller runs the caller in a new PID namespace: it
// is marked unix:container:true, and a host caller is not.
func TestAttestContainerizedCaller(t *testing.T) {
	bin := needUnshare(t)
	path, results := serve(t, newAttestor(t, unix.DefaultConfig(), nil))

	selfCall(t, path)
	if r := <-results; r.err != nil || has(r.sels, "container:true") {
		t.Errorf("Attest(host caller) = %v, %v; want no unix:container:true", r.sels, r.err)
	}

	cmd := exec.Command(bin, "--pid", "--fork", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+childCall, "SIGNET_SOCKET="+path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := <-results
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child in a new PID namespace: %v", err)
	}
	if r.err != nil {
		t.Fatalf("Attest(containerized caller) = %v", r.err)
	}
	exe, sum := executable(t)
	for _, want := range []string{"container:true", "path:" + exe, "sha256:" + sum} {
		if !has(r.sels, want) {
			t.Errorf("Attest(containerized caller) = %v, want unix:%s", r.sels, want)
		}
	}
}

// TestAttestContainerizedCallerOwnRoot runs the caller in a new PID
// namespace and its own root directory: unix:path is the path inside that
// root, not the host's.
func TestAttestContainerizedCallerOwnRoot(t *testing.T) {
	bin := needUnshare(t)
	root := t.TempDir()
	copyWithLibs(t, os.Args[0], root, "/opt/app/workload")
	results := serveAt(t, newAttestor(t, unix.DefaultConfig(), nil), filepath.Join(root, "api.sock"))

	cmd := exec.Command(bin, "--pid", "--fork", "--root="+root, "/opt/app/workload", "-test.run=^$")
	cmd.Env = []string{childEnv + "=" + childCall, "SIGNET_SOCKET=/api.sock"}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := <-results
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child in its own root: %v", err)
	}
	if r.err != nil {
		t.Fatalf("Attest(caller in its own root) = %v", r.err)
	}
	_, sum := executable(t)
	for _, want := range []string{"container:true", "path:/opt/app/workload", "sha256:" + sum} {
		if !has(r.sels, want) {
			t.Errorf("Attest(caller in its own root) = %v, want unix:%s", r.sels, want)
		}
	}
	if has(r.sels, "path:"+filepath.Join(root, "opt/app/workload")) {
		t.Errorf("Attest(caller in its own root) = %v: the path is the host's", r.sels)
	}
}

// copyWithLibs copies the executable src to root/dst with the shared
// libraries ldd lists for it (a race-enabled test binary is dynamically
// linked), so that it runs chrooted into root.
func copyWithLibs(t *testing.T, src, root, dst string) {
	t.Helper()
	cp := func(from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, to)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, to), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cp(src, dst)
	out, err := exec.Command("ldd", src).Output()
	if err != nil {
		return // not dynamic ("not a dynamic executable"), or no ldd
	}
	for line := range strings.Lines(string(out)) {
		for f := range strings.FieldsSeq(line) {
			if strings.HasPrefix(f, "/") {
				if real, err := filepath.EvalSymlinks(f); err == nil {
					cp(real, f)
				}
			}
		}
	}
}
