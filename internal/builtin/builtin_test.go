package builtin_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/nodeattesttest"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
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
			if !areg.Has(name) {
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
			"docker": *node(t, "{}"),
		})
		for _, want := range []string{
			"workload_attestors.docker: unknown workload attestor: use one of unix",
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
