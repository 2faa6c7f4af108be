package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

const nodeSelect = "SELECT spiffe_id, attestation_type, selectors, serial_number, new_serial_number, cert_not_after, banned, labels, " +
	"revision, created_at, last_seen_at FROM nodes"

var nodeCols = []string{
	"spiffe_id", "attestation_type", "selectors", "serial_number", "new_serial_number", "cert_not_after", "banned", "labels",
	"revision", "created_at", "last_seen_at",
}

// prepareNode returns a copy of n sharing no memory with it, with selectors
// in canonical form, empty collections nil and times normalized.
func prepareNode(n Node) Node {
	n.Selectors = SortSelectors(slices.Clone(n.Selectors))
	if len(n.Selectors) == 0 {
		n.Selectors = nil
	}
	n.Labels = maps.Clone(n.Labels)
	if len(n.Labels) == 0 {
		n.Labels = nil
	}
	n.CertNotAfter, n.CreatedAt, n.LastSeenAt = normTime(n.CertNotAfter), normTime(n.CreatedAt), normTime(n.LastSeenAt)
	return n
}

func validateNode(n *Node) error {
	if n.SPIFFEID.IsZero() {
		return errkind.New(errkind.InvalidArgument, "node spiffe_id is required, for example spiffe://example.org/agent/join_token/1f2e")
	}
	if n.AttestationType == "" {
		return errkind.New(errkind.InvalidArgument, "node %s: attestation type is required, for example join_token", n.SPIFFEID)
	}
	for _, s := range n.Selectors {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func scanNode(sc scanner) (Node, error) {
	var n Node
	var id, sels, labels string
	var notAfter, created, seen int64
	err := sc.Scan(&id, &n.AttestationType, &sels, &n.SerialNumber, &n.NewSerialNumber, &notAfter, &n.Banned, &labels,
		&n.Revision, &created, &seen)
	if err != nil {
		return Node{}, err
	}
	n.CertNotAfter, n.CreatedAt, n.LastSeenAt = timeFromDB(notAfter), timeFromDB(created), timeFromDB(seen)
	var errs [3]error
	n.SPIFFEID, errs[0] = idFromDB(id)
	n.Selectors, errs[1] = selectorsFromDB(sels)
	n.Labels, errs[2] = labelsFromDB(labels)
	if err := errors.Join(errs[:]...); err != nil {
		return Node{}, fmt.Errorf("node %s: %w", id, err)
	}
	return n, nil
}

// CreateNode records a newly attested node and returns it as stored. The
// store sets Revision and CreatedAt, and LastSeenAt to CreatedAt when zero
// (attesting is being seen). The error is kinded AlreadyExists when the
// node is known, InvalidArgument when n is malformed.
func (s *Store) CreateNode(ctx context.Context, n Node) (Node, error) {
	n = prepareNode(n)
	if err := validateNode(&n); err != nil {
		return Node{}, err
	}
	err := s.update(ctx, "create node "+n.SPIFFEID.String(), true, func(t *wtx) error {
		var one int
		err := t.queryRow(ctx, "SELECT 1 FROM nodes WHERE spiffe_id = ?", n.SPIFFEID.String()).Scan(&one)
		if err == nil {
			return errkind.New(errkind.AlreadyExists, "node %s already exists", n.SPIFFEID)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		n.Revision, n.CreatedAt = t.rev, t.now
		if n.LastSeenAt.IsZero() {
			n.LastSeenAt = t.now
		}
		err = t.insertRows(ctx, "nodes", nodeCols, 1, func(_ int, args []any) []any {
			return append(args, n.SPIFFEID.String(), n.AttestationType, selectorsToDB(n.Selectors), n.SerialNumber,
				n.NewSerialNumber, timeToDB(n.CertNotAfter), n.Banned, labelsToDB(n.Labels), n.Revision, timeToDB(n.CreatedAt), timeToDB(n.LastSeenAt))
		})
		if err != nil {
			return err
		}
		t.record("node.attest", n.SPIFFEID.String(), map[string]string{
			"attestation_type": n.AttestationType, "serial_number": n.SerialNumber,
		})
		return nil
	})
	if err != nil {
		return Node{}, err
	}
	return n, nil
}

// GetNode returns the node with the given SPIFFE ID, or an error kinded
// NotFound.
func (s *Store) GetNode(ctx context.Context, id spiffeid.ID) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, s.d.rebind(nodeSelect+" WHERE spiffe_id = ?"), idToDB(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, errkind.New(errkind.NotFound, "node %s not found", id)
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node %s: %w", id, err)
	}
	return n, nil
}

// NodeFilter selects nodes. Zero fields do not filter.
type NodeFilter struct {
	Banned          *bool  // only banned (true) or only not banned (false) nodes
	AttestationType string // only nodes admitted by this attestor
	// SeenBefore selects the nodes last seen before this time (stale agents).
	SeenBefore time.Time
}

// ListNodes returns the nodes f selects, ordered by SPIFFE ID.
func (s *Store) ListNodes(ctx context.Context, f NodeFilter) ([]Node, error) {
	var where []string
	var args []any
	if f.Banned != nil {
		where, args = append(where, "banned = ?"), append(args, *f.Banned)
	}
	if f.AttestationType != "" {
		where, args = append(where, "attestation_type = ?"), append(args, f.AttestationType)
	}
	if !f.SeenBefore.IsZero() {
		where, args = append(where, "last_seen_at < ?"), append(args, timeToDB(f.SeenBefore))
	}
	q := nodeSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q+" ORDER BY spiffe_id"), args...)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// UpdateNode replaces the mutable fields of the stored node with n's
// SPIFFE ID: AttestationType, Selectors, SerialNumber, CertNotAfter, Banned
// and Labels. It returns the node as stored. The audit action is node.ban or
// node.unban when Banned flips, node.update otherwise.
func (s *Store) UpdateNode(ctx context.Context, n Node) (Node, error) {
	n = prepareNode(n)
	if err := validateNode(&n); err != nil {
		return Node{}, err
	}
	id := n.SPIFFEID.String()
	err := s.update(ctx, "update node "+id, true, func(t *wtx) error {
		var banned bool
		var created, seen int64
		err := t.queryRow(ctx, "SELECT banned, created_at, last_seen_at FROM nodes WHERE spiffe_id = ?", id).
			Scan(&banned, &created, &seen)
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "node %s not found", id)
		}
		if err != nil {
			return err
		}
		n.Revision, n.CreatedAt, n.LastSeenAt = t.rev, timeFromDB(created), timeFromDB(seen)
		_, err = t.exec(ctx, `UPDATE nodes SET attestation_type = ?, selectors = ?, serial_number = ?,
			new_serial_number = ?, cert_not_after = ?, banned = ?, labels = ?, revision = ? WHERE spiffe_id = ?`,
			n.AttestationType, selectorsToDB(n.Selectors), n.SerialNumber, n.NewSerialNumber, timeToDB(n.CertNotAfter), n.Banned,
			labelsToDB(n.Labels), n.Revision, id)
		if err != nil {
			return err
		}
		action := "node.update"
		switch {
		case n.Banned && !banned:
			action = "node.ban"
		case !n.Banned && banned:
			action = "node.unban"
		}
		t.record(action, id, map[string]string{"serial_number": n.SerialNumber})
		return nil
	})
	if err != nil {
		return Node{}, err
	}
	return n, nil
}

// TouchNode advances the node's LastSeenAt to at. It is usage, not state:
// the revision does not change and nothing is audited. The error is kinded
// NotFound when the node is unknown (evicted).
func (s *Store) TouchNode(ctx context.Context, id spiffeid.ID, at time.Time) error {
	ts := timeToDB(at)
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind(
			"UPDATE nodes SET last_seen_at = CASE WHEN last_seen_at < ? THEN ? ELSE last_seen_at END WHERE spiffe_id = ?"),
			ts, ts, idToDB(id))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("touch node %s: %w", id, err)
	}
	if n == 0 {
		return errkind.New(errkind.NotFound, "node %s not found", id)
	}
	return nil
}

// DeleteNode evicts the node: it must attest again to come back. The error
// is kinded NotFound when the node is unknown.
func (s *Store) DeleteNode(ctx context.Context, id spiffeid.ID) error {
	return s.update(ctx, "delete node "+id.String(), true, func(t *wtx) error {
		res, err := t.exec(ctx, "DELETE FROM nodes WHERE spiffe_id = ?", idToDB(id))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errkind.New(errkind.NotFound, "node %s not found", id)
		}
		t.record("node.evict", id.String(), nil)
		return nil
	})
}
