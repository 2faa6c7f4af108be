package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// TombstoneRetention is how long entry deletions stay known to EntryChanges.
// A reader that last synced longer ago than this gets a full resync.
const TombstoneRetention = 24 * time.Hour

// EntryChangeSet is what changed in the entries since a revision.
type EntryChangeSet struct {
	// Revision is the store's revision the set brings the reader up to; pass
	// it as since next time.
	Revision int64
	// Full means Changed holds every entry and the reader must replace its
	// copy rather than patch it (Deleted is then empty).
	Full bool
	// Changed holds the entries created or updated after since, by ID.
	Changed []Entry
	// Deleted holds the IDs of entries deleted after since and not
	// re-created since, sorted.
	Deleted []string
}

// EntryChanges returns the entry changes after revision since, read from one
// consistent snapshot. The set is Full when since is 0, newer than the
// store (a reader of another or restored database), or older than the
// retained tombstones (see TombstoneRetention).
func (s *Store) EntryChanges(ctx context.Context, since int64) (EntryChangeSet, error) {
	var changed []Entry
	cs, err := s.EntryChangesFunc(ctx, since, func(_ bool, e Entry) error {
		changed = append(changed, e)
		return nil
	})
	if err != nil {
		return EntryChangeSet{}, err
	}
	cs.Changed = changed
	return cs, nil
}

// EntryChangesFunc is EntryChanges that hands each changed entry to fn, in
// ID order, as it is read, instead of returning them all in Changed (which
// stays empty): a reader of a million entries holds its own form of them,
// never the store's. fn learns whether the set is Full before the first
// entry, so it can build a replacement rather than patch; it is not called
// at all when nothing changed. An error from fn ends the read and is
// returned.
func (s *Store) EntryChangesFunc(ctx context.Context, since int64, fn func(full bool, e Entry) error) (EntryChangeSet, error) {
	var cs EntryChangeSet
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var pruned int64
		err := tx.QueryRowContext(ctx, "SELECT value, pruned_through FROM revision WHERE id = 1").Scan(&cs.Revision, &pruned)
		if err != nil {
			return err
		}
		cs.Full = since <= 0 || since < pruned || since > cs.Revision
		each := func(e Entry) error { return fn(cs.Full, e) }
		if cs.Full {
			return s.eachEntry(ctx, tx, each, entrySelect+" ORDER BY id")
		}
		if since == cs.Revision {
			return nil
		}
		// Without ORDER BY the revision index finds the few changed rows; in
		// ID order SQLite walked every entry by its primary key instead
		// (3.5 s at 1,000,000 entries). The set is sorted here.
		changed, err := s.queryEntries(ctx, tx, entrySelect+" WHERE revision > ?", since)
		if err != nil {
			return err
		}
		slices.SortFunc(changed, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
		ids := make([]string, len(changed))
		for i := range changed {
			ids[i] = changed[i].ID
			if err := each(changed[i]); err != nil {
				return err
			}
			changed[i] = Entry{}
		}
		rows, err := tx.QueryContext(ctx, s.d.rebind(
			"SELECT DISTINCT entry_id FROM entry_tombstones WHERE revision > ? ORDER BY entry_id"), since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			// An entry deleted and then re-created under the same ID is a change.
			if _, live := slices.BinarySearch(ids, id); !live {
				cs.Deleted = append(cs.Deleted, id)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return EntryChangeSet{}, fmt.Errorf("entry changes since %d: %w", since, err)
	}
	return cs, nil
}

// PruneTombstones forgets entry deletions recorded before the given time and
// returns how many it forgot. Readers that synced before the newest
// forgotten deletion get a full resync from EntryChanges. DeleteEntries
// prunes tombstones older than TombstoneRetention by itself.
func (s *Store) PruneTombstones(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.update(ctx, "prune tombstones", false, func(t *wtx) error {
		var err error
		n, err = t.pruneTombstones(ctx, before)
		return err
	})
	return n, err
}

// pruneTombstones deletes the tombstones recorded before the given time and
// raises revision.pruned_through to the newest revision deleted.
func (t *wtx) pruneTombstones(ctx context.Context, before time.Time) (int, error) {
	var newest int64
	err := t.queryRow(ctx, "SELECT COALESCE(MAX(revision), 0) FROM entry_tombstones WHERE deleted_at < ?", timeToDB(before)).Scan(&newest)
	if err != nil || newest == 0 {
		return 0, err
	}
	if _, err := t.exec(ctx, "UPDATE revision SET pruned_through = ? WHERE id = 1 AND pruned_through < ?", newest, newest); err != nil {
		return 0, err
	}
	res, err := t.exec(ctx, "DELETE FROM entry_tombstones WHERE deleted_at < ?", timeToDB(before))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// TouchEntries records that SVIDs were issued for the entries with the given
// IDs at the given time: it sets their FirstIssuedAt when unset and advances
// their LastIssuedAt. This is usage, not state: the revision does not change
// and nothing is audited. Unknown IDs are ignored.
func (s *Store) TouchEntries(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	// A fixed lock order keeps concurrent touches from deadlocking on PostgreSQL.
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	ts := timeToDB(at)
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		return chunks(ids, inListSize, func(part []string) error {
			args := append([]any{ts, ts, ts}, anys(part)...)
			_, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE entries SET
				first_issued_at = CASE WHEN first_issued_at = 0 THEN ? ELSE first_issued_at END,
				last_issued_at = CASE WHEN last_issued_at < ? THEN ? ELSE last_issued_at END
				WHERE id IN (`+placeholders(len(part))+")"), args...)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("touch entries: %w", err)
	}
	return nil
}

// plainWrite runs fn in a write transaction that neither takes the revision
// lock nor appends audit records: for usage stamps and housekeeping.
func (s *Store) plainWrite(ctx context.Context, fn func(tx *sql.Tx) error) error {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return err
	}
	defer release()
	tx, err := s.w.BeginTx(ctx, s.d.write)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Served says when a workload was served SVIDs of an entry during one
// agent's reporting period.
type Served struct {
	EntryID     string
	First, Last time.Time
}

// MaxServedReport bounds the entries of one RecordServed call.
const MaxServedReport = 1000

// RecordServed folds agents' reports of served SVIDs into the entries'
// first and last served times (FirstServedAt only moves earlier,
// LastServedAt only later; unknown entry IDs are ignored). Like issuance
// stamps it is usage, not state: the revision does not change and nothing
// is audited. At most MaxServedReport entries per call.
func (s *Store) RecordServed(ctx context.Context, served []Served) error {
	if len(served) == 0 {
		return nil
	}
	if len(served) > MaxServedReport {
		return errkind.New(errkind.InvalidArgument, "record served: %d entries, at most %d per report", len(served), MaxServedReport)
	}
	// A fixed lock order keeps concurrent reports from deadlocking on PostgreSQL.
	served = slices.SortedFunc(slices.Values(served), func(a, b Served) int { return strings.Compare(a.EntryID, b.EntryID) })
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		q := s.d.rebind(`UPDATE entries SET
			first_served_at = CASE WHEN first_served_at = 0 OR first_served_at > ? THEN ? ELSE first_served_at END,
			last_served_at = CASE WHEN last_served_at < ? THEN ? ELSE last_served_at END
			WHERE id = ?`)
		for _, r := range served {
			if r.EntryID == "" || r.First.IsZero() || r.Last.IsZero() {
				continue
			}
			first, last := timeToDB(r.First), timeToDB(r.Last)
			if _, err := tx.ExecContext(ctx, q, first, first, last, last, r.EntryID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record served: %w", err)
	}
	return nil
}
