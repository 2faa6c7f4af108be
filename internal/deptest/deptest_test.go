// Package deptest guards the dependency boundaries the architecture relies
// on: what runs on every node (the agent, the Workload API, attestation)
// never links the SQL store, the CA (with its private keys) or the secret
// scanner's detector set; the slim signet-agent binary's whole import graph
// links none of the server either.
package deptest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestNodeSideDependencies(t *testing.T) {
	nodeSide := []string{
		"github.com/signet-id/signet/internal/agent",
		"github.com/signet-id/signet/internal/workload",
		"github.com/signet-id/signet/internal/workloadattest/...",
		"github.com/signet-id/signet/internal/nodeattest/...",
		"github.com/signet-id/signet/internal/model",
		// The workload-side clients of the broker.
		"github.com/signet-id/signet/internal/brokerclient",
		"github.com/signet-id/signet/internal/execsup",
		"github.com/signet-id/signet/internal/helper",
		"github.com/signet-id/signet/internal/gateway",
		// Tracing (OTel SDK, exporters, otelgrpc/otelhttp) is linked by the
		// agent; the store's SQL instrumentation is not.
		"github.com/signet-id/signet/internal/telemetry",
	}
	forbidden := []string{
		"github.com/signet-id/signet/internal/store",
		"github.com/signet-id/signet/internal/ca",
		"github.com/signet-id/signet/internal/server",
		"github.com/signet-id/signet/internal/scan",
		"modernc.org/sqlite",
		"github.com/jackc/pgx/v5",
		"github.com/pressly/goose/v3",
		"github.com/zricethezav/gitleaks/v8",
		"github.com/XSAM/otelsql",
	}
	// The gateway's postgres egress speaks the PostgreSQL wire protocol
	// (pgx's pgproto3 and pgconn, and what they import); pgx's SQL driver,
	// pool and database/sql adapter stay forbidden.
	allowed := []string{
		"github.com/jackc/pgx/v5/pgproto3",
		"github.com/jackc/pgx/v5/pgconn",
		"github.com/jackc/pgx/v5/pgtype",
		"github.com/jackc/pgx/v5/internal",
	}
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, nodeSide...)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
deps:
	for _, dep := range strings.Fields(string(out)) {
		for _, a := range allowed {
			if dep == a || strings.HasPrefix(dep, a+"/") {
				continue deps
			}
		}
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("node-side packages depend on %s; see `go list -deps` of %v", dep, nodeSide)
			}
		}
	}
}

// TestSlimAgentBinary guards cmd/signet-agent's whole import graph: none of
// the server (store, CA, SQL drivers and migrations, scanner and gitleaks,
// console, the broker and its credential providers, inventory, the admin
// and agent API servers), no policy engine (cel-go), no server-side
// plugin list (internal/builtin; the agent's half is builtin/agentside)
// and nothing of Kubernetes' client libraries (k8s.io/*, sigs.k8s.io/*).
func TestSlimAgentBinary(t *testing.T) {
	forbidden := []string{
		"github.com/signet-id/signet/internal/store",
		"github.com/signet-id/signet/internal/ca",
		"github.com/signet-id/signet/internal/server",
		"github.com/signet-id/signet/internal/scan",
		"github.com/signet-id/signet/internal/console",
		"github.com/signet-id/signet/internal/inventory",
		"github.com/signet-id/signet/internal/inventoryapi",
		"github.com/signet-id/signet/internal/adminapi",
		"github.com/signet-id/signet/internal/agentapi",
		"github.com/signet-id/signet/internal/tokenapi/svidissuer",
		"github.com/signet-id/signet/internal/broker",
		"github.com/signet-id/signet/internal/policy",
		"github.com/signet-id/signet/internal/ci",
		"github.com/signet-id/signet/internal/devenv",
		"github.com/signet-id/signet/internal/gateway",
		"github.com/signet-id/signet/internal/testenv",
		"modernc.org/sqlite",
		"github.com/jackc/pgx/v5",
		"github.com/go-sql-driver/mysql",
		"github.com/pressly/goose/v3",
		"github.com/zricethezav/gitleaks/v8",
		"cel.dev/cel-go",
		"github.com/google/cel-go",
		// Kubernetes' client and API machinery: the agent halves of
		// k8s_psat and the k8s workload attestor read a token file and the
		// kubelet's JSON with the standard library; the client-go verifier
		// is k8spsat/verifier, linked by the server only.
		"k8s.io/client-go",
		"k8s.io/apimachinery",
		"k8s.io/api",
		"k8s.io/klog",
		"k8s.io/kube-openapi",
		"k8s.io/utils",
		"sigs.k8s.io",
		"github.com/signet-id/signet/internal/nodeattest/k8spsat/verifier",
		// Libraries whose package init every idle agent would pay for, for
		// a few types: Envoy's Go API (SDS has its own wire-equal subset of
		// its messages, internal/gen/signet/envoysds) and moby's API types
		// with OCI image-spec and go-digest (the docker attestor decodes
		// the four fields it reads).
		"github.com/envoyproxy/go-control-plane",
		"github.com/cncf/xds",
		"github.com/envoyproxy/protoc-gen-validate",
		"github.com/moby/moby",
		"github.com/opencontainers",
	}
	// The agent's Workload API client of the broker decodes the broker's
	// wire types; the broker itself (leases, policy, providers) stays out.
	allowed := []string{"github.com/signet-id/signet/internal/broker/wire"}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/signet-id/signet/cmd/signet-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps of cmd/signet-agent gave %d packages, want the whole graph", len(deps))
	}
	seen := map[string]bool{}
	for _, dep := range deps {
		seen[dep] = true
	}
	// The guard must look at the graph that matters: the agent is in it.
	for _, want := range []string{"github.com/signet-id/signet/internal/agent", "github.com/signet-id/signet/internal/workload"} {
		if !seen[want] {
			t.Fatalf("cmd/signet-agent does not link %s: is the guard looking at the right binary?", want)
		}
	}
next:
	for _, dep := range deps {
		for _, a := range allowed {
			if dep == a {
				continue next
			}
		}
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("cmd/signet-agent links %s (see `go list -deps ./cmd/signet-agent`)", dep)
			}
		}
	}
}

// TestSlimAgentBuildTags: the slim agent's build tags (the Makefile's
// AGENT_TAGS) are the ones the Dockerfile and the e2e benchmark build it
// with, and with them it links neither grpc's golang.org/x/net/trace nor
// html/template.
func TestSlimAgentBuildTags(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^AGENT_TAGS\s*\?=\s*(\S+)\s*$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile: no `AGENT_TAGS ?= …` line")
	}
	tags := string(m[1])
	for file, want := range map[string]string{
		"../../Dockerfile":             "go build -trimpath -tags " + tags + " ",
		"../../test/e2e/bench_test.go": `goBuild(slimBuild.path, "-tags", "` + tags + `"`,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), want) {
			t.Errorf("%s does not build signet-agent with the Makefile's AGENT_TAGS (%s): no %q", file, tags, want)
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-tags", tags, "github.com/signet-id/signet/cmd/signet-agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "golang.org/x/net/trace" || dep == "html/template" {
			t.Errorf("cmd/signet-agent built with -tags %s links %s", tags, dep)
		}
	}
}
