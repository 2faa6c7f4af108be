package workload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Security header every request must carry (SPIFFE Workload Endpoint, 3).
const (
	headerKey   = "workload.spiffe.io"
	headerValue = "true"
)

// checkHeader enforces the security header. The value is case sensitive and
// must appear exactly once.
func checkHeader(ctx context.Context) error {
	// ValueFromIncomingContext reads the one key without copying the
	// whole metadata map, as FromIncomingContext would on every call.
	if v := metadata.ValueFromIncomingContext(ctx, headerKey); len(v) != 1 || v[0] != headerValue {
		return errkind.New(errkind.InvalidArgument,
			"security header missing from request: set gRPC metadata %s: %s", headerKey, headerValue)
	}
	return nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	mm := s.metrics.forMethod(shortMethod(info.FullMethod))
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, panicError(r)
		}
		err = s.finish(ctx, info.FullMethod, mm, err)
	}()
	if strings.HasPrefix(info.FullMethod, healthPrefix) {
		return handler(ctx, req)
	}
	s.activity.Add(1)
	if s.headerExempt(info.FullMethod) {
		return handler(ctx, req)
	}
	if err := checkHeader(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	mm := s.metrics.forMethod(shortMethod(info.FullMethod))
	ctx := ss.Context()
	mm.streamStarted()
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
		mm.streamEnded()
		err = s.finish(ctx, info.FullMethod, mm, err)
	}()
	if !strings.HasPrefix(info.FullMethod, healthPrefix) {
		s.activity.Add(1)
		ss = countingStream{ss, &s.activity}
	}
	if s.headerExempt(info.FullMethod) {
		return handler(srv, ss)
	}
	if err := checkHeader(ctx); err != nil {
		return err
	}
	return handler(srv, ss)
}

// Activity counts what the server has served: calls, streams opened and
// messages sent on streams, health checks aside. A reading that has not
// moved between two looks means the API was quiet in between.
func (s *Server) Activity() uint64 { return s.activity.Load() }

// countingStream counts each message sent on a stream (an SVID rotated,
// a bundle changed) as activity.
type countingStream struct {
	grpc.ServerStream
	n *atomic.Uint64
}

func (c countingStream) SendMsg(m any) error {
	c.n.Add(1)
	return c.ServerStream.SendMsg(m)
}

// panicError turns a recovered panic into an internal error carrying the
// stack, for the log line only.
func panicError(r any) error {
	return fmt.Errorf("panic: %v\n%s", r, debug.Stack())
}

// finish maps err to the gRPC status the caller sees, counts the RPC and logs
// failures: internal errors with a correlation id the caller also gets, the
// others at a level that matches how interesting they are to an operator.
// fullMethod is the RPC's full method name and mm its metrics (nil when
// metrics are off).
func (s *Server) finish(ctx context.Context, fullMethod string, mm *methodMetrics, err error) error {
	code, out := codes.OK, error(nil)
	level := slog.LevelDebug
	var errID string
	var kerr *errkind.Error
	switch {
	case err == nil:
	// A stream the client ended (every FetchX509SVID of go-spiffe's
	// client): the sentinel itself, tested before errors.As, which
	// reflects on its target.
	case err == context.Canceled:
		code, out = codes.Canceled, errCanceled
	case errors.As(err, &kerr):
		var msg string
		msg, errID = errkind.Public(err)
		code = errkind.GRPCCode(errkind.Of(err))
		out = status.Error(code, msg)
		switch code {
		case codes.Internal:
			level = slog.LevelError
		case codes.PermissionDenied:
			level = slog.LevelInfo
		}
	case errors.Is(err, context.Canceled):
		code, out = codes.Canceled, errCanceled
	case errors.Is(err, context.DeadlineExceeded):
		code, out = codes.DeadlineExceeded, status.Error(codes.DeadlineExceeded, "deadline exceeded")
	default:
		if st, ok := status.FromError(err); ok {
			// Already a status: transport failures while sending.
			code, out = st.Code(), err
			break
		}
		var msg string
		msg, errID = errkind.Public(err)
		code, out, level = codes.Internal, status.Error(codes.Internal, msg), slog.LevelError
	}
	mm.rpcDone(code)
	if err != nil && s.log.Enabled(ctx, level) {
		attrs := []slog.Attr{
			slog.String(logKeyMethod, shortMethod(fullMethod)),
			slog.String(logKeyCode, code.String()),
			slog.String(logKeyErr, err.Error()),
		}
		if p, ok := workloadattest.PeerFromContext(ctx); ok {
			attrs = append(attrs, slog.String(logKeyPeer, p.String()))
		}
		if errID != "" {
			attrs = append(attrs, slog.String(logKeyErrID, errID))
		}
		s.log.LogAttrs(ctx, level, "workload api request failed", attrs...)
	}
	return out
}

// errCanceled is the status of an RPC its caller canceled.
var errCanceled = status.Error(codes.Canceled, "request canceled")

// shortMethod returns the method name of a full gRPC method
// ("/SpiffeWorkloadAPI/FetchX509SVID" → "FetchX509SVID").
func shortMethod(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}
