package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/plugin"
)

// NodeAllowance is a node identity an operator allowed by hand for one
// attestation method, such as a TPM's EK hash for "tpm".
type NodeAllowance struct {
	AttestationType string
	Value           string
	CreatedAt       time.Time
}

// maxAllowanceValue bounds allowance values (hashes, identifiers).
const maxAllowanceValue = 256

func checkAllowance(method, value string) error {
	if err := plugin.ValidName(method); err != nil {
		return errkind.New(errkind.InvalidArgument, "attestation_type: %v", err)
	}
	if value == "" || len(value) > maxAllowanceValue || strings.TrimFunc(value, func(r rune) bool { return r > ' ' && r <= '~' }) != "" {
		return errkind.New(errkind.InvalidArgument, "value %q: want 1 to %d printable ASCII characters", logsafe.Truncate(value), maxAllowanceValue)
	}
	return nil
}

// AllowNode records that nodes proving value may attest with method. It is
// audited as node.allow; allowing what is already allowed changes nothing.
func (s *Store) AllowNode(ctx context.Context, method, value string) (NodeAllowance, error) {
	if err := checkAllowance(method, value); err != nil {
		return NodeAllowance{}, err
	}
	a := NodeAllowance{AttestationType: method, Value: value}
	err := s.update(ctx, "allow "+method+" node", true, func(t *wtx) error {
		var created int64
		err := t.queryRow(ctx, "SELECT created_at FROM node_allowances WHERE attestation_type = ? AND value = ?", method, value).Scan(&created)
		if err == nil {
			a.CreatedAt = timeFromDB(created)
			return errRollback
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		a.CreatedAt = t.now
		if _, err := t.exec(ctx, "INSERT INTO node_allowances (attestation_type, value, created_at) VALUES (?, ?, ?)",
			method, value, timeToDB(t.now)); err != nil {
			return err
		}
		t.record("node.allow", method+":"+value, nil)
		return nil
	})
	if err != nil {
		return NodeAllowance{}, err
	}
	return a, nil
}

// DisallowNode removes an allowance (audited as node.disallow). Nodes
// already attested keep their SVIDs until they are evicted or banned. The
// error is kinded NotFound when nothing was allowed.
func (s *Store) DisallowNode(ctx context.Context, method, value string) error {
	if err := checkAllowance(method, value); err != nil {
		return err
	}
	return s.update(ctx, "disallow "+method+" node", true, func(t *wtx) error {
		res, err := t.exec(ctx, "DELETE FROM node_allowances WHERE attestation_type = ? AND value = ?", method, value)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errkind.New(errkind.NotFound, "no %s allowance for %s", method, logsafe.Truncate(value))
		}
		t.record("node.disallow", method+":"+value, nil)
		return nil
	})
}

// NodeAllowed reports whether value is allowed for method. It is a plain
// read, cheap enough for every attestation.
func (s *Store) NodeAllowed(ctx context.Context, method, value string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, s.d.rebind("SELECT 1 FROM node_allowances WHERE attestation_type = ? AND value = ?"),
		method, value).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up %s allowance: %w", method, err)
	}
	return true, nil
}

// ListNodeAllowances returns the allowances of method (every method when
// empty), ordered by method and value.
func (s *Store) ListNodeAllowances(ctx context.Context, method string) ([]NodeAllowance, error) {
	return s.ListNodeAllowancesPage(ctx, method, NodeAllowance{}, 0)
}

// ListNodeAllowancesPage is ListNodeAllowances a page at a time: at most
// limit allowances (0: all) after the one with after's AttestationType and
// Value (zero: from the first).
func (s *Store) ListNodeAllowancesPage(ctx context.Context, method string, after NodeAllowance, limit int) ([]NodeAllowance, error) {
	q, args := "SELECT attestation_type, value, created_at FROM node_allowances WHERE 1 = 1", []any(nil)
	if method != "" {
		q, args = q+" AND attestation_type = ?", append(args, method)
	}
	if after.AttestationType != "" {
		q += " AND (attestation_type > ? OR (attestation_type = ? AND value > ?))"
		args = append(args, after.AttestationType, after.AttestationType, after.Value)
	}
	q += " ORDER BY attestation_type, value"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list node allowances: %w", err)
	}
	defer rows.Close()
	var out []NodeAllowance
	for rows.Next() {
		var a NodeAllowance
		var created int64
		if err := rows.Scan(&a.AttestationType, &a.Value, &created); err != nil {
			return nil, fmt.Errorf("list node allowances: %w", err)
		}
		a.CreatedAt = timeFromDB(created)
		out = append(out, a)
	}
	return out, rows.Err()
}
