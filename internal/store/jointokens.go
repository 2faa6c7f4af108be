package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// errTokenInvalid is the one answer to every failed consumption, so that a
// caller cannot tell unknown, used and expired tokens apart.
func errTokenInvalid() error {
	return errkind.New(errkind.NotFound, "join token is invalid or expired")
}

// tokenRef names a token in audit records and errors without revealing it:
// the first 8 hex digits of its hash.
func tokenRef(hash []byte) string {
	h := hex.EncodeToString(hash)
	return h[:min(8, len(h))]
}

// CreateJoinToken stores a join token by its SHA-256 hash. CreatedAt
// defaults to now. The error is kinded InvalidArgument when the hash is not
// 32 bytes or ExpiresAt is unset, AlreadyExists when the hash is known or
// an entry has the token's SPIFFE ID (identity.go).
func (s *Store) CreateJoinToken(ctx context.Context, t JoinToken) error {
	if len(t.Hash) != sha256.Size {
		return errkind.New(errkind.InvalidArgument, "join token hash must be a %d-byte SHA-256, got %d bytes", sha256.Size, len(t.Hash))
	}
	if t.ExpiresAt.IsZero() {
		return errkind.New(errkind.InvalidArgument, "join token needs an expiry time")
	}
	ref := tokenRef(t.Hash)
	return s.update(ctx, "create join token "+ref, true, func(w *wtx) error {
		if t.CreatedAt.IsZero() {
			t.CreatedAt = w.now
		}
		if !t.SPIFFEID.IsZero() {
			// See identity.go: a token never grants an entry's identity.
			entryID, err := w.entryWithID(ctx, t.SPIFFEID.String())
			if err != nil {
				return err
			}
			if entryID != "" {
				return errkind.New(errkind.AlreadyExists,
					"spiffe_id %s is the SPIFFE ID of entry %s: a node may not carry a workload's identity; choose another spiffe_id", t.SPIFFEID, entryID)
			}
		}
		_, err := w.exec(ctx, "INSERT INTO join_tokens (hash, spiffe_id, expires_at, created_at) VALUES (?, ?, ?, ?)",
			t.Hash, idToDB(t.SPIFFEID), timeToDB(t.ExpiresAt), timeToDB(t.CreatedAt))
		if s.d.isUniqueViolation(err) {
			return errkind.New(errkind.AlreadyExists, "join token %s… already exists", ref)
		}
		if err != nil {
			return err
		}
		detail := map[string]string{"expires_at": t.ExpiresAt.UTC().Format(time.RFC3339)}
		if !t.SPIFFEID.IsZero() {
			detail["spiffe_id"] = t.SPIFFEID.String()
		}
		w.record("token.create", ref, detail)
		return nil
	})
}

// ConsumeJoinToken redeems the token with the given hash: it deletes the
// token and returns it, atomically, so of concurrent consumers exactly one
// succeeds. Unknown, already used and expired (ExpiresAt not after now)
// tokens all yield the same error, kinded NotFound.
func (s *Store) ConsumeJoinToken(ctx context.Context, hash []byte, now time.Time) (JoinToken, error) {
	if len(hash) != sha256.Size {
		return JoinToken{}, errTokenInvalid()
	}
	ref := tokenRef(hash)
	var tok JoinToken
	err := s.update(ctx, "consume join token "+ref, true, func(w *wtx) error {
		var id string
		var expires, created int64
		err := w.queryRow(ctx, "DELETE FROM join_tokens WHERE hash = ? AND expires_at > ? RETURNING spiffe_id, expires_at, created_at",
			hash, timeToDB(now)).Scan(&id, &expires, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return errTokenInvalid()
		}
		if err != nil {
			return err
		}
		if tok.SPIFFEID, err = idFromDB(id); err != nil {
			return err
		}
		tok.Hash = append([]byte(nil), hash...)
		tok.ExpiresAt, tok.CreatedAt = timeFromDB(expires), timeFromDB(created)
		var detail map[string]string
		if id != "" {
			detail = map[string]string{"spiffe_id": id}
		}
		w.record("token.consume", ref, detail)
		return nil
	})
	if err != nil {
		return JoinToken{}, err
	}
	return tok, nil
}

// PruneJoinTokens deletes the tokens expired at now and returns how many.
// Expired tokens are useless anyway; this only reclaims space.
func (s *Store) PruneJoinTokens(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind("DELETE FROM join_tokens WHERE expires_at <= ?"), timeToDB(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune join tokens: %w", err)
	}
	return int(n), nil
}

// LookupJoinToken returns the unexpired token with the given hash without
// consuming it. It is a plain read that takes no write lock, so the server
// can turn away unknown tokens before they contend for the revision row.
// Unknown and expired tokens yield the same error, kinded NotFound.
func (s *Store) LookupJoinToken(ctx context.Context, hash []byte, now time.Time) (JoinToken, error) {
	if len(hash) != sha256.Size {
		return JoinToken{}, errTokenInvalid()
	}
	var id string
	var expires, created int64
	err := s.db.QueryRowContext(ctx, s.d.rebind("SELECT spiffe_id, expires_at, created_at FROM join_tokens WHERE hash = ? AND expires_at > ?"),
		hash, timeToDB(now)).Scan(&id, &expires, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return JoinToken{}, errTokenInvalid()
	}
	if err != nil {
		return JoinToken{}, fmt.Errorf("look up join token %s: %w", tokenRef(hash), err)
	}
	tok := JoinToken{Hash: append([]byte(nil), hash...), ExpiresAt: timeFromDB(expires), CreatedAt: timeFromDB(created)}
	if tok.SPIFFEID, err = idFromDB(id); err != nil {
		return JoinToken{}, fmt.Errorf("look up join token %s: %w", tokenRef(hash), err)
	}
	return tok, nil
}

