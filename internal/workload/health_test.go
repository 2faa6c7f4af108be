package workload_test

import (
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestHealthFollowsReadiness(t *testing.T) {
	e := start(t)
	cc, err := grpc.NewClient("unix://"+e.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	for _, ready := range []bool{true, false} {
		e.src.SetReady(ready)
		// No workload.spiffe.io header: probes don't send it.
		resp, err := hc.Check(testCtx(t), &healthpb.HealthCheckRequest{})
		want := healthpb.HealthCheckResponse_NOT_SERVING
		if ready {
			want = healthpb.HealthCheckResponse_SERVING
		}
		if err != nil || resp.GetStatus() != want {
			t.Errorf("Check with ready=%v = %v, %v; want %v", ready, resp.GetStatus(), err, want)
		}
	}
}

func TestHealthReportsTheSourcesProblem(t *testing.T) {
	e := start(t)
	cc, err := grpc.NewClient("unix://"+e.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const why = "agent svid expired: waiting for the server"
	e.src.SetHealth(errors.New(why))
	_, err = healthpb.NewHealthClient(cc).Check(testCtx(t), &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != why {
		t.Errorf("Check with a health problem = %v; want FailedPrecondition %q", err, why)
	}
}
