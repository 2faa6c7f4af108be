package workload

import (
	"context"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthPrefix is the gRPC health service. Its calls need no
// workload.spiffe.io header: probes (`signet healthcheck`, grpc_health_probe)
// don't send it, and the answer reveals nothing about any identity.
const healthPrefix = "/grpc.health.v1.Health/"

// HealthReporter is an optional capability of a Source that can be
// degraded while it serves: an agent whose own SVID expired keeps serving
// the SVIDs it holds but cannot get new ones. Health returns nil when all
// is well and otherwise an error saying, in words an operator can act on,
// what the source is waiting for.
type HealthReporter interface {
	Health(ctx context.Context) error
}

// health reports NOT_SERVING until the Source has synced and SERVING after.
// When the Source is a HealthReporter with a problem, Check fails with
// FailedPrecondition carrying the problem's text instead, so that probes
// (`signet healthcheck --agent-socket`) can show it.
type health struct {
	healthpb.UnimplementedHealthServer
	src Source
}

// Check implements the gRPC health protocol for the whole server (any
// service name).
func (h health) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if r, ok := h.src.(HealthReporter); ok {
		if err := r.Health(ctx); err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.src.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}
