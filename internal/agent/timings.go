package agent

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// startupTimings records where a fresh agent's time goes until its first
// sync is complete (every SVID it made due is held): attestation, the
// Sync calls (one per page) and applying them to the cache, key and CSR
// generation, the signing round trips and the cache inserts, with the wall
// time from start until the last page was applied (entries_ms). Signing
// overlaps the paging, and the phases that run in several goroutines at
// once (keygen, signing, inserts) are summed over them, so they can add up
// to more than the wall time. It is logged once, as
// "initial sync timings", when the agent becomes ready; the fields are
// milliseconds. The zero value is ready to use; every method may be
// called concurrently.
type startupTimings struct {
	attest, syncCall, apply, keygen, sign, insert atomic.Int64 // nanoseconds
	batches, pages                                atomic.Int64 // SignX509SVIDs and Sync calls
	entries                                       atomic.Int64 // since start, when the first sync's last page was applied
}

// since adds the time since start to the counter d.
func since(d *atomic.Int64, start time.Time) { d.Add(int64(time.Since(start))) }

// attrs is the "initial sync timings" record: total is the wall time
// from the agent's start.
func (t *startupTimings) attrs(total time.Duration) []any {
	ms := func(d int64) float64 { return float64(d/int64(time.Microsecond)) / 1000 }
	return []any{
		slog.Float64("total_ms", ms(int64(total))),
		slog.Float64("attest_ms", ms(t.attest.Load())),
		slog.Float64("sync_call_ms", ms(t.syncCall.Load())),
		slog.Int64("sync_pages", t.pages.Load()),
		slog.Float64("entries_ms", ms(t.entries.Load())),
		slog.Float64("apply_ms", ms(t.apply.Load())),
		slog.Float64("keygen_ms", ms(t.keygen.Load())),
		slog.Float64("sign_rpc_ms", ms(t.sign.Load())),
		slog.Float64("cache_insert_ms", ms(t.insert.Load())),
		slog.Int64("sign_batches", t.batches.Load()),
	}
}