// TokenRef names the join token with the given hash without revealing it:
// the first 8 hex digits of the hash, as audit records and errors do.
func TokenRef(hash []byte) string { return tokenRef(hash) }

// minRefPrefix is the shortest prefix RevokeJoinToken accepts.
const minRefPrefix = 4

// ListJoinTokens returns the join tokens that are unexpired at now, oldest
// first. The hashes are returned; the tokens themselves were never stored.
func (s *Store) ListJoinTokens(ctx context.Context, now time.Time) ([]JoinToken, error) {
	return s.ListJoinTokensPage(ctx, now, JoinTokenCursor{}, 0)
}

// JoinTokenCursor is where a page of join tokens starts: after the token
// created at CreatedAt with Hash (in list order). The zero cursor starts at
// the beginning.
type JoinTokenCursor struct {
	CreatedAt time.Time
	Hash      []byte
}

// ListJoinTokensPage is ListJoinTokens a page at a time: at most limit
// tokens (0: all) after cursor.
func (s *Store) ListJoinTokensPage(ctx context.Context, now time.Time, after JoinTokenCursor, limit int) ([]JoinToken, error) {
	q := "SELECT hash, spiffe_id, expires_at, created_at FROM join_tokens WHERE expires_at > ?"
	args := []any{timeToDB(now)}
	if len(after.Hash) > 0 {
		c := timeToDB(after.CreatedAt)
		q += " AND (created_at > ? OR (created_at = ? AND hash > ?))"
		args = append(args, c, c, after.Hash)
	}
	q += " ORDER BY created_at, hash"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	defer rows.Close()
	var out []JoinToken
	for rows.Next() {
		var tok JoinToken
		var id string
		var expires, created int64
		if err := rows.Scan(&tok.Hash, &id, &expires, &created); err != nil {
			return nil, fmt.Errorf("list join tokens: %w", err)
		}
		if tok.SPIFFEID, err = idFromDB(id); err != nil {
			return nil, fmt.Errorf("list join tokens: token %s: %w", tokenRef(tok.Hash), err)
		}
		tok.ExpiresAt, tok.CreatedAt = timeFromDB(expires), timeFromDB(created)
		out = append(out, tok)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	return out, nil
}

// RevokeJoinToken deletes the one join token whose hash, in hex, starts
// with prefix (at least 4 hex digits, any case), used or not, and records
// token.revoke. The error is kinded InvalidArgument for a malformed or
// ambiguous prefix (naming the matching refs) and NotFound when no token
// matches.
func (s *Store) RevokeJoinToken(ctx context.Context, prefix string) (JoinToken, error) {
	p := strings.ToLower(strings.TrimSuffix(prefix, "…"))
	if len(p) < minRefPrefix || len(p) > 2*sha256.Size || strings.Trim(p, "0123456789abcdef") != "" {
		return JoinToken{}, errkind.New(errkind.InvalidArgument,
			"join token ref %q: want %d to %d hex digits of the ref, as token list prints it", prefix, minRefPrefix, 2*sha256.Size)
	}
	var tok JoinToken
	err := s.update(ctx, "revoke join token "+p, true, func(w *wtx) error {
		rows, err := w.query(ctx, "SELECT hash, spiffe_id, expires_at, created_at FROM join_tokens")
		if err != nil {
			return err
		}
		var matches []JoinToken
		var ids []string
		for rows.Next() {
			var t JoinToken
			var id string
			var expires, created int64
			if err := rows.Scan(&t.Hash, &id, &expires, &created); err != nil {
				rows.Close()
				return err
			}
			if strings.HasPrefix(hex.EncodeToString(t.Hash), p) {
				t.ExpiresAt, t.CreatedAt = timeFromDB(expires), timeFromDB(created)
				matches, ids = append(matches, t), append(ids, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		switch len(matches) {
		case 0:
			return errkind.New(errkind.NotFound, "no join token with ref %s: see signet token list", p)
		case 1:
		default:
			refs := make([]string, len(matches))
			for i, m := range matches {
				refs[i] = tokenRef(m.Hash)
			}
			return errkind.New(errkind.InvalidArgument, "join token ref %s matches %d tokens (%s): give more digits",
				p, len(matches), strings.Join(refs, ", "))
		}
		tok = matches[0]
		if tok.SPIFFEID, err = idFromDB(ids[0]); err != nil {
			return err
		}
		if _, err := w.exec(ctx, "DELETE FROM join_tokens WHERE hash = ?", tok.Hash); err != nil {
			return err
		}
		var detail map[string]string
		if !tok.SPIFFEID.IsZero() {
			detail = map[string]string{"spiffe_id": tok.SPIFFEID.String()}
		}
		w.record("token.revoke", tokenRef(tok.Hash), detail)
		return nil
	})
	if err != nil {
		return JoinToken{}, err
	}
	return tok, nil
}
