package k8spsat_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestAttestorConfig(t *testing.T) {
	if _, err := k8spsat.New(k8spsat.AgentConfig{}); err == nil || !strings.Contains(err.Error(), "cluster: required") {
		t.Errorf("New(no cluster) = %v, want cluster: required", err)
	}
	a, err := k8spsat.New(k8spsat.AgentConfig{Cluster: "prod-eu", TokenPath: filepath.Join(t.TempDir(), "missing")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Payload(t.Context()); err == nil || !strings.Contains(err.Error(), "token_path") {
		t.Errorf("Payload(missing token file) = %v, want an error naming token_path", err)
	}
}

func TestParseIdentity(t *testing.T) {
	const uid = "0b9b1b4e-0c59-4a4e-8d4b-6a1c1f1d2e3f"
	bound := map[string][]string{k8spsat.ExtraPodName: {"agent-1"}, k8spsat.ExtraPodUID: {uid}}
	for _, tc := range []struct {
		name, user string
		extra      map[string][]string
		want       string // error text; empty: accepted
	}{
		{"projected token", "system:serviceaccount:signet:signet-agent", bound, ""},
		{"legacy secret token (not bound to a pod)", "system:serviceaccount:signet:signet-agent", nil, "not bound to one pod"},
		{"two pods", "system:serviceaccount:signet:signet-agent",
			map[string][]string{k8spsat.ExtraPodName: {"a", "b"}, k8spsat.ExtraPodUID: {uid}}, "not bound to one pod"},
		{"a user, not a service account", "alice", bound, `token user "alice" is not a service account`},
		{"a node", "system:node:node-a", bound, "not a service account"},
		{"malformed service account", "system:serviceaccount:Signet:", bound, "not a service account username"},
		{"uid not a uid", "system:serviceaccount:signet:signet-agent",
			map[string][]string{k8spsat.ExtraPodName: {"agent-1"}, k8spsat.ExtraPodUID: {"../x"}}, "is not a UID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := k8spsat.ParseIdentity(tc.user, tc.extra)
			switch {
			case tc.want == "" && (err != nil || id.ServiceAccountName() != "signet:signet-agent" || id.PodUID != uid):
				t.Errorf("ParseIdentity(%q) = %+v, %v, want signet:signet-agent bound to pod %s", tc.user, id, err, uid)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("ParseIdentity(%q) = %v, want an error containing %q", tc.user, err, tc.want)
			}
		})
	}
}
