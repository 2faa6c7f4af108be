package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/agent"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

// These tests run the server and the agent on one fake clock: certificate
// lifetimes, renewals, retries and the reauth window pass in milliseconds,
// without sleeping through them.

const agentTTL = time.Hour

// clockEnv starts a server with a one-hour agent TTL on a fake clock, an
// entry for the test process whose SVIDs outlive the agent's (4h), and an
// agent on the same clock.
func clockEnv(t *testing.T) (*testenv.Env, *testenv.Agent, *testclock.Clock) {
	t.Helper()
	clock := testclock.New(time.Now())
	env := testenv.New(t, testenv.WithNow(clock.Now), func(c *server.Config) { c.AgentTTL = agentTTL })
	e := entry("/web")
	e.X509TtlSeconds = int64(4 * time.Hour / time.Second)
	env.CreateEntry(e)
	a := env.StartAgent(nodeID, func(c *agent.Config) {
		c.Clock = clock
		c.SyncInterval = 5 * time.Second
		c.MaxBackoff = 30 * time.Second
	})
	a.AwaitReady()
	testenv.WaitFor(t, 10*time.Second, "the web SVID", serving(t, a, "spiffe://example.org/web"))
	return env, a, clock
}

// waitingForServer is a condition: the agent reports its SVID expired and
// that it waits for the server.
func waitingForServer(a *testenv.Agent) func() error {
	return func() error {
		err := a.Synced(context.Background())
		if err == nil || !strings.Contains(err.Error(), "waiting for the server") {
			return fmt.Errorf("Synced() = %v, want it waiting for the server", err)
		}
		return nil
	}
}

// logged is a condition: the agent logged line.
func logged(a *testenv.Agent, line string) func() error {
	return func() error {
		if !strings.Contains(a.Logs.String(), line) {
			return fmt.Errorf("not logged yet: %q", line)
		}
		return nil
	}
}

