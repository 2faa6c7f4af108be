package k8spsat_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
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

// FuzzDNSNames checks the package's own RFC 1123 checks, which keep the
// agent free of k8s.io/apimachinery, against the API machinery's, which
// the API server applies to the names it hands out.
func FuzzDNSNames(f *testing.F) {
	for _, s := range []string{"prod-eu", "a", "-a", "a-", "Prod", "a.b", "a..b", ".a", "a.", "a_b", "0", "",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127) + "a",
		strings.Repeat("b", 64) + ".c", "é", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := k8spsat.IsDNSLabel(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("IsDNSLabel(%q) = %v, validation.IsDNS1123Label says %v", s, got, want)
		}
		if got, want := k8spsat.IsDNSSubdomain(s), len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
			t.Errorf("IsDNSSubdomain(%q) = %v, validation.IsDNS1123Subdomain says %v", s, got, want)
		}
		if got, want := k8spsat.CheckClusterName(s) == nil, len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("CheckClusterName(%q) accepted = %v, want %v", s, got, want)
		}
	})
}
