package server_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/k8spsattest"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// TestK8sPSATOneAgentPerNode races agents of one node through the agent
// API, configured by node_attestors.k8s_psat against a fake API server:
// exactly one is admitted, through the store's first-use admission, and
// every later claim on the node is refused while its SVID is valid.
func TestK8sPSATOneAgentPerNode(t *testing.T) {
	c := k8spsattest.Start(t)
	node := c.AddNode("node-a", nil)
	var sec yaml.Node
	if err := yaml.Unmarshal([]byte(fmt.Sprintf(
		"{clusters: {prod-eu: {service_account_allow_list: [\"signet:signet-agent\"], kubeconfig_path: %q}}}",
		c.Kubeconfig(t, t.TempDir()))), &sec); err != nil {
		t.Fatal(err)
	}
	env := testenv.New(t, func(cfg *server.Config) { cfg.NodeAttestors = map[string]yaml.Node{k8spsat.Name: *sec.Content[0]} })

	const racers = 4
	payloads := make([][]byte, racers+1)
	for i := range payloads {
		pod := c.AddPod("signet", fmt.Sprintf("signet-agent-%d", i), "signet-agent", node.Name, nil)
		p, err := json.Marshal(k8spsat.Payload{Cluster: "prod-eu", Token: c.Token(t, pod, "signet-server", time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		payloads[i] = p
	}
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			_, csr := testenv.NewCSR(t)
			_, errs[i] = attestWith(t, env, k8spsat.Name, payloads[i], csr, nil)
		})
	}
	wg.Wait()
	admitted := 0
	for i, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			admitted++
		case codes.PermissionDenied:
		default:
			t.Errorf("racer %d: %v, want admitted or PermissionDenied", i, err)
		}
	}
	if admitted != 1 {
		t.Fatalf("%d of %d agents of one node admitted, want exactly 1", admitted, racers)
	}
	_, csr := testenv.NewCSR(t)
	if _, err := attestWith(t, env, k8spsat.Name, payloads[racers], csr, nil); status.Code(err) != codes.PermissionDenied {
		t.Errorf("another agent of the node while the first is live: %v, want PermissionDenied", err)
	}
	id := "spiffe://example.org/signet/agent/k8s_psat/prod-eu/" + string(node.UID)
	n, err := env.Admin.GetNode(env.Ctx(), &adminv1.GetNodeRequest{SpiffeId: id})
	if err != nil {
		t.Fatalf("GetNode(%s): %v", id, err)
	}
	if n.GetAttestationType() != k8spsat.Name {
		t.Errorf("node attestation type = %q, want k8s_psat", n.GetAttestationType())
	}
	var found bool
	for _, s := range n.GetSelectors() {
		found = found || (s.GetType() == "k8s_psat" && s.GetValue() == "agent_node_uid:"+string(node.UID))
	}
	if !found {
		t.Errorf("node selectors %v lack k8s_psat:agent_node_uid:%s", n.GetSelectors(), node.UID)
	}
}