// health asks the Workload API socket's gRPC health service, as `signet
// healthcheck --agent-socket` does.
func health(t *testing.T, a *testenv.Agent) error {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+a.SocketPath(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		err = fmt.Errorf("status %s", resp.GetStatus())
	}
	return err
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAgentOutlivesServerOutage: the server is down for longer than the
// agent SVID's remaining lifetime. The agent keeps running and serving
// what is still valid, says what it waits for, and once the server is back
// re-establishes itself with its key: the same process then serves a new
// entry's SVID without a new join token.
func TestAgentOutlivesServerOutage(t *testing.T) {
	env, a, clock := clockEnv(t)
	svidPath := filepath.Join(a.Config.DataDir, agentSVIDFile)
	before := readFile(t, svidPath)

	env.StopServer()
	testenv.Advance(t, clock, time.Minute, 30*time.Second, "the agent svid to expire", waitingForServer(a))
	testenv.Advance(t, clock, time.Second, 30*time.Second, "the expiry warning", logged(a, "agent svid expired before the server could renew it"))
	if err := serving(t, a, "spiffe://example.org/web")(); err != nil {
		t.Errorf("with its own SVID expired the agent must serve the workload SVIDs still valid: %v", err)
	}
	err := health(t, a)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "waiting for the server") {
		t.Errorf("health check with the agent SVID expired = %v; want FailedPrecondition saying it waits for the server", err)
	}
	for _, name := range []string{agentSVIDFile, agentKeyFile} {
		if _, err := os.Stat(filepath.Join(a.Config.DataDir, name)); err != nil {
			t.Errorf("%s after expiry: %v; the agent must keep its key", name, err)
		}
	}

	env.StartServer()
	env.CreateEntry(entry("/web2"))
	testenv.Advance(t, clock, time.Second, 30*time.Second, "the new entry's SVID",
		serving(t, a, "spiffe://example.org/web", "spiffe://example.org/web2"))
	if err := a.Synced(context.Background()); err != nil {
		t.Errorf("Synced() after re-establishment = %v, want nil", err)
	}
	if err := health(t, a); err != nil {
		t.Errorf("health check after re-establishment = %v, want SERVING", err)
	}
	if !strings.Contains(a.Logs.String(), "node re-established after the agent svid expired") ||
		!strings.Contains(a.Logs.String(), "method=agent_reauth") {
		t.Errorf("no log line of the re-establishment by agent_reauth")
	}
	if bytes.Equal(readFile(t, svidPath), before) {
		t.Errorf("%s was not replaced by the re-established SVID", agentSVIDFile)
	}
	node, err := env.Admin.GetNode(ctx(t), &adminv1.GetNodeRequest{SpiffeId: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	if node.GetAttestationType() != "join_token" {
		t.Errorf("node attestation type after reauth = %q, want join_token kept", node.GetAttestationType())
	}
	select {
	case <-a.Done():
		t.Fatalf("Run() returned %v", a.Wait(0))
	default:
	}
}

// TestAgentReauthIsRefusedForEvictedOrBannedNodes: a node evicted or
// banned while its agent was away does not come back on its own.
func TestAgentReauthIsRefusedForEvictedOrBannedNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  func(adminv1.AdminClient, context.Context, *adminv1.NodeRequest) error
	}{
		{"evicted", func(c adminv1.AdminClient, ctx context.Context, r *adminv1.NodeRequest) error {
			_, err := c.EvictNode(ctx, r)
			return err
		}},
		{"banned", func(c adminv1.AdminClient, ctx context.Context, r *adminv1.NodeRequest) error {
			_, err := c.BanNode(ctx, r)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, a, clock := clockEnv(t)
			env.StopServer()
			testenv.Advance(t, clock, time.Minute, 30*time.Second, "the agent svid to expire", waitingForServer(a))
			// One attempt failed on the stopped server; the next waits for
			// the clock, so the node is evicted before the agent is back.
			testenv.Advance(t, clock, time.Second, 30*time.Second, "a failed attempt", logged(a, `error="attest node: connection error`))
			env.StartServer()
			if err := tc.act(env.Admin, ctx(t), &adminv1.NodeRequest{SpiffeId: nodeID}); err != nil {
				t.Fatal(err)
			}
			testenv.Advance(t, clock, time.Second, 30*time.Second, "Run to return", func() error {
				select {
				case <-a.Done():
					return nil
				default:
					return errors.New("still running")
				}
			})
			if err := a.Wait(0); !errors.Is(err, agent.ErrEvicted) {
				t.Errorf("Run() = %v, want ErrEvicted", err)
			}
			if _, err := os.Stat(filepath.Join(a.Config.DataDir, agentSVIDFile)); !os.IsNotExist(err) {
				t.Errorf("agent SVID still persisted after the refusal: %v", err)
			}
		})
	}
}

// TestAgentRestartsWithAnExpiredSVID: an agent stopped for longer than its
// SVID's lifetime comes back without a new join token.
func TestAgentRestartsWithAnExpiredSVID(t *testing.T) {
	env, a, clock := clockEnv(t)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	clock.Add(agentTTL + time.Minute)
	a = env.RunAgent(a.Restarted())
	testenv.Advance(t, clock, time.Second, 30*time.Second, "the restarted agent to sync", func() error {
		if !a.Ready() {
			return errors.New("not ready")
		}
		return a.Synced(context.Background())
	})
	testenv.WaitFor(t, 10*time.Second, "the web SVID", serving(t, a, "spiffe://example.org/web"))
	if !strings.Contains(a.Logs.String(), "persisted agent svid has expired") {
		t.Errorf("no log line about the expired persisted SVID")
	}
}

// TestAgentRenewsAtHalfLife: renewal follows the agent SVID's lifetime on
// the clock, not the wall.
func TestAgentRenewsAtHalfLife(t *testing.T) {
	_, a, clock := clockEnv(t)
	svidPath := filepath.Join(a.Config.DataDir, agentSVIDFile)
	first := readFile(t, svidPath)
	clock.Add(agentTTL/2 - time.Minute)
	testenv.WaitFor(t, time.Second, "no early renewal", func() error { return nil })
	if !bytes.Equal(readFile(t, svidPath), first) {
		t.Fatalf("agent SVID renewed before half its lifetime")
	}
	testenv.Advance(t, clock, 10*time.Second, 30*time.Second, "the renewal", func() error {
		if bytes.Equal(readFile(t, svidPath), first) {
			return errors.New("not renewed")
		}
		return nil
	})
	if strings.Contains(a.Logs.String(), "level=WARN") {
		t.Errorf("warnings during a routine renewal:\n%s", a.Logs)
	}
}
