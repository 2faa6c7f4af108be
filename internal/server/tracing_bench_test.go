package server_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/signet-id/signet/internal/server"
)

// BenchmarkAdminRPCTraced is BenchmarkAdminRPC with tracing on: every call
// sampled, its gRPC, store and SQL spans batched to an exporter that
// discards them (the cost of making spans, not of shipping them).
func BenchmarkAdminRPCTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	benchAdminRPC(b, func(c *server.Config) { c.TracerProvider = tp })
}
