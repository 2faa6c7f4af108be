package k8spsat_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/k8spsattest"
)

// FuzzParsePayload feeds arbitrary agent payloads to the parser: nothing
// may panic, and an accepted payload is one the verifier may send on.
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte(`{"cluster":"prod-eu","token":"eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}`))
	f.Add([]byte(`{"cluster":"Prod","token":""}`))
	f.Add([]byte(`{"cluster":"a","token":"a.b.c"} {}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := k8spsat.ParsePayload(b)
		if err != nil {
			return
		}
		if k8spsat.CheckClusterName(p.Cluster) != nil || p.Token == "" || len(p.Token) > k8spsat.MaxTokenSize {
			t.Fatalf("ParsePayload accepted %+v", p)
		}
	})
}

// FuzzParseIdentity feeds arbitrary TokenReview users to the parser: an
// accepted one must yield valid selectors and agent IDs.
func FuzzParseIdentity(f *testing.F) {
	f.Add("system:serviceaccount:signet:signet-agent", "signet-agent-1", "0b9b1b4e-0c59-4a4e-8d4b-6a1c1f1d2e3f", "node-a")
	f.Add("system:serviceaccount::", "", "", "")
	f.Add("system:node:a", "p", "u", "")
	f.Fuzz(func(t *testing.T, user, pod, uid, node string) {
		extra := map[string][]string{k8spsat.ExtraPodName: {pod}, k8spsat.ExtraPodUID: {uid}}
		if node != "" {
			extra[k8spsat.ExtraNodeName] = []string{node}
		}
		id, err := k8spsat.ParseIdentity(user, extra)
		if err != nil {
			return
		}
		if _, err := k8spsat.AgentID(td, "prod-eu", id.PodUID); err != nil {
			t.Fatalf("ParseIdentity accepted a pod uid that is no ID segment: %v", err)
		}
		for _, s := range k8spsat.Selectors(k8spsat.Node{Cluster: "prod-eu", Identity: id, NodeName: "n", NodeUID: id.PodUID,
			PodLabels: map[string]string{pod: uid}}) {
			if err := s.Validate(); err != nil {
				t.Fatalf("ParseIdentity accepted %q: selector %v: %v", user, s, err)
			}
		}
	})
}

// FuzzAttest sends arbitrary tokens through a verifier and a fake API
// server: every failure is a refusal, never a panic or an internal error.
func FuzzAttest(f *testing.F) {
	c := k8spsattest.Start(f)
	c.AddNode("node-a", nil)
	pod := c.AddPod("signet", "agent-1", "signet-agent", "node-a", nil)
	f.Add(c.Token(f, pod, "vault", time.Hour))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	v, err := k8spsat.NewVerifier(k8spsat.Config{Clusters: map[string]k8spsat.ClusterConfig{
		"prod-eu": {ServiceAccountAllowList: []string{"signet:signet-agent"}, KubeconfigPath: c.Kubeconfig(f, f.TempDir())},
	}}, k8spsat.VerifierDeps{TrustDomain: td, Nodes: &nodes{}})
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
