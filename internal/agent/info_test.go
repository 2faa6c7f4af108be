package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// The agent keeps the broker URL its server advertises and tells local
// workloads over AgentInfo on the Workload API socket; that is where
// `signet credential get` finds the broker without --broker.
func TestAgentServesTheBrokerURLItLearned(t *testing.T) {
	env := testenv.New(t, func(c *server.Config) { c.HTTPAddress = "127.0.0.1:0" })
	want := "https://" + env.Server.HTTPAddr().String()
	a := env.StartAgent(nodeID)
	a.AwaitReady()
	learned := brokerclient.FromAgent("unix://" + a.SocketPath())
	testenv.WaitFor(t, 10*time.Second, "the learned broker URL", func() error {
		got, err := learned(ctx(t))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("FromAgent() = %q, want %q", got, want)
		}
		return nil
	})
	u, err := brokerclient.ResolveURL(ctx(t), "--broker", "", learned)
	if err != nil || u.String() != want {
		t.Errorf("ResolveURL() with the agent = %v, %v; want %s", u, err, want)
	}
}

// Without an HTTPS address the server advertises nothing, and ResolveURL
// says so instead of guessing.
func TestAgentWithoutABrokerURL(t *testing.T) {
	env := testenv.New(t)
	a := env.StartAgent(nodeID)
	a.AwaitReady()
	learned := brokerclient.FromAgent("unix://" + a.SocketPath())
	got, err := learned(ctx(t))
	if err != nil || got != "" {
		t.Fatalf("FromAgent() = %q, %v; want \"\", nil", got, err)
	}
	t.Setenv(brokerclient.EnvURL, "")
	if _, err := brokerclient.ResolveURL(ctx(t), "--broker", "", learned); err == nil {
		t.Error("ResolveURL() = nil error, want one naming --broker")
	}
}
