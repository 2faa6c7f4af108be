package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/nodeattest/sshpop"
)

// sshKeygen runs ssh-keygen in dir.
func sshKeygen(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("ssh-keygen", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestSSHPoP runs an sshpop agent whose host certificate ssh-keygen made
// here: it gets SVIDs for a workload under a node alias of its principal,
// re-attests on its own after its data dir is wiped, and a host
// certificate of another CA is refused.
func TestSSHPoP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not found: apt-get install -y openssh-client")
	}
	keys := t.TempDir()
	sshKeygen(t, keys, "-q", "-t", "ed25519", "-f", "ca", "-N", "", "-C", "e2e host ca")
	sshKeygen(t, keys, "-q", "-t", "ed25519", "-f", "host_key", "-N", "", "-C", "host-1")
	sshKeygen(t, keys, "-q", "-s", "ca", "-I", "host-1", "-h", "-n", "host-1.example.org", "host_key.pub")
	caPub, err := os.ReadFile(filepath.Join(keys, "ca.pub"))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(keys, "ssh-host-ca.pub")
	writeFile(t, caFile, "# e2e host CA\n@cert-authority *.example.org "+string(caPub))
	hostPub, err := os.ReadFile(filepath.Join(keys, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	agentID := "spiffe://example.org/signet/agent/sshpop/" + sshpop.Fingerprint(pub)

	d := deployWithAttestors(t, "  sshpop: {cert_authorities_path: "+caFile+"}")
	want := d.aliasWorkload(t, "ssh", "sshpop:principal:host-1.example.org")
	section := "  sshpop: {host_key_path: " + filepath.Join(keys, "host_key") + ", host_cert_path: " + filepath.Join(keys, "host_key-cert.pub") + "}"
	cfg, dataDir, socket := d.agentConfig(t, "agent", section)

	agent := start(t, "agent", "agent", "run", "--config", cfg)
	if got := fetchID(t, socket); got != want {
		t.Fatalf("workload SVID = %s, want %s", got, want)
	}
	attestedAs(t, agent, agentID)

	t.Run("re-attests with no token after its data dir is wiped", func(t *testing.T) {
		agent.stop()
		if err := os.RemoveAll(dataDir); err != nil {
			t.Fatal(err)
		}
		again := start(t, "agent (wiped)", "agent", "run", "--config", cfg)
		if got := fetchID(t, socket); got != want {
			t.Fatalf("workload SVID after re-attestation = %s, want %s", got, want)
		}
		attestedAs(t, again, agentID)
		again.stop()
	})

	t.Run("a host certificate of another CA is refused", func(t *testing.T) {
		sshKeygen(t, keys, "-q", "-t", "ed25519", "-f", "other_ca", "-N", "")
		sshKeygen(t, keys, "-q", "-t", "ed25519", "-f", "other_key", "-N", "")
		sshKeygen(t, keys, "-q", "-s", "other_ca", "-I", "host-2", "-h", "-n", "host-2.example.org", "other_key.pub")
		ocfg, _, _ := d.agentConfig(t, "other", "  sshpop: {host_key_path: "+filepath.Join(keys, "other_key")+
			", host_cert_path: "+filepath.Join(keys, "other_key-cert.pub")+"}")
		_, errOut, err := runWithTimeout(t, 30*time.Second, "agent", "run", "--config", ocfg)
		if err == nil || !strings.Contains(errOut, "node attestation failed") {
			t.Errorf("agent with another CA's host certificate: %v, stderr %q; want it to exit saying node attestation failed", err, errOut)
		}
		if !strings.Contains(d.server.out.String(), "not in cert_authorities_path") {
			t.Errorf("server log does not say why the host certificate was refused")
		}
	})

	t.Run("a user certificate is refused on the agent", func(t *testing.T) {
		sshKeygen(t, keys, "-q", "-t", "ed25519", "-f", "user_key", "-N", "")
		sshKeygen(t, keys, "-q", "-s", "ca", "-I", "alice", "-n", "alice", "user_key.pub")
		ucfg, _, _ := d.agentConfig(t, "user", "  sshpop: {host_key_path: "+filepath.Join(keys, "user_key")+
			", host_cert_path: "+filepath.Join(keys, "user_key-cert.pub")+"}")
		_, errOut, err := runWithTimeout(t, 30*time.Second, "agent", "run", "--config", ucfg)
		if err == nil || !strings.Contains(errOut, "is a user certificate") {
			t.Errorf("agent with a user certificate: %v, stderr %q; want an error saying it is a user certificate", err, errOut)
		}
	})
}
