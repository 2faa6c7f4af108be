package store

import (
	"context"
	"fmt"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// Limits of the token replay record.
const (
	// MaxReplayKeyLen bounds the issuer and token id of a replay record.
	MaxReplayKeyLen = 512
	maxReplayBatch  = 1000
)

// ErrReplayed is the error of MarkTokenUsed for a token seen before.
var ErrReplayed = errkind.New(errkind.AlreadyExists, "token was already used")

// replayReq is one queued MarkTokenUsed. Replay records do not take the
// revision lock: they are independent rows, and the primary key decides
// between concurrent writers, on one replica or many.
type replayReq struct {
	issuer, id string
	expires    time.Time
}

// MarkTokenUsed records that the token id of issuer was used, remembering
// it until expires. It returns nil the first time, ErrReplayed (kinded
// AlreadyExists) when the same issuer and id were recorded before and have
// not been pruned, and another error when the record could not be made (the
// caller then refuses the token). Concurrent calls are batched.
func (s *Store) MarkTokenUsed(ctx context.Context, issuer, id string, expires time.Time) error {
	if issuer == "" || id == "" || len(issuer) > MaxReplayKeyLen || len(id) > MaxReplayKeyLen {
		return errkind.New(errkind.InvalidArgument, "mark token used: issuer and token id must be 1 to %d bytes", MaxReplayKeyLen)
	}
	if expires.IsZero() {
		return errkind.New(errkind.InvalidArgument, "mark token used: an expiry is required")
	}
	_, err := s.replay.do(ctx, "mark token used", replayReq{issuer: issuer, id: id, expires: expires})
	return err
}

// newReplayBatcher group-commits MarkTokenUsed calls: each caller learns
// whether its own token was new.
func (s *Store) newReplayBatcher() groupCommit[replayReq, struct{}] {
	return groupCommit[replayReq, struct{}]{
		weight: func(replayReq) int { return 1 },
		max:    maxReplayBatch,
		write: func(batch []replayReq) []groupResult[struct{}] {
			results, err := s.writeReplay(batch)
			res := make([]groupResult[struct{}], len(batch))
			for i := range res {
				if res[i].err = err; err == nil {
					res[i].err = results[i]
				}
			}
			return res
		},
	}
}

// writeReplay inserts one batch in one transaction; results[i] is nil for
// a new token and ErrReplayed for a known one (also one repeated within the
// batch).
func (s *Store) writeReplay(batch []replayReq) ([]error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), issuanceFlushTimeout)
	defer cancel()
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return nil, fmt.Errorf("mark token used: %w", err)
	}
	defer release()
	tx, err := s.w.BeginTx(ctx, s.d.write)
	if err != nil {
		return nil, fmt.Errorf("mark token used: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.PrepareContext(ctx, s.d.rebind(
		"INSERT INTO token_replay (issuer, token_id, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"))
	if err != nil {
		return nil, fmt.Errorf("mark token used: %w", err)
	}
	defer stmt.Close()
	results := make([]error, len(batch))
	for i, r := range batch {
		res, err := stmt.ExecContext(ctx, r.issuer, r.id, timeToDB(r.expires))
		if err != nil {
			return nil, fmt.Errorf("mark token used: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("mark token used: %w", err)
		}
		if n == 0 {
			results[i] = ErrReplayed
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("mark token used: %w", err)
	}
	return results, nil
}

// PruneTokenReplay forgets the used tokens that expired before now, and
// returns how many.
func (s *Store) PruneTokenReplay(ctx context.Context, now time.Time) (int64, error) {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	res, err := s.w.ExecContext(ctx, s.d.rebind("DELETE FROM token_replay WHERE expires_at < ?"), timeToDB(now))
	if err != nil {
		return 0, fmt.Errorf("prune token replay: %w", err)
	}
	return res.RowsAffected()
}
