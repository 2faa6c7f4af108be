package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// Issuance is what one signing decision leaves in the store: its audit
// records, the entries whose SVIDs were issued (for the inventory's
// first/last issued times) and the binding of each SVID to its entry and
// node (bindings.go).
type Issuance struct {
	Records []AuditRecord
	// Issued are the ids of the entries an SVID was signed for, At when.
	Issued   []string
	At       time.Time
	Bindings []SVIDBinding
}

// maxIssuanceBatch bounds the records written by one transaction.
const maxIssuanceBatch = 2000

// issuanceFlushTimeout bounds one batch's transaction; it does not depend on
// the context of whichever caller happens to flush.
const issuanceFlushTimeout = 30 * time.Second

// RecordIssuance durably appends the audit records of a signing decision and
// stamps the issued entries' issuance times, batched with concurrent
// callers into one transaction (groupcommit.go). Records get Actor
// from ctx when empty, and Time from At when zero. It returns once the
// records are committed, or with the error that prevented it: the caller
// decides (an issuance whose record failed is not handed out).
func (s *Store) RecordIssuance(ctx context.Context, iss Issuance) error {
	for i := range iss.Records {
		if iss.Records[i].Action == "" {
			return errkind.New(errkind.InvalidArgument, "record issuance: record %d has no action", i)
		}
	}
	if err := checkBindings(iss.Bindings); err != nil {
		return err
	}
	if len(iss.Records) == 0 && len(iss.Issued) == 0 && len(iss.Bindings) == 0 {
		return nil
	}
	actor := actorFrom(ctx)
	recs := make([]AuditRecord, len(iss.Records))
	for i, r := range iss.Records {
		if r.Actor == "" {
			r.Actor = actor
		}
		if r.Time.IsZero() {
			r.Time = iss.At
		}
		r.Detail = maps.Clone(r.Detail)
		recs[i] = r
	}
	iss.Records = recs
	iss.Bindings = slices.Clone(iss.Bindings)
	_, err := s.issuance.do(ctx, "record issuance", iss)
	return err
}

// newIssuanceBatcher group-commits RecordIssuance calls: signing N SVIDs
// at once takes the audit chain's lock once rather than N times.
func (s *Store) newIssuanceBatcher() groupCommit[Issuance, struct{}] {
	return groupCommit[Issuance, struct{}]{
		weight: func(iss Issuance) int { return max(len(iss.Records), len(iss.Bindings)) },
		max:    maxIssuanceBatch,
		write: func(batch []Issuance) []groupResult[struct{}] {
			err := s.writeIssuances(batch)
			res := make([]groupResult[struct{}], len(batch))
			for i := range res {
				res[i].err = err
			}
			return res
		},
	}
}

// writeIssuances commits one batch: the audit records, chained in queue
// order, and the issuance stamps, in one transaction.
func (s *Store) writeIssuances(batch []Issuance) error {
	ctx, cancel := context.WithTimeout(context.Background(), issuanceFlushTimeout)
	defer cancel()
	stamps := map[string]time.Time{} // entry id → latest issuance
	err := s.update(ctx, "record issuance", false, func(t *wtx) error {
		for _, r := range batch {
			for _, rec := range r.Records {
				if rec.Time.IsZero() {
					rec.Time = t.now
				}
				rec.Time = normTime(rec.Time)
				t.audit = append(t.audit, rec)
			}
			for _, id := range r.Issued {
				if at := r.At; at.After(stamps[id]) {
					stamps[id] = at
				}
			}
		}
		if err := s.writeBindings(ctx, t, batch); err != nil {
			return err
		}
		return s.stampIssued(ctx, t, stamps)
	})
	if err != nil {
		return fmt.Errorf("record issuance: %w", err)
	}
	return nil
}

// stampIssued advances the first/last issued times of entries, grouped by
// time so that a batch costs one statement per distinct instant (and per
// chunk of ids).
func (s *Store) stampIssued(ctx context.Context, t *wtx, stamps map[string]time.Time) error {
	byTime := map[int64][]string{}
	for id, at := range stamps {
		ts := timeToDB(at)
		byTime[ts] = append(byTime[ts], id)
	}
	for _, ts := range slices.Sorted(maps.Keys(byTime)) {
		ids := slices.Sorted(slices.Values(byTime[ts]))
		err := chunks(ids, inListSize, func(part []string) error {
			_, err := t.exec(ctx, `UPDATE entries SET
				first_issued_at = CASE WHEN first_issued_at = 0 THEN ? ELSE first_issued_at END,
				last_issued_at = CASE WHEN last_issued_at < ? THEN ? ELSE last_issued_at END
				WHERE id IN (`+placeholders(len(part))+")", append([]any{ts, ts, ts}, anys(part)...)...)
			return err
		})
		if err != nil {
			return fmt.Errorf("stamp issued entries: %w", err)
		}
	}
	return nil
}
