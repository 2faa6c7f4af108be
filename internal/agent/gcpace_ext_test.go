package agent_test

import (
	"fmt"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signet-id/signet/internal/agent"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// gogc reads the GC percentage in force.
func gogc(t *testing.T) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("metric %s unsupported", s[0].Name)
	}
	return s[0].Value.Uint64()
}

// TestAgentBulkSyncPacesTheGC: a fresh agent whose node has 1,000 entries
// signs them as one bulk wave (the GC runs with a lower percentage
// meanwhile) and restores the GC percentage once they are cached.
func TestAgentBulkSyncPacesTheGC(t *testing.T) {
	if waves, skipped := agent.BulkGCWaves(); skipped {
		t.Skipf("GOGC or GOMEMLIMIT is set: the agent leaves the GC alone (%d waves)", waves)
	}
	const n = 1000
	env := testenv.New(t)
	node := "spiffe://example.org/node/bulk"
	var entries []*commonv1.Entry
	for j := range n {
		entries = append(entries, &commonv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/bulk/%04d", j), ParentId: node,
			Selectors: []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 100000+j)}}})
	}
	if _, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: entries, Atomic: true}); err != nil {
		t.Fatal(err)
	}
	before := gogc(t)
	wavesBefore, _ := agent.BulkGCWaves()
	reg := prometheus.NewRegistry()
	a := env.StartAgent(node, func(c *agent.Config) { c.Registerer = reg; c.SyncInterval = time.Hour })
	a.AwaitReady()
	if got := gauge(t, reg, "signet_agent_cached_x509_svids"); got != n {
		t.Fatalf("cached_x509_svids = %v, want %d", got, n)
	}
	if waves, _ := agent.BulkGCWaves(); waves <= wavesBefore {
		t.Errorf("bulk waves = %d after a %d-entry initial sync, want more than %d", waves, n, wavesBefore)
	}
	if got := gogc(t); got != before {
		t.Errorf("GC percentage after the initial sync = %d, want %d as before", got, before)
	}
}
