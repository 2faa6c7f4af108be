package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

const authoritySelect = "SELECT kind, id, state, server_id, key_id, certificate, upstream_chain, upstream_roots, " +
	"public_key, not_before, not_after, created_at, updated_at FROM authorities"

func validateAuthority(a *Authority) error {
	switch {
	case a.Kind != AuthorityX509 && a.Kind != AuthorityJWT:
		return errkind.New(errkind.InvalidArgument, "authority kind %q is not %q or %q", a.Kind, AuthorityX509, AuthorityJWT)
	case a.ID == "":
		return errkind.New(errkind.InvalidArgument, "authority id is required")
	case len(a.PublicKey) == 0:
		return errkind.New(errkind.InvalidArgument, "authority %s/%s has no public key", a.Kind, a.ID)
	case a.Kind == AuthorityX509 && len(a.Certificate) == 0:
		return errkind.New(errkind.InvalidArgument, "x509 authority %s has no certificate", a.ID)
	case a.Kind != AuthorityX509 && (len(a.UpstreamChain) > 0 || len(a.UpstreamRoots) > 0):
		return errkind.New(errkind.InvalidArgument, "%s authority %s: only x509 authorities have an upstream chain", a.Kind, a.ID)
	case len(a.UpstreamChain) > 0 && len(a.UpstreamRoots) == 0:
		return errkind.New(errkind.InvalidArgument, "x509 authority %s has an upstream chain but no upstream roots", a.ID)
	}
	switch a.State {
	case StatePrepared, StateActive, StateOld, StateTainted, StateRevoked:
	default:
		return errkind.New(errkind.InvalidArgument,
			"authority %s/%s: unknown state %q: use prepared, active, old, tainted or revoked", a.Kind, a.ID, a.State)
	}
	return nil
}

// ListAuthorities returns every authority, ordered by kind, NotBefore and ID.
func (s *Store) ListAuthorities(ctx context.Context) ([]Authority, error) {
	return s.ListAuthoritiesPage(ctx, AuthorityCursor{}, 0)
}

// AuthorityCursor names an authority's place in ListAuthorities' order.
type AuthorityCursor struct {
	Kind      AuthorityKind
	NotBefore time.Time
	ID        string
}

// ListAuthoritiesPage is ListAuthorities a page at a time: at most limit
// authorities (0: all) after the one at cursor (zero: from the first).
func (s *Store) ListAuthoritiesPage(ctx context.Context, after AuthorityCursor, limit int) ([]Authority, error) {
	q, args := authoritySelect, []any(nil)
	if after.ID != "" {
		nb := timeToDB(after.NotBefore)
		q += " WHERE (kind > ? OR (kind = ? AND (not_before > ? OR (not_before = ? AND id > ?))))"
		args = append(args, string(after.Kind), string(after.Kind), nb, nb, after.ID)
	}
	q += " ORDER BY kind, not_before, id"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list authorities: %w", err)
	}
	defer rows.Close()
	var out []Authority
	for rows.Next() {
		var a Authority
		var kind, state string
		var nb, na, created, updated int64
		if err := rows.Scan(&kind, &a.ID, &state, &a.ServerID, &a.KeyID, &a.Certificate, &a.UpstreamChain, &a.UpstreamRoots,
			&a.PublicKey, &nb, &na, &created, &updated); err != nil {
			return nil, fmt.Errorf("list authorities: %w", err)
		}
		a.Kind, a.State = AuthorityKind(kind), AuthorityState(state)
		a.NotBefore, a.NotAfter = timeFromDB(nb), timeFromDB(na)
		a.CreatedAt, a.UpdatedAt = timeFromDB(created), timeFromDB(updated)
		for _, b := range []*[]byte{&a.Certificate, &a.UpstreamChain, &a.UpstreamRoots} {
			if len(*b) == 0 {
				*b = nil
			}
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list authorities: %w", err)
	}
	return out, nil
}

// PutAuthority creates or replaces the authority with a's kind and ID. The
// store keeps the original CreatedAt and sets UpdatedAt. It bumps the
// revision, so agents refetch the bundle, and audits authority.<state>.
func (s *Store) PutAuthority(ctx context.Context, a Authority) error {
	if err := validateAuthority(&a); err != nil {
		return err
	}
	return s.update(ctx, fmt.Sprintf("put authority %s/%s", a.Kind, a.ID), true, func(t *wtx) error {
		var created int64
		err := t.queryRow(ctx, "SELECT created_at FROM authorities WHERE kind = ? AND id = ?", string(a.Kind), a.ID).Scan(&created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			created = timeToDB(t.now)
		case err != nil:
			return err
		}
		_, err = t.exec(ctx, `INSERT INTO authorities (kind, id, state, server_id, key_id, certificate,
			upstream_chain, upstream_roots, public_key, not_before, not_after, created_at, updated_at, revision)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state, server_id = excluded.server_id,
			key_id = excluded.key_id, certificate = excluded.certificate, upstream_chain = excluded.upstream_chain,
			upstream_roots = excluded.upstream_roots, public_key = excluded.public_key, not_before = excluded.not_before,
			not_after = excluded.not_after, updated_at = excluded.updated_at, revision = excluded.revision`,
			string(a.Kind), a.ID, string(a.State), a.ServerID, a.KeyID, nilIfEmpty(a.Certificate),
			nilIfEmpty(a.UpstreamChain), nilIfEmpty(a.UpstreamRoots), a.PublicKey,
			timeToDB(a.NotBefore), timeToDB(a.NotAfter), created, timeToDB(t.now), t.rev)
		if err != nil {
			return err
		}
		t.record("authority."+string(a.State), a.ID, map[string]string{"kind": string(a.Kind), "id": a.ID})
		return nil
	})
}

// DeleteAuthority removes an authority from the store (and so from the
// bundle). The error is kinded NotFound when there is no such authority.
func (s *Store) DeleteAuthority(ctx context.Context, kind AuthorityKind, id string) error {
	return s.update(ctx, fmt.Sprintf("delete authority %s/%s", kind, id), true, func(t *wtx) error {
		res, err := t.exec(ctx, "DELETE FROM authorities WHERE kind = ? AND id = ?", string(kind), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errkind.New(errkind.NotFound, "authority %s/%s not found", kind, id)
		}
		t.record("authority.delete", id, map[string]string{"kind": string(kind), "id": id})
		return nil
	})
}

func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
