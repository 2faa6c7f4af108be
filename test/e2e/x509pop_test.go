package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/nodeattest/x509pop/x509poptest"
)

// popDeployment is a server process started from a config file with a
// node_attestors section, for the proof-of-possession methods.
type popDeployment struct {
	dir, addr, adminSock, bundlePath string
	server                           *proc
}

// deployWithAttestors starts a server whose config file has the given
// node_attestors section (YAML, indented under the key).
func deployWithAttestors(t *testing.T, nodeAttestors string) *popDeployment {
	t.Helper()
	d := &popDeployment{dir: t.TempDir()}
	serverDir := filepath.Join(d.dir, "server")
	d.adminSock = filepath.Join(serverDir, "admin.sock")
	cfg := filepath.Join(d.dir, "server.yaml")
	writeFile(t, cfg, fmt.Sprintf("trust_domain: example.org\ndata_dir: %s\nbind_address: 127.0.0.1:0\nlog: {level: debug, format: text}\nnode_attestors:\n%s\n",
		serverDir, nodeAttestors))
	d.server = start(t, "server", "server", "run", "--config", cfg)
	eventually(t, 30*time.Second, "server healthcheck", func() error {
		_, errOut, err := signetRun("healthcheck", "--admin-socket", d.adminSock)
		if err != nil {
			return fmt.Errorf("%v: %s", err, errOut)
		}
		return nil
	})
	d.addr, _ = serverAddrs(t, d.server)
	d.bundlePath = filepath.Join(d.dir, "bundle.pem")
	writeFile(t, d.bundlePath, signet(t, "bundle", "show", "--admin-socket", d.adminSock))
	return d
}

// aliasWorkload registers a node alias for nodeSelector and a workload
// entry for the test's uid under it, returning the workload's ID.
func (d *popDeployment) aliasWorkload(t *testing.T, name, nodeSelector string) spiffeid.ID {
	t.Helper()
	alias := "spiffe://example.org/nodes/" + name
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", "spiffe://example.org/signet/server",
		"--spiffe-id", alias, "--selector", nodeSelector)
	id := spiffeid.RequireFromString("spiffe://example.org/workload/" + name)
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", alias, "--spiffe-id", id.String(),
		"--selector", "unix:uid:"+strconv.Itoa(os.Getuid()))
	return id
}

// agentConfig writes an agent config file with the node_attestor section
// (YAML, indented under the key) and returns its path and socket.
func (d *popDeployment) agentConfig(t *testing.T, name, nodeAttestor string) (cfg, dataDir, socket string) {
	t.Helper()
	dataDir, socket = filepath.Join(d.dir, name), filepath.Join(d.dir, name+".sock")
	cfg = filepath.Join(d.dir, name+".yaml")
	writeFile(t, cfg, fmt.Sprintf("server_address: %s\ntrust_bundle: %s\ndata_dir: %s\nsocket: %s\nsync_interval: 200ms\n"+
		"log: {level: debug, format: text}\nnode_attestor:\n%s\n", d.addr, d.bundlePath, dataDir, socket, nodeAttestor))
	return cfg, dataDir, socket
}

// fetchID waits until the Workload API at socket serves an X509-SVID and
// returns its ID.
func fetchID(t *testing.T, socket string) spiffeid.ID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var id spiffeid.ID
	eventually(t, 30*time.Second, "fetch X509-SVID from "+socket, func() error {
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
		defer fcancel()
		svid, err := workloadapi.FetchX509SVID(fctx, workloadapi.WithAddr("unix://"+socket))
		if err != nil {
			return err
		}
		id = svid.ID
		return nil
	})
	return id
}

