package server_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
)

// signers is how many agents sign concurrently in the benchmarks, each
// with one CSR per call (as agents renew SVIDs one by one).
const signers = 16

// BenchmarkSignX509 measures X509-SVID signings per second through the
// agent API on one replica (SQLite, PostgreSQL) and on two replicas sharing
// one PostgreSQL, agents spread over both. Every signing is audited.
//
//	go test -run '^$' -bench SignX509 -benchtime 3000x ./internal/server/
func BenchmarkSignX509(b *testing.B) {
	for _, bc := range []struct {
		name     string
		postgres bool
		replicas int
	}{
		{"sqlite/1-replica", false, 1},
		{"postgres/1-replica", true, 1},
		{"postgres/2-replicas", true, 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var opt testenv.Option = func(c *server.Config) { c.Logger = slog.New(slog.DiscardHandler) }
			dsn := ""
			if bc.postgres {
				dsn = storetest.PostgresDSN(b)
				opt = func(c *server.Config) {
					c.Logger, c.StoreDriver, c.StoreDSN = slog.New(slog.DiscardHandler), "postgres", dsn
				}
			}
			envs := []*testenv.Env{testenv.New(b, opt)}
			for range bc.replicas - 1 {
				envs = append(envs, testenv.New(b, opt))
			}
			type agent struct {
				conn  *testenv.AgentConn
				entry string
			}
			agents := make([]agent, signers)
			for i := range agents {
				home := envs[0] // attest and register on the first replica
				nodeID := fmt.Sprintf("spiffe://example.org/node/bench-%d", i)
				a := home.Attest(nodeID)
				resp, err := home.Admin.CreateEntries(home.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{
					entry(fmt.Sprintf("spiffe://example.org/bench/%d", i), nodeID, false)}})
				if err != nil {
					b.Fatal(err)
				}
				// ...and sign on the replica it is assigned to.
				serve := envs[i%len(envs)]
				agents[i] = agent{conn: serve.Dial(a.SVID), entry: resp.GetResults()[0].GetEntry().GetId()}
			}
			waitReplicasAgree(b, envs, agents[len(agents)-1].entry, agents[len(agents)-1].conn)
			_, csr := testenv.NewCSR(b)
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			var firstErr error
			next := make(chan struct{}, b.N)
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			for _, a := range agents {
				wg.Go(func() {
					for range next {
						resp, err := a.conn.Client.SignX509SVIDs(ctx, &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: a.entry, Csr: csr}}})
						if err == nil && codes.Code(resp.GetResults()[0].GetStatus().GetCode()) != codes.OK {
							err = fmt.Errorf("status %v", resp.GetResults()[0].GetStatus())
						}
						if err != nil {
							mu.Lock()
							if firstErr == nil {
								firstErr = err
							}
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if firstErr != nil {
				b.Fatal(firstErr)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "signs/s")
		})
	}
}

// waitReplicasAgree waits until the last replica's entry cache holds the
// entry (it follows the shared store's change feed).
func waitReplicasAgree(b *testing.B, envs []*testenv.Env, entryID string, a *testenv.AgentConn) {
	_, csr := testenv.NewCSR(b)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := a.Client.SignX509SVIDs(context.Background(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: entryID, Csr: csr}}})
		if err == nil && codes.Code(resp.GetResults()[0].GetStatus().GetCode()) == codes.OK {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("replicas did not converge: %v %v", err, resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkSigningUnderAttestationFlood measures a legitimate agent's
// signing rate while 200 connections send garbage attestations.
//
//	go test -run '^$' -bench AttestationFlood -benchtime 2000x ./internal/server/
func BenchmarkSigningUnderAttestationFlood(b *testing.B) {
	for _, flood := range []int{0, 200} {
		b.Run(fmt.Sprintf("flooders=%d", flood), func(b *testing.B) {
			env := testenv.New(b, func(c *server.Config) { c.Logger = slog.New(slog.DiscardHandler) })
			a := env.Attest(nodeA)
			resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{
				entry("spiffe://example.org/web", nodeA, false)}})
			if err != nil {
				b.Fatal(err)
			}
			id := resp.GetResults()[0].GetEntry().GetId()
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := range flood {
				c := env.Dial(nil)
				wg.Go(func() {
					garbage := bytes.Repeat([]byte{byte(i)}, 1024)
					for range 100_000 { // bounded; cancelled when the measurement ends
						if ctx.Err() != nil {
							return
						}
						stream, err := c.Client.AttestAgent(ctx)
						if err != nil {
							continue
						}
						_ = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params{Params: &agentv1.AttestParams{
							AttestationType: jointoken.Name, Payload: garbage, Csr: garbage}}})
						_, _ = stream.Recv()
					}
				})
			}
			_, csr := testenv.NewCSR(b)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				r, err := a.Client.SignX509SVIDs(context.Background(), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: id, Csr: csr}}})
				if err != nil || codes.Code(r.GetResults()[0].GetStatus().GetCode()) != codes.OK {
					b.Fatalf("signing under flood: %v %v", err, r)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "signs/s")
			cancel()
			wg.Wait()
		})
	}
}
