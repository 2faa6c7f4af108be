package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// SVIDBinding says which registration entry, and which node, one
// workload SVID was signed for. The broker reads it to judge a caller by
// the entry and node its presented SVID was issued to: two entries may
// share a SPIFFE ID on nodes of different standing, and only the binding
// tells them apart.
type SVIDBinding struct {
	// Digest is the model.SVIDDigest of the SVID.
	Digest  string
	EntryID string
	// NodeID is the SPIFFE ID of the node whose agent asked for the SVID;
	// empty for SVIDs issued without a node (CI jobs).
	NodeID    string
	ExpiresAt time.Time
	// Serial is an X509-SVID's serial number in lowercase hex (empty for
	// JWT-SVIDs); SPIFFEID the SVID's ID. Revocation (revocations.go) looks
	// SVIDs up by them.
	Serial   string
	SPIFFEID string
}

// checkBindings refuses bindings that could not be looked up again.
func checkBindings(bs []SVIDBinding) error {
	for i, b := range bs {
		if len(b.Digest) != model.SVIDDigestLen || b.EntryID == "" || b.ExpiresAt.IsZero() {
			return errkind.New(errkind.InvalidArgument, "record issuance: binding %d needs a SHA-256 digest, an entry id and an expiry", i)
		}
	}
	return nil
}

// writeBindings inserts a batch's bindings in the issuance transaction.
func (s *Store) writeBindings(ctx context.Context, t *wtx, batch []Issuance) error {
	var all []SVIDBinding
	for _, iss := range batch {
		all = append(all, iss.Bindings...)
	}
	if len(all) == 0 {
		return nil
	}
	err := t.insertRows(ctx, "svid_bindings", []string{"digest", "entry_id", "node_id", "expires_at", "serial", "spiffe_id"}, len(all),
		func(i int, args []any) []any {
			b := all[i]
			return append(args, b.Digest, b.EntryID, b.NodeID, timeToDB(b.ExpiresAt), b.Serial, b.SPIFFEID)
		})
	if err != nil {
		return fmt.Errorf("record svid bindings: %w", err)
	}
	return nil
}

// SVIDBinding returns the binding of the SVID with digest, NotFound when
// none was recorded (an SVID signed before bindings were kept, or one
// whose binding was pruned after it expired).
func (s *Store) SVIDBinding(ctx context.Context, digest string) (SVIDBinding, error) {
	b := SVIDBinding{Digest: digest}
	var exp int64
	err := s.db.QueryRowContext(ctx, s.d.rebind("SELECT entry_id, node_id, expires_at FROM svid_bindings WHERE digest = ?"), digest).
		Scan(&b.EntryID, &b.NodeID, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return SVIDBinding{}, errkind.New(errkind.NotFound, "no binding recorded for svid %.12s…", digest)
	}
	if err != nil {
		return SVIDBinding{}, fmt.Errorf("get svid binding: %w", err)
	}
	b.ExpiresAt = timeFromDB(exp)
	return b, nil
}

// PruneSVIDBindings forgets the bindings of SVIDs that expired before
// now, and returns how many.
func (s *Store) PruneSVIDBindings(ctx context.Context, now time.Time) (int64, error) {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return 0, err
	}
	defer release()
	res, err := s.w.ExecContext(ctx, s.d.rebind("DELETE FROM svid_bindings WHERE expires_at < ?"), timeToDB(now))
	if err != nil {
		return 0, fmt.Errorf("prune svid bindings: %w", err)
	}
	return res.RowsAffected()
}
