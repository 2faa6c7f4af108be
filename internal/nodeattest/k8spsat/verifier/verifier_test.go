package verifier_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/k8spsattest"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/verifier"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// nodes is an in-memory node lookup holding nodes with their SVID expiry.
type nodes struct {
	mu sync.Mutex
	m  map[spiffeid.ID]model.Node
}

func (n *nodes) GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if node, ok := n.m[id]; ok {
		return node, nil
	}
	return model.Node{}, errkind.New(errkind.NotFound, "node %s not found", id)
}

func (n *nodes) put(node model.Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[spiffeid.ID]model.Node{}
	}
	n.m[node.SPIFFEID] = node
}

// env is a fake cluster with one node and the agent's pod on it, and a
// verifier configured for it as cluster prod-eu.
type env struct {
	logs  logBuffer
	c     *k8spsattest.Cluster
	v     *verifier.Verifier
	nodes *nodes
	pod   *podRef
	dir   string
}

type podRef struct{ ns, name, uid, node, nodeUID string }

func newEnv(t *testing.T) *env {
	t.Helper()
	c := k8spsattest.Start(t)
	n := c.AddNode("node-a", map[string]string{"topology.kubernetes.io/zone": "eu-1a"})
	p := c.AddPod("signet", "signet-agent-x7k2p", "signet-agent", "node-a", map[string]string{"app": "signet-agent"})
	e := &env{c: c, nodes: &nodes{}, dir: t.TempDir(),
		pod: &podRef{ns: p.Namespace, name: p.Name, uid: string(p.UID), node: n.Name, nodeUID: string(n.UID)}}
	v, err := verifier.New(verifier.Config{Clusters: map[string]verifier.ClusterConfig{
		"prod-eu": {ServiceAccountAllowList: []string{"signet:signet-agent"}, KubeconfigPath: c.Kubeconfig(t, e.dir)},
	}}, verifier.Deps{TrustDomain: td, Nodes: e.nodes, Log: slog.New(slog.NewTextHandler(&e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.v = v
	return e
}

// logBuffer collects log output; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// payload is the agent's payload for a token of the env's pod.
func (e *env) payload(t *testing.T, aud string, ttl time.Duration) []byte {
	t.Helper()
	return e.payloadFor(t, "signet", e.pod.name, aud, ttl)
}

func (e *env) payloadFor(t *testing.T, ns, name, aud string, ttl time.Duration) []byte {
	t.Helper()
	pod := e.c.Pod(ns, name)
	if pod == nil {
		t.Fatalf("no pod %s/%s", ns, name)
	}
	return agentPayload(t, e.dir, "prod-eu", e.c.Token(t, pod, aud, ttl))
}

// agentPayload writes tok where the agent reads it and returns the
// agent's payload.
func agentPayload(t *testing.T, dir, cluster, tok string) []byte {
	t.Helper()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := k8spsat.New(k8spsat.AgentConfig{Cluster: cluster, TokenPath: path})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttestAllowedServiceAccount(t *testing.T) {
	e := newEnv(t)
	res, err := e.v.Attest(t.Context(), e.payload(t, "signet-server", time.Hour), nil)
	if err != nil {
		t.Fatalf("Attest = %v", err)
	}
	want := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod-eu/" + e.pod.nodeUID)
	if res.AgentID != want || !res.CanReattest || !res.FirstUseOnly || res.Existing {
		t.Errorf("Attest = %v (CanReattest %v, FirstUseOnly %v, Existing %v), want %v, true, true, false",
			res.AgentID, res.CanReattest, res.FirstUseOnly, res.Existing, want)
	}
	sel := func(v string) model.Selector { return model.Selector{Type: "k8s_psat", Value: v} }
	wantSels := model.SortSelectors([]model.Selector{
		sel("cluster:prod-eu"), sel("agent_ns:signet"), sel("agent_sa:signet-agent"),
		sel("agent_pod_name:" + e.pod.name), sel("agent_pod_uid:" + e.pod.uid),
		sel("agent_node_name:node-a"), sel("agent_node_uid:" + e.pod.nodeUID),
		sel("agent_node_label:topology.kubernetes.io/zone:eu-1a"), sel("agent_pod_label:app:signet-agent"),
	})
	if diff := cmp.Diff(wantSels, res.Selectors); diff != "" {
		t.Errorf("Attest selectors (-want +got):\n%s", diff)
	}
	for _, s := range res.Selectors {
		if err := s.Validate(); err != nil {
			t.Errorf("selector %v: %v", s, err)
		}
	}
}

func TestAttestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup changes the cluster and returns the payload to attest.
		setup    func(t *testing.T, e *env) []byte
		wantKind errkind.Kind
		wantErr  string
		wantLog  string // in the server's log, when the agent is not told
	}{
		{"service account not on the allow list", func(t *testing.T, e *env) []byte {
			e.c.AddPod("shop", "checkout-1", "checkout", "node-a", nil)
			return e.payloadFor(t, "shop", "checkout-1", "signet-server", time.Hour)
		}, errkind.PermissionDenied, "service account shop:checkout is not on the service_account_allow_list", ""},
		{"forged token", func(t *testing.T, e *env) []byte {
			other := k8spsattest.Start(t) // another signing key
			other.AddNode("node-a", nil)
			pod := e.c.Pod("signet", e.pod.name)
			return agentPayload(t, e.dir, "prod-eu", other.Token(t, pod, "signet-server", time.Hour))
		}, errkind.PermissionDenied, "did not authenticate the token", ""},
		{"expired token", func(t *testing.T, e *env) []byte {
			return e.payload(t, "signet-server", -time.Minute)
		}, errkind.PermissionDenied, "has expired", ""},
		{"token for another audience", func(t *testing.T, e *env) []byte {
			return e.payload(t, "vault", time.Hour)
		}, errkind.PermissionDenied, "is invalid for the target audiences", ""},
		{"token review denied", func(t *testing.T, e *env) []byte {
			e.c.Deny("[invalid bearer token, service account has been deleted]")
			return e.payload(t, "signet-server", time.Hour)
		}, errkind.PermissionDenied, "service account has been deleted", ""},
		{"pod uid mismatch", func(t *testing.T, e *env) []byte {
			p := e.payload(t, "signet-server", time.Hour)
			// The pod is replaced between the review and the pod read.
			e.c.AfterReview(func() { e.c.AddPod("signet", e.pod.name, "signet-agent", "node-a", nil) })
			return p
		}, errkind.PermissionDenied, "but the token is bound to uid", ""},
		{"pod deleted after the review", func(t *testing.T, e *env) []byte {
			p := e.payload(t, "signet-server", time.Hour)
			e.c.AfterReview(func() { e.c.DeletePod("signet", e.pod.name) })
			return p
		}, errkind.PermissionDenied, "get pod signet/signet-agent-x7k2p: not found", ""},
		{"API server unreachable", func(t *testing.T, e *env) []byte {
			p := e.payload(t, "signet-server", time.Hour)
			e.c.Close()
			return p
		}, errkind.Unavailable, "API server unavailable", "connection refused"},
		{"unknown cluster", func(t *testing.T, e *env) []byte {
			return agentPayload(t, e.dir, "staging", e.c.Token(t, e.c.Pod("signet", e.pod.name), "signet-server", time.Hour))
		}, errkind.InvalidArgument, `cluster "staging" is not configured on this server (node_attestors.k8s_psat.clusters has prod-eu)`, ""},
		{"oversized token", func(t *testing.T, e *env) []byte {
			return []byte(`{"cluster":"prod-eu","token":"` + strings.Repeat("a", k8spsat.MaxTokenSize) + `.b.c"}`)
		}, errkind.InvalidArgument, "at most 16384", ""},
		{"not a payload", func(t *testing.T, e *env) []byte {
			return []byte(`{"cluster":"prod-eu","token":"a.b.c","extra":1}`)
		}, errkind.InvalidArgument, "not a k8s_psat payload", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := tc.setup(t, e)
			_, err := e.v.Attest(t.Context(), p, nil)
			if err == nil || errkind.Of(err) != tc.wantKind || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Attest = %v (kind %v), want kind %v containing %q", err, errkind.Of(err), tc.wantKind, tc.wantErr)
			}
			if tok := tokenOf(p); tok != "" && (strings.Contains(err.Error(), tok) || strings.Contains(e.logs.String(), tok)) {
				t.Errorf("Attest error or log holds the token")
			}
			if !strings.Contains(e.logs.String(), tc.wantLog) {
				t.Errorf("server log = %q, want it to contain %q", e.logs.String(), tc.wantLog)
			}
		})
	}
}

// tokenOf returns the token in an agent payload, if it parses.
func tokenOf(p []byte) string {
	pl, err := k8spsat.ParsePayload(p)
	if err != nil {
		return ""
	}
	return pl.Token
}

func TestServerCredentialsRefused(t *testing.T) {
	e := newEnv(t)
	kc := filepath.Join(e.dir, "kubeconfig")
	b, err := os.ReadFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(e.dir, "bad-kubeconfig")
	// Same API server, a credential it does not know.
	if err := os.WriteFile(bad, []byte(replaceToken(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{Clusters: map[string]verifier.ClusterConfig{
		"prod-eu": {ServiceAccountAllowList: []string{"signet:signet-agent"}, KubeconfigPath: bad},
	}}, verifier.Deps{TrustDomain: td, Nodes: e.nodes})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Attest(t.Context(), e.payload(t, "signet-server", time.Hour), nil)
	if errkind.Of(err) != errkind.FailedPrecondition || !strings.Contains(err.Error(), "create on tokenreviews") {
		t.Fatalf("Attest with refused server credentials = %v, want FailedPrecondition naming the RBAC it needs", err)
	}
}

// replaceToken swaps the bearer token of a kubeconfig for another.
func replaceToken(kc string) string {
	var out []string
	for _, l := range strings.Split(kc, "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && k == "token" {
			l = l[:strings.Index(l, "token:")] + "token: not-the-servers-token"
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestOneAgentPerNode(t *testing.T) {
	e := newEnv(t)
	id := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod-eu/" + e.pod.nodeUID)
	now := time.Now()

	// The first agent holds a valid SVID: a second agent on the node (the
	// DaemonSet's pod and an intruder's, or a replaced pod) is refused.
	e.nodes.put(model.Node{SPIFFEID: id, AttestationType: k8spsat.Name, CertNotAfter: now.Add(time.Hour)})
	e.c.AddPod("signet", "signet-agent-second", "signet-agent", "node-a", nil)
	_, err := e.v.Attest(t.Context(), e.payloadFor(t, "signet", "signet-agent-second", "signet-server", time.Hour), nil)
	if errkind.Of(err) != errkind.PermissionDenied || !strings.Contains(err.Error(), "already has a live agent") {
		t.Fatalf("Attest(second agent while the first is live) = %v, want a refusal", err)
	}

	// Once the first agent's SVID has expired, the node may attest again,
	// through the ordinary re-admission (not first use).
	e.nodes.put(model.Node{SPIFFEID: id, AttestationType: k8spsat.Name, CertNotAfter: now.Add(-time.Minute)})
	res, err := e.v.Attest(t.Context(), e.payloadFor(t, "signet", "signet-agent-second", "signet-server", time.Hour), nil)
	if err != nil || res.AgentID != id || res.FirstUseOnly {
		t.Fatalf("Attest(after the first agent's SVID expired) = %v, %v (FirstUseOnly %v), want %v, re-admission", res.AgentID, err, res.FirstUseOnly, id)
	}

	// A banned node is not "live": the store's admission refuses it.
	e.nodes.put(model.Node{SPIFFEID: id, AttestationType: k8spsat.Name, Banned: true, CertNotAfter: now.Add(time.Hour)})
	if _, err := e.v.Attest(t.Context(), e.payload(t, "signet-server", time.Hour), nil); err != nil {
		t.Fatalf("Attest(banned node) = %v, want the verifier to leave the ban to the store", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  verifier.Config
		want []string
	}{
		{"no clusters", verifier.Config{}, []string{"clusters: required"}},
		{"bad entries", verifier.Config{Clusters: map[string]verifier.ClusterConfig{
			"Prod_EU": {ServiceAccountAllowList: []string{"signet:signet-agent"}},
			"prod-eu": {ServiceAccountAllowList: []string{"signet-agent", "a:b:c"}, Audience: "two words"},
			"staging": {},
		}}, []string{
			`clusters: "Prod_EU" is not a cluster name`,
			`clusters.prod-eu.service_account_allow_list[0]: "signet-agent" is not namespace:name`,
			`clusters.prod-eu.service_account_allow_list[1]: "a:b:c" is not namespace:name`,
			`clusters.prod-eu.audience: "two words"`,
			"clusters.staging.service_account_allow_list: required",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	if err := (verifier.Config{Clusters: map[string]verifier.ClusterConfig{"prod-eu": {ServiceAccountAllowList: []string{"signet:signet-agent"}}}}).Validate(); err != nil {
		t.Errorf("Validate(good config) = %v", err)
	}
}

func TestNewVerifierBadKubeconfig(t *testing.T) {
	_, err := verifier.New(verifier.Config{Clusters: map[string]verifier.ClusterConfig{
		"prod-eu": {ServiceAccountAllowList: []string{"signet:signet-agent"}, KubeconfigPath: filepath.Join(t.TempDir(), "missing")},
	}}, verifier.Deps{TrustDomain: td, Nodes: &nodes{}})
	if err == nil || !strings.Contains(err.Error(), "clusters.prod-eu.kubeconfig_path") {
		t.Fatalf("NewVerifier(missing kubeconfig) = %v, want an error naming clusters.prod-eu.kubeconfig_path", err)
	}
}
