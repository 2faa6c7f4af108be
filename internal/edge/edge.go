// Package edge is the one place where a Signet listener meets its callers.
// Every gRPC listener of the server runs one interceptor chain built here:
//
//	panic recovery → method table → per-peer rate limit (public methods)
//	→ authentication → handler → error mapping
//
// The method table lists, for every method the listener serves, who may
// call it. A method missing from the table is refused, so a service
// registered on a listener without being listed is unreachable rather than
// open (deny by default); Listener.Verify checks, at start-up and in tests,
// that table and registered services agree exactly.
//
// Handlers return domain errors (internal/errkind); the chain maps them to
// gRPC status codes once. A kinded error reaches the caller with its
// caller-safe message; anything else is logged with a correlation id and
// answered as "internal error (id=…)". A panic in a handler is answered the
// same way, with the stack in the log, and the process stays up.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
)

// Access names who may call a method. Its meaning past Public is the
// listener's Authenticator's to define (an attested agent, an admin).
type Access string

// Access levels used by Signet's listeners.
const (
	// Public methods are open to anyone who reaches the listener (node
	// attestation, health). They are rate-limited per peer.
	Public Access = "public"
	// Agent methods need the SVID of an attested, unbanned node.
	Agent Access = "agent"
	// Admin methods need an administrator: an admin SVID over mTLS, or an
	// admitted uid on the admin socket.
	Admin Access = "admin"
)

// Table maps full gRPC method names ("/pkg.Service/Method") to the access
// they require.
type Table map[string]Access

// Service adds every method of the service desc to t with access a. It
// returns t.
func (t Table) Service(desc grpc.ServiceDesc, a Access) Table {
	for _, m := range desc.Methods {
		t["/"+desc.ServiceName+"/"+m.MethodName] = a
	}
	for _, s := range desc.Streams {
		t["/"+desc.ServiceName+"/"+s.StreamName] = a
	}
	return t
}

// Authenticator admits the caller of method, which requires access, and
// returns the context the handler runs with (carrying who the caller is).
// It is called for every call, Public ones included. A refusal is an error
// kinded Unauthenticated or PermissionDenied whose message never says which
// check failed.
type Authenticator func(ctx context.Context, method string, access Access) (context.Context, error)

// Observer is told the outcome of every call, for metrics.
type Observer func(method string, code codes.Code)

// Listener is the interceptor chain of one listener. Name, Methods and
// Authenticate are required; the zero Limit admits every public call.
type Listener struct {
	// Name identifies the listener in logs ("agent api", "admin socket").
	Name string
	// Methods is the method table; a method not in it is refused.
	Methods Table
	// Authenticate admits callers; see Authenticator.
	Authenticate Authenticator
	// Limit, when set, bounds public calls per peer.
	Limit *PeerLimiter
	// Log receives internal errors and panics; nil discards.
	Log *slog.Logger
	// Observe, when set, is told every call's status code.
	Observe Observer
}

// errNotListed is what a caller of an unlisted method gets.
var errNotListed = errkind.New(errkind.PermissionDenied, "method is not available on this listener")

// errRateLimited is what a peer over its public-call budget gets.
var errRateLimited = status.Error(codes.ResourceExhausted, "too many requests from this address: slow down and retry later")

func (l *Listener) log() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

// admit runs the checks that precede the handler: table, rate limit,
// authentication.
func (l *Listener) admit(ctx context.Context, method string) (context.Context, error) {
	access, ok := l.Methods[method]
	if !ok {
		l.log().WarnContext(ctx, "call refused: method not in the listener's table", "listener", l.Name, "method", logsafe.Truncate(method))
		return ctx, errNotListed
	}
	if access == Public && l.Limit != nil && !l.Limit.Allow(ctx) {
		return ctx, errRateLimited
	}
	return l.Authenticate(ctx, method, access)
}

// Unary returns the chain for unary calls.
func (l *Listener) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, l.panicked(ctx, info.FullMethod, p)
			}
			l.observe(info.FullMethod, err)
		}()
		ctx, err = l.admit(ctx, info.FullMethod)
		if err != nil {
			return nil, l.Status(ctx, err)
		}
		resp, err = h(ctx, req)
		return resp, l.Status(ctx, err)
	}
}

// Stream returns the chain for streaming calls.
func (l *Listener) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		ctx := ss.Context()
		defer func() {
			if p := recover(); p != nil {
				err = l.panicked(ctx, info.FullMethod, p)
			}
			l.observe(info.FullMethod, err)
		}()
		actx, err := l.admit(ctx, info.FullMethod)
		if err != nil {
			return l.Status(ctx, err)
		}
		if actx != ctx {
			ss = &stream{ServerStream: ss, ctx: actx}
		}
		return l.Status(actx, h(srv, ss))
	}
}

// ServerOptions returns the chain as gRPC server options.
func (l *Listener) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(l.Unary()), grpc.ChainStreamInterceptor(l.Stream())}
}

func (l *Listener) observe(method string, err error) {
	if l.Observe != nil {
		l.Observe(method, status.Code(err))
	}
}

func (l *Listener) panicked(ctx context.Context, method string, p any) error {
	msg, id := errkind.Public(errors.New("panic"))
	l.log().ErrorContext(ctx, "panic in handler", "listener", l.Name, "method", method, "error_id", id,
		"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, msg)
}

// Status maps a handler's error to a gRPC status error: kinded errors keep
// their caller-safe message and code, a status error passes through, and
// anything else is logged with a correlation id and answered as "internal
// error (id=…)". It returns nil for nil.
func (l *Listener) Status(ctx context.Context, err error) error {
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
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "call cancelled")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "call deadline exceeded")
	}
	msg, id := errkind.Public(err)
	l.log().ErrorContext(ctx, "internal error", "listener", l.Name, "error_id", id, "error", err)
	return status.Error(codes.Internal, msg)
}

// Verify checks that the methods registered on srv and the table agree
// exactly: every registered method has an access level, and every listed
// method is registered (a stale entry would hide a renamed method).
func (l *Listener) Verify(srv *grpc.Server) error {
	registered := map[string]bool{}
	for svc, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			registered["/"+svc+"/"+m.Name] = true
		}
	}
	var missing, stale []string
	for m := range registered {
		if _, ok := l.Methods[m]; !ok {
			missing = append(missing, m)
		}
	}
	for m := range l.Methods {
		if !registered[m] {
			stale = append(stale, m)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%s: registered methods missing from the method table: %s", l.Name, strings.Join(missing, ", ")))
	}
	if len(stale) > 0 {
		errs = append(errs, fmt.Errorf("%s: method table lists unregistered methods: %s", l.Name, strings.Join(stale, ", ")))
	}
	return errors.Join(errs...)
}

// Methods returns the table's method names, sorted.
func (t Table) Methods() []string { return slices.Sorted(maps.Keys(t)) }

// stream carries the authenticated context into a streaming handler.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
