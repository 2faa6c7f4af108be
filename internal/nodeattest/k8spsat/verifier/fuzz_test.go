package verifier_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/k8spsattest"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/verifier"
)

// FuzzAttest sends arbitrary tokens through a verifier and a fake API
// server: every failure is a refusal, never a panic or an internal error.
func FuzzAttest(f *testing.F) {
	c := k8spsattest.Start(f)
	c.AddNode("node-a", nil)
	pod := c.AddPod("signet", "agent-1", "signet-agent", "node-a", nil)
	f.Add(c.Token(f, pod, "vault", time.Hour))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	v, err := verifier.New(verifier.Config{Clusters: map[string]verifier.ClusterConfig{
		"prod-eu": {ServiceAccountAllowList: []string{"signet:signet-agent"}, KubeconfigPath: c.Kubeconfig(f, f.TempDir())},
	}}, verifier.Deps{TrustDomain: td, Nodes: &nodes{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, _ := json.Marshal(k8spsat.Payload{Cluster: "prod-eu", Token: tok})
		_, err := v.Attest(context.Background(), p, nil)
		if k := errkind.Of(err); err == nil || (k != errkind.PermissionDenied && k != errkind.InvalidArgument) {
			t.Fatalf("Attest(fuzzed token) = %v, want a refusal", err)
		}
	})
}
