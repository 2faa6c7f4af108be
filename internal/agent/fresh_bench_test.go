package agent_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signet-id/signet/internal/agent"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// BenchmarkFreshAgent10kInProcess runs a fresh agent whose node has 10,000
// entries against an in-process server, until it holds every X509-SVID: the
// server and the agent share the process, so a CPU profile of it
// (-cpuprofile) shows the whole issuance pipeline. The end-to-end figures
// with real processes are test/e2e's BenchmarkAgent10kEntries. With
// SIGNET_BENCH_HEAP_PROFILE=FILE it writes a heap profile once the agent
// is ready (what the cache holds, beside the server's own).
func BenchmarkFreshAgent10kInProcess(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		env := testenv.New(b)
		node := fmt.Sprintf("spiffe://example.org/node/big%d", i)
		var entries []*commonv1.Entry
		for j := range n {
			entries = append(entries, &commonv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/w/%05d", j), ParentId: node,
				Selectors: []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 100000+j)}}})
		}
		if _, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: entries, Atomic: true}); err != nil {
			b.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		b.StartTimer()
		a := env.StartAgent(node, func(c *agent.Config) { c.Registerer = reg; c.SyncInterval = time.Hour })
		a.AwaitReady()
		b.StopTimer()
		if f := os.Getenv("SIGNET_BENCH_HEAP_PROFILE"); f != "" {
			runtime.GC()
			out, _ := os.Create(f)
			_ = pprof.Lookup("heap").WriteTo(out, 0)
			out.Close()
		}
		if got := gaugeTB(b, reg, "signet_agent_cached_x509_svids"); got != n {
			b.Fatalf("cached_x509_svids = %v, want %d", got, n)
		}
		_ = a.Stop()
	}
}

func gaugeTB(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}
