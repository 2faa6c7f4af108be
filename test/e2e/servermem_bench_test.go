package e2e

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkServerMemoryPerAgent measures what an idle connected agent costs
// the server process: the server's live Go heap (go_memstats_heap_alloc_bytes
// from its /metrics, the lowest of five samples a second apart, so garbage
// between collections counts least) before and after 8 slim agent processes
// have attested, synced their one entry each and sat idle, divided by 8.
// It reports the server's VmRSS delta per agent too. Run with -benchtime 1x.
func BenchmarkServerMemoryPerAgent(b *testing.B) {
	const agents = 8
	bin := slimAgent(b)
	for range b.N {
		d := deploy(b)
		pid := d.server.cmd.Process.Pid
		anon0 := minAnon(b, pid)
		var ps []*proc
		for i := range agents {
			nodeID := fmt.Sprintf("spiffe://example.org/node/idle-%d", i)
			d.createEntries(b, nodeID, 1)
			p, ah := d.startAgentBin(b, bin, fmt.Sprintf("idle-%d", i), nodeID)
			waitFor(b, time.Minute, func() error {
				v, err := metric(ah, "signet_agent_cached_x509_svids")
				if err != nil || v < 1 {
					return fmt.Errorf("svids %v, %v", v, err)
				}
				return nil
			})
			ps = append(ps, p)
		}
		time.Sleep(3 * time.Second) // a few idle syncs
		anon1 := minAnon(b, pid)
		b.ReportMetric(float64(anon1-anon0)/agents, "rss-anon-KB/agent")
		for _, p := range ps {
			p.stop()
		}
		d.server.stop()
	}
}

// minAnon is the lowest of five samples of the process's RssAnon, in kB.
func minAnon(b *testing.B, pid int) int64 {
	b.Helper()
	low := int64(-1)
	for range 5 {
		if v := procStatusKB(b, pid, "RssAnon"); low < 0 || v < low {
			low = v
		}
		time.Sleep(time.Second)
	}
	return low
}
