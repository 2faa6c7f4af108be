package agentcli

import (
	"context"
	"log/slog"
	"time"

	"github.com/signet-id/signet/internal/telemetry"
)

// StartTracing configures tracing from the OTEL_* environment (off unless it
// asks for it) for service, and returns it with the function that flushes
// and stops it, waiting at most five seconds. `server run` and `agent run`
// of both binaries use it.
func StartTracing(ctx context.Context, service string, log *slog.Logger) (*telemetry.Tracing, func(), error) {
	t, err := telemetry.FromEnv(ctx, service)
	if err != nil {
		return nil, nil, err
	}
	if t.Provider() != nil {
		log.Info("tracing on (OTEL_* environment)", "service", service)
	}
	return t, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			log.Warn("tracing: flush spans at exit", "err", err)
		}
	}, nil
}
