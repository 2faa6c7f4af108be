package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/nodeattest/k8spsat/k8spsattest"
)

// TestK8sPSAT runs a server whose k8s_psat cluster is a fake API server
// (TLS, real TokenReview, Pod and Node JSON) named by kubeconfig_path, and
// an agent that attests with a projected token signed by the fake's key: it
// gets SVIDs for a workload under a node alias on k8s_psat:cluster. A second
// agent on the same node while the first is live is refused, and so is an
// agent whose service account is not on the allow list.
func TestK8sPSAT(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	c := k8spsattest.Start(t)
	node := c.AddNode("node-a", map[string]string{"topology.kubernetes.io/zone": "eu-1a"})
	pod := c.AddPod("signet", "signet-agent-abcde", "signet-agent", node.Name, nil)
	kdir := t.TempDir()
	kubeconfig := c.Kubeconfig(t, kdir)
	tokenPath := func(name string, tok string) string {
		p := filepath.Join(kdir, name+".token")
		if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	agentID := "spiffe://example.org/signet/agent/k8s_psat/prod-eu/" + string(node.UID)

	d := deployWithAttestors(t, "  k8s_psat:\n    clusters:\n      prod-eu:\n"+
		"        service_account_allow_list: [\"signet:signet-agent\"]\n        kubeconfig_path: "+kubeconfig+"\n")
	alias := "spiffe://example.org/cluster/prod-eu"
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--node", "--spiffe-id", alias, "--selector", "k8s_psat:cluster:prod-eu")
	want := spiffeid.RequireFromString("spiffe://example.org/ns/signet/agent-workload")
	signet(t, "entry", "create", "--admin-socket", d.adminSock, "--parent-id", alias, "--spiffe-id", want.String(),
		"--selector", "unix:uid:"+strconv.Itoa(os.Getuid()))

	cfg, _, socket := d.agentConfig(t, "agent",
		"  k8s_psat: {cluster: prod-eu, token_path: "+tokenPath("agent", c.Token(t, pod, "signet-server", time.Hour))+"}")
	agent := start(t, "agent", "agent", "run", "--config", cfg)
	if got := fetchID(t, socket); got != want {
		t.Fatalf("workload SVID = %s, want %s", got, want)
	}
	attestedAs(t, agent, agentID)
	show := signet(t, "agent", "list", "--admin-socket", d.adminSock, "-o", "json")
	for _, s := range []string{agentID, "agent_node_uid:" + string(node.UID), "agent_pod_name:signet-agent-abcde",
		"agent_node_label:topology.kubernetes.io/zone:eu-1a"} {
		if !strings.Contains(show, s) {
			t.Errorf("agent list does not show %s:\n%s", s, show)
		}
	}

	t.Run("a second agent on the node while the first is live is refused", func(t *testing.T) {
		second := c.AddPod("signet", "signet-agent-intruder", "signet-agent", node.Name, nil)
		scfg, _, _ := d.agentConfig(t, "second",
			"  k8s_psat: {cluster: prod-eu, token_path: "+tokenPath("second", c.Token(t, second, "signet-server", time.Hour))+"}")
		_, errOut, err := runWithTimeout(t, 30*time.Second, "agent", "run", "--config", scfg)
		if err == nil || !strings.Contains(errOut, "node attestation failed") {
			t.Errorf("second agent: %v, stderr %q; want it to exit saying node attestation failed", err, errOut)
		}
		// The server logs the refusal as its answer leaves: wait for it.
		if !d.server.logs("already has a live agent", 5*time.Second) {
			t.Errorf("server log does not say why the second agent was refused")
		}
	})

	t.Run("a service account not on the allow list is refused", func(t *testing.T) {
		other := c.AddNode("node-b", nil)
		p := c.AddPod("shop", "checkout-1", "checkout", other.Name, nil)
		ocfg, _, _ := d.agentConfig(t, "other",
			"  k8s_psat: {cluster: prod-eu, token_path: "+tokenPath("other", c.Token(t, p, "signet-server", time.Hour))+"}")
		_, errOut, err := runWithTimeout(t, 30*time.Second, "agent", "run", "--config", ocfg)
		if err == nil || !strings.Contains(errOut, "node attestation failed") {
			t.Errorf("agent of shop:checkout: %v, stderr %q; want it to exit saying node attestation failed", err, errOut)
		}
		// The server logs the refusal as its answer leaves: wait for it.
		if !d.server.logs("service account shop:checkout is not on the service_account_allow_list", 5*time.Second) {
			t.Errorf("server log does not say why shop:checkout was refused")
		}
	})
}
