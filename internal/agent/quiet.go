package agent

import (
	"context"
	"time"
)

// WhenWorkloadQuiet calls f once the Workload API (SDS and the agent's
// own service included) has been quiet for at least quiet since
// WhenWorkloadQuiet was called, and again each time it has served
// something and then been quiet for that long: no call, no stream opened
// and no message sent on a stream. It returns when ctx is done or Run has
// returned. The agent pages its code out again this way (package
// memtrim): what ran once after start-up, then what each spell of calls
// read back in.
func (a *Agent) WhenWorkloadQuiet(ctx context.Context, quiet time.Duration, f func()) {
	whenQuiet(ctx, a.cfg.Clock, quiet, a.workloadActivity, f, a.done)
}

// workloadActivity is the Workload API server's activity count, 0 until
// Run has created it.
func (a *Agent) workloadActivity() uint64 {
	if ws := a.workload.Load(); ws != nil {
		return ws.Activity()
	}
	return 0
}

// whenQuiet runs f once activity's reading has stayed the same for quiet
// since the start, and again each time it has moved and then stayed the
// same for quiet. It looks every quarter of quiet, so f runs between
// quiet and quiet plus two looks after the last activity. It returns when
// ctx is done or done is closed.
func whenQuiet(ctx context.Context, clk Clock, quiet time.Duration, activity func() uint64, f func(), done <-chan struct{}) {
	look := max(quiet/4, time.Millisecond)
	seen, since, due := activity(), clk.Now(), true
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-clk.After(look):
		}
		now := clk.Now()
		if n := activity(); n != seen {
			seen, since, due = n, now, true
			continue
		}
		if due && now.Sub(since) >= quiet {
			f()
			due = false
		}
	}
}
