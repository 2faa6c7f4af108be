package tpm_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/tpm/tpmtest"
)

func yamlNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}

// TestRegistryConfig checks the errors of both halves' configurations as
// the server and agent report them: with the field path of each problem.
func TestRegistryConfig(t *testing.T) {
	vreg, err := builtin.NodeVerifiers()
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string][]string{
		"{}": {"node_attestors.tpm: ek_ca_path, allowed_ek_hashes: give at least one"},
		"{allowed_ek_hashes: [x, " + strings.Repeat("a", 64) + ", y]}": {
			`node_attestors.tpm.allowed_ek_hashes[0]: "x" is not a SHA-256`,
			`node_attestors.tpm.allowed_ek_hashes[2]: "y" is not a SHA-256`,
		},
		"{ek_ca_path: /nonexistent/roots}": {"node_attestors.tpm: ek_ca_path: /nonexistent/roots: no such file or directory"},
		"{ek_ca: /etc}":                    {"node_attestors.tpm.ek_ca is not a known key: did you mean node_attestors.tpm.ek_ca_path?"},
	} {
		_, err := vreg.Build(builtin.VerifierDeps{TrustDomain: td}, tpm.Name, yamlNode(t, src))
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Build(node_attestors.tpm: %s) = %v\nwant it to contain %q", src, err, w)
			}
		}
	}
	t.Run("dynamic allow list alone", func(t *testing.T) {
		if _, err := vreg.Build(builtin.VerifierDeps{TrustDomain: td, TPMAllowList: allowList{}}, tpm.Name, nil); err != nil {
			t.Errorf("Build(no config, an allow list) = %v, want a verifier", err)
		}
	})

	areg, err := builtin.NodeAttestors()
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		"{device: /nonexistent/tpmrm0}": "node_attestor.tpm: device: /nonexistent/tpmrm0: no such file or directory",
		"{device: tpmrm0}":              `node_attestor.tpm.device: "tpmrm0" is not an absolute path`,
		"{path: /dev/tpmrm0}":           "node_attestor.tpm.path is not a known key: use one of device",
	} {
		if _, err := areg.Build(builtin.AttestorDeps{}, tpm.Name, yamlNode(t, src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Build(node_attestor.tpm: %s) = %v\nwant it to contain %q", src, err, want)
		}
	}
	t.Run("swtpm socket", func(t *testing.T) {
		sim := tpmtest.Start(t)
		if _, err := areg.Build(builtin.AttestorDeps{}, tpm.Name, yamlNode(t, "{device: "+sim.Path+"}")); err != nil {
			t.Errorf("Build(device: swtpm socket) = %v", err)
		}
	})
}
