// Package deptest guards the dependency boundaries the architecture relies
// on: what runs on every node (the agent, the Workload API, attestation)
// never links the SQL store, the CA (with its private keys) or the secret
// scanner's detector set.
package deptest

import (
	"os/exec"
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
