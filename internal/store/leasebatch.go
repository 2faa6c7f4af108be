package store

import (
	"context"
	"fmt"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// leaseReq is one queued CreateLease: the checked lease, its encoded
// context and its audit records (actor and time filled in).
type leaseReq struct {
	l       Lease
	ctxJSON string
	actor   string
	also    []AuditRecord
}

// maxLeaseBatch bounds the leases written by one transaction.
const maxLeaseBatch = 500

// newLeaseBatcher group-commits CreateLease calls. A batch whose
// transaction fails (a lease id taken, a dropped connection) is written
// again one lease per transaction, so every caller gets the error of its
// own lease and no lease fails because of another's.
func (s *Store) newLeaseBatcher() groupCommit[*leaseReq, Lease] {
	return groupCommit[*leaseReq, Lease]{
		weight: func(*leaseReq) int { return 1 },
		max:    maxLeaseBatch,
		write:  s.flushLeases,
	}
}

// flushLeases writes batch in one transaction and, when that fails and the
// batch holds more than one lease, each lease in its own; it returns every
// lease's result.
func (s *Store) flushLeases(batch []*leaseReq) []groupResult[Lease] {
	now, err := s.writeLeases(batch)
	res := make([]groupResult[Lease], 0, len(batch))
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			res = append(res, s.flushLeases([]*leaseReq{r})...)
		}
		return res
	}
	for _, r := range batch {
		if err != nil {
			res = append(res, groupResult[Lease]{err: err})
			continue
		}
		l := r.l
		l.UpdatedAt = now
		res = append(res, groupResult[Lease]{v: l})
	}
	return res
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
