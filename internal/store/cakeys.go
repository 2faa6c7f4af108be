package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/internal/errkind"
)

// maxSealedCAKey bounds a sealed CA key: a PKCS #8 RSA-4096 key is about
// 2.4 KiB, its sealed form 29 bytes more.
const maxSealedCAKey = 16 << 10

// The CA's shared keys (migration 00014). The sealed key manager
// (internal/ca/keymanager/sealed) keeps every authority's private key here,
// sealed under a KEK that only the replicas hold, so that every replica of
// the trust domain signs with the same authorities. The store never sees a
// plaintext key.

// EnsureCAKEK records keyID and check as the CA's KEK check value unless one
// is recorded already, and returns the recorded one: the caller verifies
// that it opens under its KEK, which proves every replica was given the same
// KEK file.
func (s *Store) EnsureCAKEK(ctx context.Context, keyID string, check []byte) ([]byte, error) {
	var stored []byte
	err := s.update(ctx, "record ca kek", false, func(t *wtx) error {
		err := t.queryRow(ctx, "SELECT check_value FROM ca_kek WHERE id = 1").Scan(&stored)
		if err == nil {
			return errRollback
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		stored = check
		if _, err := t.exec(ctx, "INSERT INTO ca_kek (id, key_id, check_value, created_at) VALUES (1, ?, ?, ?)",
			keyID, check, timeToDB(t.now)); err != nil {
			return err
		}
		t.record("ca.kek.init", keyID, nil)
		return nil
	})
	return stored, err
}

// PutCAKey stores (or replaces) the sealed private key id, sealed under the
// KEK kekID. It is audited as ca.key.put with the ids, never the value.
func (s *Store) PutCAKey(ctx context.Context, id, kekID string, sealed []byte) error {
	if len(sealed) == 0 || len(sealed) > maxSealedCAKey {
		return errkind.New(errkind.InvalidArgument, "ca key %s: sealed value of %d bytes: want 1 to %d", id, len(sealed), maxSealedCAKey)
	}
	return s.update(ctx, "put ca key "+id, false, func(t *wtx) error {
		if _, err := t.exec(ctx, `INSERT INTO ca_keys (id, kek_id, sealed, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET kek_id = excluded.kek_id, sealed = excluded.sealed, created_at = excluded.created_at`,
			id, kekID, sealed, timeToDB(t.now)); err != nil {
			return err
		}
		t.record("ca.key.put", id, map[string]string{"kek_id": kekID})
		return nil
	})
}

// CAKey returns the sealed private key id. The error is kinded NotFound
// when there is none.
func (s *Store) CAKey(ctx context.Context, id string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRowContext(ctx, s.d.rebind("SELECT sealed FROM ca_keys WHERE id = ?"), id).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errkind.New(errkind.NotFound, "ca key %s not found in the store", id)
	}
	if err != nil {
		return nil, fmt.Errorf("get ca key %s: %w", id, err)
	}
	return sealed, nil
}

// DeleteCAKey removes the sealed private key id; a missing key is not an
// error. A deletion is audited as ca.key.delete.
func (s *Store) DeleteCAKey(ctx context.Context, id string) error {
	return s.update(ctx, "delete ca key "+id, false, func(t *wtx) error {
		res, err := t.exec(ctx, "DELETE FROM ca_keys WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errRollback
		}
		t.record("ca.key.delete", id, nil)
		return nil
	})
}

// ClaimCARotation makes holder the one replica allowed to change the
// trust domain's authorities until until, provided no other holder's claim
// is still running at now (one conditional update: of several replicas
// claiming at once, exactly one wins). A holder renews its own claim by
// claiming again. It reports whether holder holds the claim. The claim is
// a single-row update outside the revision lock, so it never waits behind
// a long write such as a bulk entry import.
func (s *Store) ClaimCARotation(ctx context.Context, holder string, now, until time.Time) (bool, error) {
	if holder == "" {
		return false, errkind.New(errkind.InvalidArgument, "claim ca rotation: holder is required")
	}
	res, err := s.execWrite(ctx, "UPDATE ca_rotation_lease SET holder = ?, expires_at = ? WHERE id = 1 AND (holder = ? OR expires_at <= ?)",
		holder, timeToDB(until), holder, timeToDB(now))
	if err != nil {
		return false, fmt.Errorf("claim ca rotation: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim ca rotation: %w", err)
	}
	return n == 1, nil
}

// ReleaseCARotation ends holder's claim, if it still holds it, so another
// replica may claim at once.
func (s *Store) ReleaseCARotation(ctx context.Context, holder string) error {
	if _, err := s.execWrite(ctx, "UPDATE ca_rotation_lease SET holder = '', expires_at = 0 WHERE id = 1 AND holder = ?", holder); err != nil {
		return fmt.Errorf("release ca rotation: %w", err)
	}
	return nil
}

// execWrite runs one self-contained write statement outside the revision
// lock, in this process's turn to write (SQLite).
func (s *Store) execWrite(ctx context.Context, q string, args ...any) (sql.Result, error) {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.w.ExecContext(ctx, s.d.rebind(q), args...)
}
