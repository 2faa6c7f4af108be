package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/healthz"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/workloadattest"
)

// rpcError turns a domain error into a gRPC status at the boundary. Kinded
// errors carry their caller-safe message; a status from a nested call passes
// through; anything else is internal: logged with a correlation id and
// returned only as "internal error (id=…)".
func (s *Server) rpcError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ke *errkind.Error
	if errors.As(err, &ke) && ke.Kind != errkind.Internal {
		msg, _ := errkind.Public(err)
		return status.Error(errkind.GRPCCode(ke.Kind), msg)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return s.logInternal(ctx, err)
}

func (s *Server) logInternal(ctx context.Context, err error) error {
	msg, id := errkind.Public(err)
	s.log.ErrorContext(ctx, "internal error", "error_id", id, "error", err)
	return status.Error(errkind.GRPCCode(errkind.Internal), msg)
}

const (
	attestMethod = "/signet.agent.v1.Agent/AttestAgent"
	adminPrefix  = "/signet.admin.v1.Admin/"
)

// agentAuthUnary guards the TLS listener: admin methods need the SVID of
// an admin entry; agent methods (other than attestation) need an SVID, and
// their handlers check the node.
func (s *Server) agentAuthUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := s.authorizeTLS(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) agentAuthStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if _, err := s.authorizeTLS(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

func (s *Server) authorizeTLS(ctx context.Context, method string) (context.Context, error) {
	if method == attestMethod {
		return ctx, nil
	}
	_, id, ok := peerSVID(ctx)
	if !ok {
		return ctx, status.Error(errkind.GRPCCode(errkind.Unauthenticated), "an X509-SVID is required (mTLS)")
	}
	if strings.HasPrefix(method, adminPrefix) || strings.HasPrefix(method, inventoryPrefix) {
		if !s.cache.isAdmin(id, s.cfg.Now()) {
			s.log.Warn("admin call denied: caller's SVID is not of an admin entry", "spiffe_id", id.String(), "method", method)
			return ctx, status.Error(errkind.GRPCCode(errkind.PermissionDenied), "caller is not an admin")
		}
		return store.WithActor(ctx, "admin:"+id.String()), nil
	}
	return ctx, nil
}

// adminCredentials reads the admin socket callers' kernel-reported
// credentials during the handshake.
func adminCredentials() credentials.TransportCredentials { return workloadattest.NewCredentials() }

// adminSocketAuth admits root, the server's own user and configured admin
// uids; anyone else is refused whatever the socket's permissions allow.
func (s *Server) adminSocketAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, "/grpc.health.v1.Health/") {
		return h(ctx, req)
	}
	cred, ok := workloadattest.PeerFromContext(ctx)
	if !ok {
		return nil, status.Error(errkind.GRPCCode(errkind.Unauthenticated), "caller credentials unavailable")
	}
	if cred.UID != 0 && cred.UID != uint32(os.Geteuid()) && !slices.Contains(s.cfg.AdminUIDs, cred.UID) {
		s.log.Warn("admin call denied", "uid", cred.UID, "pid", cred.PID, "method", info.FullMethod)
		return nil, status.Error(errkind.GRPCCode(errkind.PermissionDenied), "caller is not an admin")
	}
	return h(store.WithActor(ctx, fmt.Sprintf("admin:uid:%d", cred.UID)), req)
}

// listenAdmin creates the admin socket, owner-only (0600) inside a 0700
// directory when the server owns it.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create admin socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin_socket %s exists and is not a socket: remove it or choose another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("admin_socket %s is in use: is another server running on this data dir?", path)
		}
		_ = os.Remove(path)
	}
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on admin_socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("restrict admin socket: %w", err)
	}
	return l, nil
}

// metrics are the server's Prometheus collectors.
type metrics struct {
	rpcs         *prometheus.CounterVec
	attestations *prometheus.CounterVec
	svidsSigned  *prometheus.CounterVec
	cacheEntries prometheus.Gauge
	cacheRefresh prometheus.Histogram
	gatherer     prometheus.Gatherer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_rpcs_total", Help: "gRPC calls handled, by method and status code.",
		}, []string{"method", "code"}),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_attestations_total", Help: "Node attestations, by method and result (ok, denied, error).",
		}, []string{"method", "result"}),
		svidsSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_svids_signed_total", Help: "SVID signing decisions, by type (x509, jwt) and result (ok, denied, error).",
		}, []string{"type", "result"}),
		cacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signet_server_entry_cache_entries", Help: "Registration entries in the server's cache.",
		}),
		cacheRefresh: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signet_server_entry_cache_refresh_seconds", Help: "Time to apply a change set from the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
	}
	reg.MustRegister(m.rpcs, m.attestations, m.svidsSigned, m.cacheEntries, m.cacheRefresh)
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		m.gatherer = prometheus.DefaultGatherer
	}
	return m
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

// healthChecks are the readiness checks behind /readyz: the store
// answers, the CA has an authority signing, and the APIs are serving.
func (s *Server) healthChecks() map[string]healthz.Check {
	return map[string]healthz.Check{
		"store": func(ctx context.Context) error {
			if err := s.store.Ping(ctx); err != nil {
				return errors.New("store unreachable")
			}
			return nil
		},
		"ca": func(context.Context) error {
			if s.tlsCert.Load() == nil || s.Bundle() == nil {
				return errors.New("no active authority")
			}
			return nil
		},
		"serving": func(context.Context) error {
			if !s.ready.Load() {
				return errors.New("not serving")
			}
			return nil
		},
	}
}
