package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/testenv"
)

// TestAgentPagedSync: an agent whose node has more entries than a Sync
// page holds and serves all of them, and converges when entries are
// created and deleted afterwards (the later syncs page too).
func TestAgentPagedSync(t *testing.T) {
	env := testenv.New(t)
	var want []string
	ids := map[string]string{}
	for i := range 11 {
		p := fmt.Sprintf("/paged/%02d", i)
		ids[p] = env.CreateEntry(entry(p)).GetId()
		want = append(want, "spiffe://example.org"+p)
	}
	reg := prometheus.NewRegistry()
	a := env.StartAgent(nodeID, func(c *agent.Config) { c.SyncPageSize, c.Registerer = 3, reg })
	a.AwaitReady()
	testenv.WaitFor(t, 10*time.Second, "every paged entry's SVID", serving(t, a, want...))
	if got := gauge(t, reg, "signet_agent_cached_x509_svids"); got != 11 {
		t.Errorf("cached_x509_svids = %v, want 11", got)
	}
	env.DeleteEntry(ids["/paged/00"])
	env.DeleteEntry(ids["/paged/07"])
	env.CreateEntry(entry("/paged/late"))
	want = append(want[1:7], append(want[8:], "spiffe://example.org/paged/late")...)
	testenv.WaitFor(t, 10*time.Second, "the changed set", serving(t, a, want...))
}
