package broker

import (
	"context"
	"time"

	"github.com/signet-id/signet/internal/store"
)

// sweepBatch is how many due leases one sweep handles at most.
const sweepBatch = 200

// Run sweeps until ctx is done: every SweepInterval it revokes expired
// leases at their providers and reconciles pending leases whose issuance
// crashed or stalled (issued more than twice IssueTimeout ago), then
// refreshes the lease metrics. Every replica runs it; they may race on a
// lease, which is harmless (revocation is idempotent, the store records
// one transition). Run returns nil when ctx is done.
func (b *Broker) Run(ctx context.Context) error {
	t := time.NewTicker(b.sweepIv)
	defer t.Stop()
	for {
		b.Sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep runs one sweep and returns how many leases it ended. Failures are
// logged and retried on the next sweep.
func (b *Broker) Sweep(ctx context.Context) int {
	ctx = store.WithActor(ctx, "broker:sweeper")
	now := b.now()
	due, err := b.st.DueLeases(ctx, now, now.Add(-2*b.issueTO), sweepBatch)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("list due leases", logKeyError, err)
		}
		return 0
	}
	ended := 0
	for _, l := range due {
		state, reason := store.LeaseExpired, "expired"
		if l.State == store.LeasePending && l.ExpiresAt.After(now) {
			state, reason = store.LeaseRevoked, "reconciled: issuance did not complete"
		} else if l.State == store.LeasePending {
			reason = "expired while pending: issuance did not complete"
		}
		rctx, cancel := context.WithTimeout(ctx, b.issueTO)
		_, err := b.end(rctx, l, state, reason)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn("sweep lease", logKeyLease, l.ID, logKeyCredential, l.Credential, logKeyError, err)
			}
			continue
		}
		ended++
	}
	if b.metrics != nil {
		if counts, err := b.st.CountLeases(ctx); err == nil {
			b.metrics.setCounts(counts, b.now())
		}
	}
	return ended
}
