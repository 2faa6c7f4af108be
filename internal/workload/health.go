package workload

import (
	"context"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthPrefix is the gRPC health service. Its calls need no
// workload.spiffe.io header: probes (`signet healthcheck`, grpc_health_probe)
// don't send it, and the answer reveals nothing about any identity.
const healthPrefix = "/grpc.health.v1.Health/"

// health reports SERVING once the Source has synced, NOT_SERVING before.
type health struct {
	healthpb.UnimplementedHealthServer
	src Source
}

// Check implements the gRPC health protocol for the whole server (any
// service name).
func (h health) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.src.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}
