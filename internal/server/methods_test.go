package server

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/internal/edge"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
)

// TestEveryMethodIsInItsListenersTable enumerates the methods registered on
// both gRPC servers and checks them against the method tables (a method
// missing from a table would be refused; a table entry for no method would
// hide a rename), then pins the access level of every method.
func TestEveryMethodIsInItsListenersTable(t *testing.T) {
	dir := t.TempDir()
	s, err := New(t.Context(), Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir: filepath.Join(dir, "server"), BindAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.closeAll()
	agentSrv, adminSrv, _, err := s.grpcServers()
	if err != nil {
		t.Fatalf("grpcServers: %v", err)
	}
	defer agentSrv.Stop()
	defer adminSrv.Stop()
	checks := []struct {
		name    string
		table   edge.Table
		methods map[string]bool
	}{
		{"agent listener", TLSMethods(), methodsOf(agentSrv.GetServiceInfo())},
		{"admin socket", SocketMethods(), methodsOf(adminSrv.GetServiceInfo())},
	}
	for _, c := range checks {
		if len(c.methods) != len(c.table) {
			t.Errorf("%s: %d methods registered, %d in the table", c.name, len(c.methods), len(c.table))
		}
		for m := range c.methods {
			access, ok := c.table[m]
			if !ok {
				t.Errorf("%s: %s is registered but not in the method table", c.name, m)
				continue
			}
			want := edge.Admin
			switch {
			case m == agentv1.Agent_AttestAgent_FullMethodName:
				want = edge.Public
			case strings.HasPrefix(m, "/signet.agent.v1.Agent/"):
				want = edge.Agent
			case strings.HasPrefix(m, "/grpc.health.v1.Health/"):
				want = edge.Public
			}
			if access != want {
				t.Errorf("%s: %s has access %q, want %q", c.name, m, access, want)
			}
		}
	}
	if _, ok := SocketMethods()[agentv1.Agent_SignX509SVIDs_FullMethodName]; ok {
		t.Errorf("the admin socket serves the agent API")
	}
}

func methodsOf(info map[string]grpc.ServiceInfo) map[string]bool {
	out := map[string]bool{}
	for svc, i := range info {
		for _, m := range i.Methods {
			out["/"+svc+"/"+m.Name] = true
		}
	}
	return out
}
