package agent_test

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/cputime"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
)

// fleetSize is the number of simulated agents of the propagation
// benchmarks (go test -bench RevocationPropagation -fleet 1000).
var fleetSize = flag.Int("fleet", 1000, "agents in the revocation propagation benchmarks")

const fleetSVID = "spiffe://example.org/fleet/svc"

// fleetEntries gives every fleet node an entry of one SPIFFE ID for the
// test process, so that `svid revoke --spiffe-id` names one SVID per agent.
func fleetEntries(b *testing.B, env *testenv.Env, n int) {
	uid := &commonv1.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}
	for start := 0; start < n; start += 1000 {
		var batch []*commonv1.Entry
		for i := start; i < min(start+1000, n); i++ {
			batch = append(batch, &commonv1.Entry{SpiffeId: fleetSVID, ParentId: testenv.FleetNodeID(i), Selectors: []*commonv1.Selector{uid}})
		}
		if _, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: batch, Atomic: true}); err != nil {
			b.Fatalf("CreateEntries: %v", err)
		}
	}
}

// held returns the serial each agent holds for its one entry, waiting
// until every agent holds one (other than those in not).
func held(b *testing.B, fleet []*testenv.Agent, not map[string]bool) []string {
	serials := make([]string, len(fleet))
	testenv.WaitFor(b, 2*time.Minute, "every agent holding a fresh svid", func() error {
		missing := 0
		for i, a := range fleet {
			serials[i] = ""
			for _, s := range a.SVIDSerials() {
				if !not[s] {
					serials[i] = s
				}
			}
			if serials[i] == "" {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d agents without one", missing)
		}
		return nil
	})
	return serials
}

// BenchmarkRevocationPropagation: `svid revoke --spiffe-id` of an ID every
// agent of the fleet serves, timed from the admin call (before the commit)
// to each agent dropping its SVID, over the agents' push streams (Sync
// responses carry no revocations). Each fleet takes a minute to start
// (attestation is rate-limited per address): run with -benchtime 1x
// (one revocation, one sample per agent) or a few x. Reports p50, p99 and max over the fleet
// (max is the last agent), and the process CPU time per revocation.
func BenchmarkRevocationPropagation(b *testing.B) {
	env := testenv.New(b, quietServer)
	benchPropagation(b, env, env)
}

// BenchmarkRevocationPropagationReplica: the same with two server
// replicas on one PostgreSQL: the fleet is connected to replica A, the
// revocation is committed through replica B, and reaches A by its change
// feed poll (cache_refresh, default 250ms).
func BenchmarkRevocationPropagationReplica(b *testing.B) {
	dsn := storetest.PostgresDSN(b)
	pg := func(c *server.Config) {
		quietServer(c)
		c.StoreDriver, c.StoreDSN = store.DriverPostgres, dsn
		c.CacheRefresh = server.DefaultCacheRefresh
	}
	a := testenv.New(b, pg)
	replica := testenv.New(b, pg)
	benchPropagation(b, a, replica)
}

// quietServer drops the server's logs: a thousand agents' attestations
// at debug level would only fill the benchmark's log.
func quietServer(c *server.Config) { c.Logger = slog.New(slog.DiscardHandler) }

func benchPropagation(b *testing.B, env, via *testenv.Env) {
	n := *fleetSize
	fleetEntries(b, env, n)
	start := time.Now()
	// Sync polls carry no revocations: a drop is always the push. A poll
	// every 30s retries what failed under the burst of fresh signings.
	fleet := env.StartFleet(n, 15, func(c *agent.Config) { c.SyncInterval = 30 * time.Second })
	b.Logf("%d agents ready in %s", n, time.Since(start).Round(time.Millisecond))
	revoked := map[string]bool{}
	var all []time.Duration
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		serials := held(b, fleet, revoked)
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		var t0 time.Time
		ready := make(chan struct{})
		for i, a := range fleet {
			wg.Go(func() {
				<-ready
				for {
					ch := a.Changed()
					if !a.ServesSerial(serials[i]) {
						lat[i] = time.Since(t0)
						return
					}
					select {
					case <-ch:
					case <-time.After(30 * time.Second):
						lat[i] = -1
						return
					}
				}
			})
		}
		b.StartTimer()
		cpu0 := cputime.Now()
		t0 = time.Now()
		close(ready)
		if _, err := via.Admin.RevokeSVIDs(via.Ctx(), &adminv1.RevokeSVIDsRequest{Target: &adminv1.RevokeSVIDsRequest_SpiffeId{SpiffeId: fleetSVID}}); err != nil {
			b.Fatalf("RevokeSVIDs: %v", err)
		}
		wg.Wait()
		cpu += cputime.Now() - cpu0
		b.StopTimer()
		var stuck []int
		for i, d := range lat {
			if d < 0 {
				stuck = append(stuck, i)
			}
			revoked[serials[i]] = true
		}
		if len(stuck) > 0 {
			b.Fatalf("%d agents still serve the revoked serial after 30s: %v (watch streams on the server: %d)",
				len(stuck), stuck[:min(len(stuck), 20)], env.Server.WatchStreams())
		}
		all = append(all, lat...)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(float64(cpu)/float64(b.N)/float64(time.Millisecond), "cpu-ms/revoke")
	b.ReportMetric(0, "ns/op")
}
