// Package healthz serves the operational HTTP endpoints of the server and
// the agent: /healthz (the process is up), /readyz (every readiness check
// passes) and /metrics (Prometheus).
package healthz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signet-id/signet/internal/edge"
)

// Check is one readiness check; a non-nil error means not ready, and its
// text is shown (so it must not carry secrets).
type Check func(ctx context.Context) error

// Handler serves the three endpoints. checks are evaluated on every /readyz
// request, each with the request's context.
func Handler(checks map[string]Check, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		results := make(map[string]string, len(names))
		code := http.StatusOK
		for _, n := range names {
			results[n] = "ok"
			if err := checks[n](ctx); err != nil {
				results[n], code = err.Error(), http.StatusServiceUnavailable
			}
		}
		writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "checks": results})
	})
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is a running endpoint listener.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// LogMsgListening is the message of the record Listen logs once it has
// bound, with the bound address under LogKeyAddr: a health address on
// port 0 (tests) is found there.
const (
	LogMsgListening = "health listening"
	LogKeyAddr      = "addr"
)

// Listen binds addr (host:port) for h and, when log is non-nil, logs the
// bound address (LogMsgListening, LogKeyAddr).
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on health address %s: %w", addr, err)
	}
	if log != nil {
		log.Info(LogMsgListening, LogKeyAddr, ln.Addr().String())
	}
	// Health checks have no request body; bound it to nothing useful.
	return &Server{ln: edge.Limits{}.Listen(ln), srv: edge.HTTPServer(h, 4<<10)}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx is done, then shuts down within two seconds.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close releases the listener of a server that never ran.
func (s *Server) Close() error { return s.ln.Close() }
