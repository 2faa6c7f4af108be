package builtin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/ca/keymanager/keymanagertest"
	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/awsiid"
	"github.com/signet-id/signet/internal/nodeattest/azuremsi"
	"github.com/signet-id/signet/internal/nodeattest/gcpiit"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat/k8spsattest"
	"github.com/signet-id/signet/internal/nodeattest/nodeattesttest"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
	"github.com/signet-id/signet/internal/nodeattest/sshpop"
	"github.com/signet-id/signet/internal/nodeattest/sshpop/sshpoptest"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/nodeattest/x509pop/x509poptest"
	"github.com/signet-id/signet/internal/plugin"
	"github.com/signet-id/signet/internal/store"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// node parses a YAML snippet into a plugin section.
func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}

// newStore opens a real SQLite store in a temp dir.
func newStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), store.Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// verifierCases builds a conformance case per node attestation method,
// through the registry. Every registered method must have one.
var verifierCases = map[string]func(t *testing.T, st *store.Store) nodeattesttest.VerifierCase{
	// agent_reauth: always on; its agent half is built by the agent from
	// its expired SVID, not from configuration.
	reauth.Name: reauthCase,
	jointoken.Name: func(t *testing.T, st *store.Store) nodeattesttest.VerifierCase {
		reg, err := builtin.NodeVerifiers()
		if err != nil {
			t.Fatal(err)
		}
		v, err := reg.Build(builtin.VerifierDeps{TrustDomain: td, JoinTokens: st, Now: time.Now}, jointoken.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jointoken.Generate()
		if err != nil {
			t.Fatal(err)
		}
		want := spiffeid.RequireFromPath(td, "/node/"+tok[:8])
		if err := st.CreateJoinToken(t.Context(), model.JoinToken{Hash: jointoken.Hash(tok), SPIFFEID: want,
			ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		areg, err := builtin.NodeAttestors()
		if err != nil {
			t.Fatal(err)
		}
		a, err := areg.Build(builtin.AttestorDeps{}, jointoken.Name, node(t, "{token: "+tok+"}"))
		if err != nil {
			t.Fatal(err)
		}
		return nodeattesttest.VerifierCase{Verifier: v, Attestor: a, WantID: want}
	},
	x509pop.Name: func(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
		dir := t.TempDir()
		root := x509poptest.NewCA(t, "node root")
		leaf := root.Intermediate(t, "node intermediate").Issue(t, "node-1")
		bundle := filepath.Join(dir, "node-ca.pem")
		x509poptest.WritePEM(t, bundle, root.Cert)
		certPath, keyPath := leaf.WriteFiles(t, dir)
		return buildCase(t, x509pop.Name, "{ca_bundle_path: "+bundle+"}",
			"{certificate_path: "+certPath+", private_key_path: "+keyPath+"}",
			spiffeid.RequireFromSegments(td, "signet", "agent", "x509pop", x509pop.Fingerprint(leaf.Cert())))
	},
	sshpop.Name: func(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
		dir := t.TempDir()
		ca := sshpoptest.NewCA(t)
		host := ca.Issue(t, "host-1", []string{"host-1.example.org"})
		cas := filepath.Join(dir, "ssh-host-ca.pub")
		sshpoptest.WriteAuthorities(t, cas, "@cert-authority *.example.org "+ca.AuthorizedKey())
		keyPath, certPath := host.WriteFiles(t, dir)
		return buildCase(t, sshpop.Name, "{cert_authorities_path: "+cas+"}",
			"{host_key_path: "+keyPath+", host_cert_path: "+certPath+"}",
			spiffeid.RequireFromSegments(td, "signet", "agent", "sshpop", sshpop.Fingerprint(host.Cert.Key)))
	},
	// The cloud methods read a fake metadata service on 127.0.0.1 made for
	// each case (a fresh instance, so concurrent cases are distinct nodes).
	// Trust-on-first-use methods see their own admissions through
	// cloudtest.Nodes, as they would through the store.
	awsiid.Name: func(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
		signer := cloudtest.NewAWSSigner(t, "conformance")
		doc := cloudtest.NewAWSDocument(t)
		imds := cloudtest.AWSIMDS(t, signer, doc)
		nodes := &cloudtest.Nodes{}
		v := buildVerifier(t, builtin.VerifierDeps{TrustDomain: td, Nodes: nodes, Now: time.Now}, awsiid.Name,
			fmt.Sprintf("{accounts: [%q], certificates: [%q]}", doc.AccountID, signer.CertPEM))
		a := buildAttestor(t, awsiid.Name, fmt.Sprintf("{metadata_url: %q}", imds.URL))
		want := spiffeid.RequireFromSegments(td, "signet", "agent", "aws_iid", doc.AccountID, doc.Region, doc.InstanceID)
		return nodeattesttest.VerifierCase{Verifier: cloudtest.Admitting(v, nodes), Attestor: a, WantID: want}
	},
	gcpiit.Name: func(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
		inst := cloudtest.NewGCPInstance(t)
		md := cloudtest.GCPMetadata(t, inst)
		jwks := cloudtest.GCPJWKS(t)
		v := buildVerifier(t, builtin.VerifierDeps{TrustDomain: td, Now: time.Now}, gcpiit.Name,
			fmt.Sprintf("{projects: [%q], jwks_url: %q}", inst.ProjectID, jwks.URL))
		a := buildAttestor(t, gcpiit.Name, fmt.Sprintf("{metadata_url: %q}", md.URL))
		want := spiffeid.RequireFromSegments(td, "signet", "agent", "gcp_iit", inst.ProjectID, inst.Zone, inst.InstanceID)
		return nodeattesttest.VerifierCase{Verifier: v, Attestor: a, WantID: want}
	},
	azuremsi.Name: func(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
		vm := cloudtest.NewAzureVM(t)
		imds := cloudtest.AzureIMDS(t, vm)
		jwks := cloudtest.AzureJWKS(t)
		nodes := &cloudtest.Nodes{}
		v := buildVerifier(t, builtin.VerifierDeps{TrustDomain: td, Nodes: nodes, Now: time.Now}, azuremsi.Name,
			fmt.Sprintf("{tenants: [%q], jwks_urls: {%q: %q}}", vm.TenantID, vm.TenantID, jwks.URL))
		a := buildAttestor(t, azuremsi.Name, fmt.Sprintf("{metadata_url: %q}", imds.URL))
		want := spiffeid.RequireFromSegments(td, "signet", "agent", "azure_msi", vm.TenantID, vm.PrincipalID)
		return nodeattesttest.VerifierCase{Verifier: cloudtest.Admitting(v, nodes), Attestor: a, WantID: want}
	},
	// Each case has its own fake API server (a fresh node), and admits
	// through the store as the agent API does, so a replay meets the live
	// node it made.
	k8spsat.Name: func(t *testing.T, st *store.Store) nodeattesttest.VerifierCase {
		c := k8spsattest.Start(t)
		n := c.AddNode("node-a", map[string]string{"kubernetes.io/os": "linux"})
		pod := c.AddPod("signet", "signet-agent-1", "signet-agent", n.Name, nil)
		dir := t.TempDir()
		tokenPath := filepath.Join(dir, "token")
		if err := os.WriteFile(tokenPath, []byte(c.Token(t, pod, "signet-server", time.Hour)), 0o600); err != nil {
			t.Fatal(err)
		}
		v := buildVerifier(t, builtin.VerifierDeps{TrustDomain: td, Nodes: st, Now: time.Now}, k8spsat.Name,
			fmt.Sprintf("{clusters: {prod-eu: {service_account_allow_list: [\"signet:signet-agent\"], kubeconfig_path: %q}}}", c.Kubeconfig(t, dir)))
		a := buildAttestor(t, k8spsat.Name, fmt.Sprintf("{cluster: prod-eu, token_path: %q}", tokenPath))
		want := spiffeid.RequireFromSegments(td, "signet", "agent", "k8s_psat", "prod-eu", string(n.UID))
		return nodeattesttest.VerifierCase{Verifier: storeAdmitting{v, st}, Attestor: a, WantID: want}
	},
	// Each case has its own swtpm, whose EK the server allows by hash.
	tpm.Name: func(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
		sim := tpmtest.Start(t)
		h, err := tpm.EKHash(sim.EKPublic(t))
		if err != nil {
			t.Fatal(err)
		}
		reg, err := builtin.NodeVerifiers()
		if err != nil {
			t.Fatal(err)
		}
		v, err := reg.Build(builtin.VerifierDeps{TrustDomain: td, Now: time.Now}, tpm.Name, node(t, "{allowed_ek_hashes: ["+h+"]}"))
		if err != nil {
			t.Fatal(err)
		}
		areg, err := builtin.NodeAttestors()
		if err != nil {
			t.Fatal(err)
		}
		a, err := areg.Build(builtin.AttestorDeps{}, tpm.Name, node(t, "{device: "+sim.Path+"}"))
		if err != nil {
			t.Fatal(err)
		}
		return nodeattesttest.VerifierCase{Verifier: v, Attestor: a, WantID: spiffeid.RequireFromSegments(td, "signet", "agent", "tpm", h)}
	},
}

// storeAdmitting records each node v admits in the store, as the agent API
// does (first-use results through AdmitNewNode), with an agent SVID valid
// for an hour.
type storeAdmitting struct {
	nodeattest.Verifier
	st *store.Store
}

func (a storeAdmitting) Attest(ctx context.Context, p []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	res, err := a.Verifier.Attest(ctx, p, c)
	if err != nil {
		return res, err
	}
	n := model.Node{SPIFFEID: res.AgentID, AttestationType: a.Name(), Selectors: res.Selectors,
		SerialNumber: "01", CertNotAfter: time.Now().Add(time.Hour)}
	if res.FirstUseOnly {
		_, err = a.st.AdmitNewNode(ctx, n)
	} else {
		_, err = a.st.AdmitNode(ctx, n)
	}
	return res, err
}

// buildCase builds both halves of a method through the registries, from
// their YAML sections.
func buildCase(t *testing.T, name, serverYAML, agentYAML string, want spiffeid.ID) nodeattesttest.VerifierCase {
	t.Helper()
	v := buildVerifier(t, builtin.VerifierDeps{TrustDomain: td, Now: time.Now}, name, serverYAML)
	return nodeattesttest.VerifierCase{Verifier: v, Attestor: buildAttestor(t, name, agentYAML), WantID: want}
}

// buildVerifier builds a server half through the registry.
func buildVerifier(t *testing.T, deps builtin.VerifierDeps, name, cfg string) nodeattest.Verifier {
	t.Helper()
	reg, err := builtin.NodeVerifiers()
	if err != nil {
		t.Fatal(err)
	}
	v, err := reg.Build(deps, name, node(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// buildAttestor builds an agent half through the registry.
func buildAttestor(t *testing.T, name, cfg string) nodeattest.Attestor {
	t.Helper()
	reg, err := builtin.NodeAttestors()
	if err != nil {
		t.Fatal(err)
	}
	a, err := reg.Build(builtin.AttestorDeps{}, name, node(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEveryNodeAttestorPassesConformance(t *testing.T) {
	vreg, err := builtin.NodeVerifiers()
	if err != nil {
		t.Fatal(err)
	}
	areg, err := builtin.NodeAttestors()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range vreg.Names() {
		t.Run(name, func(t *testing.T) {
			mk, ok := verifierCases[name]
			if !ok {
				t.Fatalf("node attestor %s has no conformance case: add one to verifierCases", name)
			}
			st := newStore(t)
			nodeattesttest.RunVerifier(t, func(t *testing.T) nodeattesttest.VerifierCase { return mk(t, st) })
			nodeattesttest.Run(t, func(t *testing.T) nodeattest.Attestor { return mk(t, st).Attestor })
			if !areg.Has(name) && name != reauth.Name {
				t.Errorf("%s has a server half but no agent half", name)
			}
		})
	}
}

func TestJoinTokenIsSingleUseThroughTheRegistry(t *testing.T) {
	st := newStore(t)
	c := verifierCases[jointoken.Name](t, st)
	p, _ := c.Attestor.Payload(t.Context())
	if _, err := c.Verifier.Attest(t.Context(), p, nil); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := c.Verifier.Attest(t.Context(), p, nil); err == nil {
		t.Fatalf("second use admitted: a join token is single use")
	}
}

func TestRegistries(t *testing.T) {
	t.Run("duplicate names fail", func(t *testing.T) {
		f := plugin.Factory[int, struct{}]{Name: "x", New: func(struct{}, plugin.Decoder) (int, error) { return 1, nil }}
		if _, err := plugin.New("thing", "things", f, f); err == nil || !strings.Contains(err.Error(), `"x" is registered twice`) {
			t.Errorf("New(duplicate) = %v, want an error naming x", err)
		}
	})
	t.Run("every built-in registry builds", func(t *testing.T) {
		if _, err := builtin.NodeVerifiers(); err != nil {
			t.Error(err)
		}
		if _, err := builtin.NodeAttestors(); err != nil {
			t.Error(err)
		}
		if _, err := builtin.WorkloadAttestors(); err != nil {
			t.Error(err)
		}
	})
	t.Run("unknown names and keys are reported at once with paths", func(t *testing.T) {
		reg, err := builtin.WorkloadAttestors()
		if err != nil {
			t.Fatal(err)
		}
		_, err = reg.BuildAll(builtin.WorkloadDeps{}, config.Plugins{
			"unix":   *node(t, "{discover_workload_path: true, workload_size_limit: -1, hash_all: yes}"),
			"dockr":  *node(t, "{}"),
			"k8s":    *node(t, "{kubelet_url: 'http://127.0.0.1:10255', kubelet_ca_path: /ca, skip_kubelet_verification: true}"),
			"docker": *node(t, "{socket: docker.sock, envs: [A]}"),
		})
		for _, want := range []string{
			"workload_attestors.dockr: unknown workload attestor: use one of docker, k8s, systemd, unix",
			"workload_attestors.k8s.kubelet_url: \"http://127.0.0.1:10255\": the kubelet is asked over https only",
			"workload_attestors.k8s.kubelet_ca_path: set either kubelet_ca_path or skip_kubelet_verification, not both",
			"workload_attestors.docker.envs is not a known key: did you mean workload_attestors.docker.env?",
			"workload_attestors.unix.hash_all is not a known key: use one of discover_workload_path, workload_size_limit",
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("BuildAll = %v\nwant it to contain %q", err, want)
			}
		}
		_, err = reg.Build(builtin.WorkloadDeps{}, "unix", node(t, "{workload_size_limit: -1}"))
		if err == nil || !strings.Contains(err.Error(), "workload_attestors.unix.workload_size_limit: -1 is negative") {
			t.Errorf("Build(negative limit) = %v, want the field path", err)
		}
	})
	t.Run("container and systemd workload attestors build from their sections", func(t *testing.T) {
		reg, err := builtin.WorkloadAttestors()
		if err != nil {
			t.Fatal(err)
		}
		got, err := reg.BuildAll(builtin.WorkloadDeps{}, config.Plugins{
			"k8s":     *node(t, "{kubelet_url: 'https://127.0.0.1:10250', skip_kubelet_verification: true, cache_ttl: 1s, container_wait: 5s}"),
			"docker":  *node(t, "{socket: /run/podman/podman.sock, env: [APP_ROLE]}"),
			"systemd": *node(t, "{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range got {
			names = append(names, a.Name())
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"docker", "k8s", "systemd"}) {
			t.Errorf("BuildAll() names = %v, want docker, k8s, systemd", names)
		}
	})
	t.Run("cloud method configs", func(t *testing.T) {
		vreg, err := builtin.NodeVerifiers()
		if err != nil {
			t.Fatal(err)
		}
		deps := builtin.VerifierDeps{TrustDomain: td, Nodes: &cloudtest.Nodes{}, Now: time.Now}
		for _, tc := range []struct{ name, src, want string }{
			{awsiid.Name, "{}", "node_attestors.aws_iid.certificates: required"},
			{awsiid.Name, "{accounts: [abc]}", "node_attestors.aws_iid.accounts[0]: \"abc\" is not an AWS account ID"},
			{awsiid.Name, "{account: [abc]}", "node_attestors.aws_iid.account is not a known key"},
			{gcpiit.Name, "{}", "node_attestors.gcp_iit.projects: required"},
			{azuremsi.Name, "{}", "node_attestors.azure_msi.tenants: required"},
			{azuremsi.Name, "{tenants: [x]}", "node_attestors.azure_msi.tenants[0]: \"x\" is not a tenant ID"},
			{azuremsi.Name, "{tenants: [00000000-0000-0000-0000-000000000000], jwks_urls: {00000000-0000-0000-0000-000000000001: 'https://k'}}",
				"node_attestors.azure_msi.jwks_urls.00000000-0000-0000-0000-000000000001: not one of tenants"},
			{gcpiit.Name, "{projects: [My_Project], jwks_url: 'http://example.com/certs'}", "node_attestors.gcp_iit.projects[0]: \"My_Project\""},
			{gcpiit.Name, "{projects: [p], jwks_url: 'http://example.com/certs'}", "node_attestors.gcp_iit.jwks_url: \"http://example.com/certs\": want an https URL"},
		} {
			if _, err := vreg.Build(deps, tc.name, node(t, tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build(%s, %s) = %v, want %q", tc.name, tc.src, err, tc.want)
			}
		}
		if _, err := vreg.Build(builtin.VerifierDeps{TrustDomain: td}, awsiid.Name, node(t, "{certificate_files: [/x]}")); err == nil ||
			!strings.Contains(err.Error(), "node lookup") {
			t.Errorf("Build(aws_iid without Nodes) = %v, want an error naming the node lookup", err)
		}
		areg, err := builtin.NodeAttestors()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, src, want string }{
			{awsiid.Name, "{metadata_url: 'ftp://x'}", "node_attestor.aws_iid.metadata_url:"},
			{gcpiit.Name, "{metadata_url: 'http://x/?q=1'}", "node_attestor.gcp_iit.metadata_url:"},
			{azuremsi.Name, "{metadata_url: 'x'}", "node_attestor.azure_msi.metadata_url:"},
			{azuremsi.Name, "{resources: x}", "node_attestor.azure_msi.resources is not a known key"},
		} {
			if _, err := areg.Build(builtin.AttestorDeps{}, tc.name, node(t, tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build(%s, %s) = %v, want %q", tc.name, tc.src, err, tc.want)
			}
		}
		if _, err := areg.Build(builtin.AttestorDeps{}, awsiid.Name, node(t, "{}")); err != nil {
			t.Errorf("Build(aws_iid, {}) = %v, want the defaults", err)
		}
	})
	t.Run("join token agent config", func(t *testing.T) {
		reg, err := builtin.NodeAttestors()
		if err != nil {
			t.Fatal(err)
		}
		for src, want := range map[string]string{
			"{}":                            "node_attestor.join_token.token: required",
			"{token: a, token_file: /x}":    "give one of the two",
			"{token_file: /does/not/exist}": "node_attestor.join_token: token_file:",
		} {
			if _, err := reg.Build(builtin.AttestorDeps{}, jointoken.Name, node(t, src)); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Build(%s) = %v, want %q", src, err, want)
			}
		}
	})
}

// TestEveryKeyManagerPassesConformance runs the key manager suite for every
// registered key manager, built through the registry with its defaults.
func TestEveryKeyManagerPassesConformance(t *testing.T) {
	reg, err := builtin.KeyManagers()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range reg.Names() {
		t.Run(name, func(t *testing.T) {
			keymanagertest.Run(t, keymanagertest.Harness{Open: func(t *testing.T, storage string) ca.KeyManager {
				deps, cfg := builtin.KeyManagerDeps{DataDir: storage}, (*yaml.Node)(nil)
				if name == "sealed" {
					deps.Store, cfg = sealedStore(t, storage)
				}
				km, err := reg.Build(deps, name, cfg)
				if err != nil {
					t.Fatalf("build key manager %s: %v", name, err)
				}
				return km
			}})
		})
	}
	if _, err := builtin.UpstreamAuthorities(); err != nil {
		t.Error(err)
	}
	ureg, _ := builtin.UpstreamAuthorities()
	_, err = ureg.Build(builtin.UpstreamDeps{}, "disk", node(t, "{cert_file: /nonexistent/up.crt}"))
	for _, want := range []string{"upstream_authority.disk.key_file: required"} {
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "upstream_authority.disk: upstream_authority") {
			t.Errorf("Build(bad upstream) = %v, want %q once", err, want)
		}
	}
}

// sealedStore opens (once per storage) the SQLite store and writes the
// KEK file the sealed key manager is configured with.
func sealedStore(t *testing.T, storage string) (*store.Store, *yaml.Node) {
	t.Helper()
	kek := filepath.Join(storage, "ca.kek")
	if _, err := os.Stat(kek); err != nil {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		if err := os.WriteFile(kek, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := sealedStores.Load(storage)
	s, _ := v.(*store.Store)
	if s == nil {
		var err error
		if s, err = store.Open(t.Context(), store.Config{DSN: filepath.Join(storage, "signet.db")}); err != nil {
			t.Fatal(err)
		}
		if prev, loaded := sealedStores.LoadOrStore(storage, s); loaded {
			s.Close()
			s = prev.(*store.Store)
		} else {
			t.Cleanup(func() { sealedStores.Delete(storage); s.Close() })
		}
	}
	return s, node(t, "{kek_file: "+kek+"}")
}

var sealedStores sync.Map // storage dir → *store.Store

func TestProofOfPossessionConfigs(t *testing.T) {
	vreg, err := builtin.NodeVerifiers()
	if err != nil {
		t.Fatal(err)
	}
	areg, err := builtin.NodeAttestors()
	if err != nil {
		t.Fatal(err)
	}
	deps := builtin.VerifierDeps{TrustDomain: td, Now: time.Now}
	for _, tc := range []struct{ name, src, want string }{
		{x509pop.Name, "{}", "node_attestors.x509pop.ca_bundle_path: required"},
		{x509pop.Name, "{ca_bundle: /x}", "node_attestors.x509pop.ca_bundle is not a known key: did you mean node_attestors.x509pop.ca_bundle_path?"},
		{x509pop.Name, "{ca_bundle_path: /does/not/exist.pem}", "node_attestors.x509pop: ca_bundle_path: read x509pop ca bundle: open /does/not/exist.pem"},
		{sshpop.Name, "{}", "node_attestors.sshpop.cert_authorities_path: required"},
		{sshpop.Name, "{cert_authorities_path: /does/not/exist.pub}", "node_attestors.sshpop: cert_authorities_path: read ssh host ca keys: open /does/not/exist.pub"},
	} {
		if _, err := vreg.Build(deps, tc.name, node(t, tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NodeVerifiers().Build(%s, %s) = %v\nwant it to contain %q", tc.name, tc.src, err, tc.want)
		}
	}
	for _, tc := range []struct{ name, src, want string }{
		{x509pop.Name, "{}", "node_attestor.x509pop.certificate_path: required"},
		{x509pop.Name, "{}", "node_attestor.x509pop.private_key_path: required"},
		{x509pop.Name, "{certificate_path: /nope.pem, private_key_path: /nope.key}", "node_attestor.x509pop: certificate_path: read certificate: open /nope.pem"},
		{sshpop.Name, "{}", "node_attestor.sshpop.host_key_path: required"},
		{sshpop.Name, "{}", "node_attestor.sshpop.host_cert_path: required"},
		{sshpop.Name, "{host_key_path: /nope, host_cert_path: /nope-cert.pub}", "node_attestor.sshpop: host_key_path: read host key: open /nope"},
	} {
		if _, err := areg.Build(builtin.AttestorDeps{}, tc.name, node(t, tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NodeAttestors().Build(%s, %s) = %v\nwant it to contain %q", tc.name, tc.src, err, tc.want)
		}
	}
}

// reauthFixture is what an agent_reauth case needs: a CA the server still
// trusts, a node whose last agent SVID, signed by it, has just expired.
type reauthFixture struct {
	nodes map[spiffeid.ID]model.Node
	auths []model.Authority
}

func (f *reauthFixture) GetNode(_ context.Context, id spiffeid.ID) (model.Node, error) {
	n, ok := f.nodes[id]
	if !ok {
		return model.Node{}, errkind.New(errkind.NotFound, "node %s not found", id)
	}
	return n, nil
}

func (f *reauthFixture) ListAuthorities(context.Context) ([]model.Authority, error) {
	return f.auths, nil
}

func reauthCase(t *testing.T, _ *store.Store) nodeattesttest.VerifierCase {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var sn [8]byte
	_, _ = rand.Read(sn[:])
	id := spiffeid.RequireFromPath(td, fmt.Sprintf("/node/%x", sn))
	leafTmpl := &x509.Certificate{SerialNumber: new(big.Int).SetBytes(sn[:]), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(-time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{id.URL()}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	fx := &reauthFixture{
		nodes: map[spiffeid.ID]model.Node{id: {SPIFFEID: id, AttestationType: "join_token", SerialNumber: strings.ToLower(leaf.SerialNumber.Text(16))}},
		auths: []model.Authority{{ID: "ca", Kind: model.AuthorityX509, State: model.StateActive, Certificate: ca.Raw}},
	}
	v := buildVerifier(t, builtin.VerifierDeps{TrustDomain: td, Nodes: fx, Authorities: fx, Now: time.Now}, reauth.Name, "{}")
	a, err := reauth.New([]*x509.Certificate{leaf}, key)
	if err != nil {
		t.Fatal(err)
	}
	return nodeattesttest.VerifierCase{Verifier: v, Attestor: a, WantID: id}
}
