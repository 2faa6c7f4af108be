package edge_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/edge"
	"github.com/signet-id/signet/internal/errkind"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// healthImpl answers Check by calling fn, so tests choose what happens.
type healthImpl struct {
	healthpb.UnimplementedHealthServer
	fn func(ctx context.Context) error
}

func (h *healthImpl) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := h.fn(ctx); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

type callerKey struct{}

// start serves a Health service behind l on a real socket and returns a
// client.
func start(t *testing.T, l *edge.Listener, fn func(ctx context.Context) error) healthpb.HealthClient {
	t.Helper()
	srv := grpc.NewServer(l.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, &healthImpl{fn: fn})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

const checkMethod = "/grpc.health.v1.Health/Check"

func TestChain(t *testing.T) {
	var logs syncBuffer
	tests := []struct {
		name     string
		methods  edge.Table
		auth     edge.Authenticator
		handler  func(ctx context.Context) error
		wantCode codes.Code
		wantMsg  string
		wantLog  string
	}{
		{
			name:     "method missing from the table is refused",
			methods:  edge.Table{},
			handler:  func(context.Context) error { t.Error("handler ran for an unlisted method"); return nil },
			wantCode: codes.PermissionDenied, wantMsg: "not available on this listener",
		},
		{
			name:    "authenticator refuses",
			methods: edge.Table{checkMethod: edge.Admin},
			auth: func(ctx context.Context, _ string, a edge.Access) (context.Context, error) {
				return ctx, errkind.New(errkind.PermissionDenied, "caller is not an admin")
			},
			handler:  func(context.Context) error { t.Error("handler ran for a refused caller"); return nil },
			wantCode: codes.PermissionDenied, wantMsg: "caller is not an admin",
		},
		{
			name:    "authenticated context reaches the handler",
			methods: edge.Table{checkMethod: edge.Admin},
			auth: func(ctx context.Context, _ string, a edge.Access) (context.Context, error) {
				if a != edge.Admin {
					t.Errorf("access = %q, want admin", a)
				}
				return context.WithValue(ctx, callerKey{}, "alice"), nil
			},
			handler: func(ctx context.Context) error {
				if ctx.Value(callerKey{}) != "alice" {
					return errors.New("no caller in context")
				}
				return nil
			},
			wantCode: codes.OK,
		},
		{
			name:     "kinded error keeps its code and message",
			methods:  edge.Table{checkMethod: edge.Public},
			handler:  func(context.Context) error { return errkind.New(errkind.NotFound, "entry %q not found", "x") },
			wantCode: codes.NotFound, wantMsg: `entry "x" not found`,
		},
		{
			name:     "plain error is internal with an id, cause only in the log",
			methods:  edge.Table{checkMethod: edge.Public},
			handler:  func(context.Context) error { return errors.New("disk on fire at /var/lib/x") },
			wantCode: codes.Internal, wantMsg: "internal error (id=", wantLog: "disk on fire",
		},
		{
			name:     "panic is answered as internal and logged with its stack",
			methods:  edge.Table{checkMethod: edge.Public},
			handler:  func(context.Context) error { panic("boom") },
			wantCode: codes.Internal, wantMsg: "internal error (id=", wantLog: "goroutine",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth := tt.auth
			if auth == nil {
				auth = func(ctx context.Context, _ string, _ edge.Access) (context.Context, error) { return ctx, nil }
			}
			l := &edge.Listener{Name: "test", Methods: tt.methods, Authenticate: auth, Log: slog.New(slog.NewJSONHandler(&logs, nil))}
			c := start(t, l, tt.handler)
			_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
			st, _ := status.FromError(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("Check() = %v, want code %v with %q", err, tt.wantCode, tt.wantMsg)
			}
			if strings.Contains(st.Message(), "disk on fire") {
				t.Errorf("internal cause leaked to the caller: %q", st.Message())
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs.String())
			}
		})
	}
	// The server survived the panic: a further call is answered.
	l := &edge.Listener{Name: "test", Methods: edge.Table{checkMethod: edge.Public},
		Authenticate: func(ctx context.Context, _ string, _ edge.Access) (context.Context, error) { return ctx, nil }}
	calls := 0
	c := start(t, l, func(context.Context) error {
		calls++
		if calls == 1 {
			panic("first call")
		}
		return nil
	})
	_, _ = c.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if _, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("call after a panic: %v, want the server still serving", err)
	}
}

func TestPublicCallsAreRateLimitedPerPeer(t *testing.T) {
	l := &edge.Listener{Name: "test", Methods: edge.Table{checkMethod: edge.Public},
		Authenticate: func(ctx context.Context, _ string, _ edge.Access) (context.Context, error) { return ctx, nil },
		Limit:        edge.NewPeerLimiter(0.001, 3)}
	c := start(t, l, func(context.Context) error { return nil })
	var codesSeen []codes.Code
	for range 5 {
		_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
		codesSeen = append(codesSeen, status.Code(err))
	}
	want := []codes.Code{codes.OK, codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}
	for i := range want {
		if codesSeen[i] != want[i] {
			t.Fatalf("codes = %v, want %v", codesSeen, want)
		}
	}
}

func TestVerify(t *testing.T) {
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	defer srv.Stop()
	full := edge.Table{}.Service(healthpb.Health_ServiceDesc, edge.Public)
	if err := (&edge.Listener{Name: "x", Methods: full}).Verify(srv); err != nil {
		t.Errorf("Verify(complete table) = %v", err)
	}
	missing := edge.Table{checkMethod: edge.Public}
	if err := (&edge.Listener{Name: "x", Methods: missing}).Verify(srv); err == nil || !strings.Contains(err.Error(), "/grpc.health.v1.Health/Watch") {
		t.Errorf("Verify(table without Watch) = %v, want the missing method named", err)
	}
	stale := edge.Table{}.Service(healthpb.Health_ServiceDesc, edge.Public)
	stale["/gone.v1.Svc/Old"] = edge.Admin
	if err := (&edge.Listener{Name: "x", Methods: stale}).Verify(srv); err == nil || !strings.Contains(err.Error(), "/gone.v1.Svc/Old") {
		t.Errorf("Verify(table with a stale method) = %v, want the stale method named", err)
	}
}
