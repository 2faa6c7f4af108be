package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// leaseBatcher group-commits CreateLease calls the way issuanceBatcher does
// RecordIssuance: concurrent callers share one write transaction (one turn
// of the revision lock, one chain extension of the audit log, one commit),
// and each caller returns only once its own lease and audit records are
// durable. The first caller to find no flush in progress becomes the
// flusher and writes batches until the queue is empty.
//
// A batch whose transaction fails (a lease id taken, a dropped connection)
// is written again one lease per transaction, so every caller gets the
// error of its own lease and no lease fails because of another's.
type leaseBatcher struct {
	mu       sync.Mutex
	queue    []*leaseReq
	flushing bool
}

// leaseReq is one queued CreateLease: the checked lease, its encoded
// context, its audit records (actor and time filled in) and the channel
// its result arrives on.
type leaseReq struct {
	l       Lease
	ctxJSON string
	actor   string
	also    []AuditRecord
	done    chan leaseResult
}

type leaseResult struct {
	l   Lease
	err error
}

// maxLeaseBatch bounds the leases written by one transaction.
const maxLeaseBatch = 500

// createLeaseBatched queues req and waits for its result.
func (s *Store) createLeaseBatched(ctx context.Context, req *leaseReq) (Lease, error) {
	b := &s.leases
	b.mu.Lock()
	b.queue = append(b.queue, req)
	if b.flushing {
		b.mu.Unlock()
		select {
		case res := <-req.done:
			return res.l, res.err
		case <-ctx.Done():
			// The batch may still commit: a pending lease is then
			// reconciled by the sweeper, an active one is recorded but
			// not handed out (the caller treats this as a failure).
			return Lease{}, fmt.Errorf("create lease %s: %w", req.l.ID, ctx.Err())
		}
	}
	b.flushing = true
	for {
		n := min(len(b.queue), maxLeaseBatch)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		s.flushLeases(batch)
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.flushing = false
			b.mu.Unlock()
			break
		}
	}
	res := <-req.done
	return res.l, res.err
}

// flushLeases writes batch in one transaction and, when that fails and the
// batch holds more than one lease, each lease in its own, delivering every
// caller its result.
func (s *Store) flushLeases(batch []*leaseReq) {
	now, err := s.writeLeases(batch)
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			s.flushLeases([]*leaseReq{r})
		}
		return
	}
	for _, r := range batch {
		if err != nil {
			r.done <- leaseResult{err: err}
			continue
		}
		l := r.l
		l.UpdatedAt = now
		r.done <- leaseResult{l: l}
	}
}

// writeLeases inserts batch's leases with their audit records, in queue
// order (each lease's further records, then its lease.create), in one
// transaction, and returns the transaction's time.
func (s *Store) writeLeases(batch []*leaseReq) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), issuanceFlushTimeout)
	defer cancel()
	op := "create lease " + batch[0].l.ID
	if len(batch) > 1 {
		op = fmt.Sprintf("create %d leases", len(batch))
	}
	var now time.Time
	err := s.update(ctx, op, false, func(t *wtx) error {
		now = t.now
		stmt, err := t.tx.PrepareContext(ctx, t.d.rebind(`INSERT INTO broker_leases (id, credential, provider, subject, node,
			context, secret_version, state, issued_at, expires_at, updated_at, revoke_data, reason)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range batch {
			l := r.l
			_, err := stmt.ExecContext(ctx, l.ID, l.Credential, l.Provider, idToDB(l.Subject), idToDB(l.Node), r.ctxJSON,
				l.SecretVersion, string(l.State), timeToDB(l.IssuedAt), timeToDB(l.ExpiresAt), timeToDB(t.now), nullBytes(l.RevokeData))
			if err != nil {
				if t.d.isUniqueViolation(err) {
					return errkind.New(errkind.AlreadyExists, "lease %s exists", l.ID)
				}
				return err
			}
			for _, rec := range r.also {
				if rec.Time.IsZero() {
					rec.Time = t.now
				}
				t.audit = append(t.audit, rec)
			}
			t.audit = append(t.audit, AuditRecord{Time: t.now, Actor: r.actor, Action: "lease.create", Object: l.ID, Detail: map[string]string{
				"credential": l.Credential, "provider": l.Provider, "subject": idToDB(l.Subject),
				"node": idToDB(l.Node), "expires_at": l.ExpiresAt.Format(time.RFC3339Nano), "state": string(l.State),
			}})
		}
		return nil
	})
	return now, err
}
