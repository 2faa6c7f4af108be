package agent_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/testenv"
)

// TestAgentLogsInitialSyncTimings: a fresh agent says, once it is ready,
// where its time went: attestation, the sync call, key generation and the
// signing round trips, each measured (not zero), within the total.
func TestAgentLogsInitialSyncTimings(t *testing.T) {
	env := testenv.New(t)
	env.CreateEntry(entry("/web"))
	env.CreateEntry(entry("/api"))
	var logs testenv.LogBuffer
	a := env.StartAgent(nodeID, func(c *agent.Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	a.AwaitReady()
	var rec map[string]any
	testenv.WaitFor(t, 10*time.Second, "the initial sync timings line", func() error {
		for _, line := range strings.Split(logs.String(), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == "initial sync timings" {
				rec = r
				return nil
			}
		}
		return fmt.Errorf("not logged yet:\n%s", logs.String())
	})
	if n := strings.Count(logs.String(), `"initial sync timings"`); n != 1 {
		t.Errorf("initial sync timings logged %d times, want once", n)
	}
	total, _ := rec["total_ms"].(float64)
	for _, k := range []string{"attest_ms", "sync_call_ms", "keygen_ms", "sign_rpc_ms", "cache_insert_ms", "entries_ms"} {
		v, ok := rec[k].(float64)
		if !ok || v <= 0 || v > total {
			t.Errorf("%s = %v, want a time in (0, total_ms=%v]", k, rec[k], total)
		}
	}
	if p, _ := rec["sync_pages"].(float64); p < 1 {
		t.Errorf("sync_pages = %v, want at least 1", rec["sync_pages"])
	}
	if b, _ := rec["sign_batches"].(float64); b < 1 {
		t.Errorf("sign_batches = %v, want at least 1 (two entries were signed)", rec["sign_batches"])
	}
}