// attestedAs waits until p's output reports the node attested as agentID.
func attestedAs(t *testing.T, p *proc, agentID string) {
	t.Helper()
	eventually(t, 10*time.Second, "agent log reports attestation as "+agentID, func() error {
		if out := p.out.String(); !strings.Contains(out, "node attested") || !strings.Contains(out, agentID) {
			return fmt.Errorf("no %q line with %s yet", "node attested", agentID)
		}
		return nil
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestX509PoP runs an x509pop agent (its certificate from a CA made here)
// that gets SVIDs for a workload under a node alias, re-attests on its own
// after its data dir is wiped, and an agent whose certificate comes from
// another CA that is refused.
func TestX509PoP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	pkiDir := t.TempDir()
	root := x509poptest.NewCA(t, "e2e node root")
	caPath := filepath.Join(pkiDir, "node-ca.pem")
	x509poptest.WritePEM(t, caPath, root.Cert)
	leaf := root.Intermediate(t, "e2e node intermediate").Issue(t, "node-e2e")
	nodeDir := filepath.Join(pkiDir, "node")
	if err := os.Mkdir(nodeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := leaf.WriteFiles(t, nodeDir)
	agentID := "spiffe://example.org/signet/agent/x509pop/" + x509pop.Fingerprint(leaf.Cert())

	d := deployWithAttestors(t, "  x509pop: {ca_bundle_path: "+caPath+"}")
	want := d.aliasWorkload(t, "x509", "x509pop:subject:cn:node-e2e")
	cfg, dataDir, socket := d.agentConfig(t, "agent", "  x509pop: {certificate_path: "+certPath+", private_key_path: "+keyPath+"}")

	agent := start(t, "agent", "agent", "run", "--config", cfg)
	if got := fetchID(t, socket); got != want {
		t.Fatalf("workload SVID = %s, want %s", got, want)
	}
	attestedAs(t, agent, agentID)
	nodes := signet(t, "agent", "list", "--admin-socket", d.adminSock)
	if !strings.Contains(nodes, agentID) {
		t.Errorf("agent list does not show %s:\n%s", agentID, nodes)
	}

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

	t.Run("a certificate from another CA is refused", func(t *testing.T) {
		other := x509poptest.NewCA(t, "someone else's root").Issue(t, "node-e2e")
		dir := filepath.Join(pkiDir, "other")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		oc, ok := other.WriteFiles(t, dir)
		ocfg, _, _ := d.agentConfig(t, "other", "  x509pop: {certificate_path: "+oc+", private_key_path: "+ok+"}")
		_, errOut, err := runWithTimeout(t, 30*time.Second, "agent", "run", "--config", ocfg)
		if err == nil || !strings.Contains(errOut, "node attestation failed") {
			t.Errorf("agent with another CA's certificate: %v, stderr %q; want it to exit saying node attestation failed", err, errOut)
		}
		if !strings.Contains(d.server.out.String(), "does not verify against ca_bundle_path") {
			t.Errorf("server log does not say why the certificate was refused")
		}
	})

	t.Run("a group-readable key is refused before any attempt", func(t *testing.T) {
		if err := os.Chmod(keyPath, 0o640); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(keyPath, 0o600)
		_, errOut, err := runWithTimeout(t, 30*time.Second, "agent", "run", "--config", cfg)
		if err == nil || !strings.Contains(errOut, "chmod 600 "+keyPath) || !strings.Contains(errOut, "private_key_path") {
			t.Errorf("agent with a 0640 key: %v, stderr %q; want an error naming private_key_path and chmod 600", err, errOut)
		}
	})
}

// runWithTimeout runs a signet command that is expected to exit on its own.
func runWithTimeout(t *testing.T, timeout time.Duration, args ...string) (string, string, error) {
	t.Helper()
	type result struct {
		out, errOut string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, err := signetRun(args...)
		done <- result{out, errOut, err}
	}()
	select {
	case r := <-done:
		return r.out, r.errOut, r.err
	case <-time.After(timeout):
		t.Fatalf("signet %s did not exit within %s", strings.Join(args, " "), timeout)
		return "", "", nil
	}
}
