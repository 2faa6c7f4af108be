package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/internal/agent"
)

// FleetNodeID is the node ID of the i-th agent of a fleet.
func FleetNodeID(i int) string { return fmt.Sprintf("spiffe://example.org/fleet/node-%d", i) }

// StartFleet is the simulation harness of fleet figures: it starts n real
// agents in this process, nodes FleetNodeID(0..n-1), each with its own
// data dir, Workload API socket and mTLS connection to the server on
// loopback, their logs discarded. They attest in waves of at most wave at
// once, at most fleetAttestRate a second (the server bounds concurrent
// attestations, and attestations per peer address: every simulated agent
// dials from 127.0.0.1), and StartFleet returns
// once every one of them is ready. opts adjust each agent's configuration
// (a long SyncInterval leaves only the push stream, for example).
func (e *Env) StartFleet(n, wave int, opts ...AgentOption) []*Agent {
	e.T.Helper()
	quiet := slog.New(slog.DiscardHandler)
	cfgs := make([]agent.Config, n)
	for i := range cfgs {
		cfgs[i] = e.AgentConfig(FleetNodeID(i))
		cfgs[i].Logger = quiet
		for _, o := range opts {
			o(&cfgs[i])
		}
	}
	fleet := make([]*Agent, n)
	for start := 0; start < n; start += wave {
		end := min(start+wave, n)
		paced := time.Now().Add(time.Duration(end-start) * time.Second / fleetAttestRate)
		for i := start; i < end; i++ {
			fleet[i] = e.RunAgent(cfgs[i])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, end-start)
		for i := start; i < end; i++ {
			wg.Go(func() { errs[i-start] = fleet[i].Agent.WaitReady(ctx) })
		}
		wg.Wait()
		cancel()
		for i, err := range errs {
			if err != nil {
				e.T.Fatalf("fleet agent %d: %v", start+i, err)
			}
		}
		time.Sleep(time.Until(paced))
	}
	return fleet
}

// fleetAttestRate stays under the agent listener's attestations per peer
// address (20/s, burst 50).
const fleetAttestRate = 15
