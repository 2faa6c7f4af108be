package telemetry_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-id/signet/internal/telemetry"
)

// tracingModes are the three ways a listener can be built: without the
// option at all (before tracing existed), with tracing off (the option for
// a nil provider) and with tracing on (every call sampled, spans batched to
// an exporter that drops them: the cost of making spans, not shipping them).
func tracingModes(b *testing.B) []struct {
	name string
	tp   trace.TracerProvider
	none bool
} {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return []struct {
		name string
		tp   trace.TracerProvider
		none bool
	}{{"before", nil, true}, {"off", nil, false}, {"on", tp, false}}
}

// BenchmarkGRPCUnary is one unary call (gRPC health Check) over a unix
// socket per op.
func BenchmarkGRPCUnary(b *testing.B) {
	for _, m := range tracingModes(b) {
		b.Run(m.name, func(b *testing.B) {
			var opts []grpc.ServerOption
			if !m.none {
				opts = append(opts, telemetry.GRPCServerOption(m.tp))
			}
			gs := grpc.NewServer(opts...)
			healthpb.RegisterHealthServer(gs, health.NewServer())
			ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "s.sock"))
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = gs.Serve(ln) }()
			defer gs.Stop()
			cc, err := grpc.NewClient("unix://"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			hc := healthpb.NewHealthClient(cc)
			ctx := context.Background()
			if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHTTPHandler is one request through a ServeMux handler per op,
// in process (httptest.ResponseRecorder): the handler's own cost.
func BenchmarkHTTPHandler(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, m := range tracingModes(b) {
		b.Run(m.name, func(b *testing.B) {
			h := http.Handler(mux)
			if !m.none {
				h = telemetry.HTTPHandler(m.tp, "health", mux)
			}
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
