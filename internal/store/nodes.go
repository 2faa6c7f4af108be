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

const nodeSelect = "SELECT spiffe_id, attestation_type, selectors, serial_number, new_serial_number, prev_serial_number, " +
	"prev_serial_until, cert_not_after, banned, labels, revision, created_at, last_seen_at FROM nodes"

var nodeCols = []string{
	"spiffe_id", "attestation_type", "selectors", "serial_number", "new_serial_number", "prev_serial_number", "prev_serial_until",
	"cert_not_after", "banned", "labels", "revision", "created_at", "last_seen_at",
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
	n.PrevSerialUntil = normTime(n.PrevSerialUntil)
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
	var prevUntil, notAfter, created, seen int64
	err := sc.Scan(&id, &n.AttestationType, &sels, &n.SerialNumber, &n.NewSerialNumber, &n.PrevSerialNumber, &prevUntil,
		&notAfter, &n.Banned, &labels, &n.Revision, &created, &seen)
	if err != nil {
		return Node{}, err
	}
	n.PrevSerialUntil = timeFromDB(prevUntil)
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
				n.NewSerialNumber, n.PrevSerialNumber, timeToDB(n.PrevSerialUntil), timeToDB(n.CertNotAfter), n.Banned,
				labelsToDB(n.Labels), n.Revision, timeToDB(n.CreatedAt), timeToDB(n.LastSeenAt))
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
	// After is a cursor: only nodes whose SPIFFE ID sorts after it.
	After string
	// Limit caps the number of nodes returned; 0 means all.
	Limit int
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
	if f.After != "" {
		where, args = append(where, "spiffe_id > ?"), append(args, f.After)
	}
	q := nodeSelect
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY spiffe_id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
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

// AdmitNode records an attestation of n.SPIFFEID: a node seen for the
// first time is created (as CreateNode does); a known node gets n's
// AttestationType, Selectors, SerialNumber and CertNotAfter, and every
// SVID issued to it before (pending and previous serials included) is void
// at once. Labels, Banned and CreatedAt of a known node are kept. A banned
// node is refused, with an error kinded PermissionDenied, and left as it is:
// the ban is checked in the same statement that writes, so an attestation
// racing an `agent ban` never undoes it. So is a new node whose SPIFFE ID
// an entry has (identity.go).
func (s *Store) AdmitNode(ctx context.Context, n Node) (Node, error) {
	return s.admitNode(ctx, n, false)
}

// AdmitNewNode records the first attestation of n.SPIFFEID, as AdmitNode
// does for a node seen for the first time, and refuses, with an error kinded
// AlreadyExists, a node that exists (banned or not): trust-on-first-use
// methods admit an identity once, until an operator evicts the node. The
// check and the write are one transaction, so of two concurrent first
// attestations exactly one succeeds.
func (s *Store) AdmitNewNode(ctx context.Context, n Node) (Node, error) {
	return s.admitNode(ctx, n, true)
}

func (s *Store) admitNode(ctx context.Context, n Node, newOnly bool) (Node, error) {
	n = prepareNode(n)
	n.Banned, n.NewSerialNumber, n.PrevSerialNumber, n.PrevSerialUntil = false, "", "", time.Time{}
	if err := validateNode(&n); err != nil {
		return Node{}, err
	}
	id := n.SPIFFEID.String()
	var out Node
	err := s.update(ctx, "admit node "+id, true, func(t *wtx) error {
		if newOnly {
			var one int
			err := t.queryRow(ctx, "SELECT 1 FROM nodes WHERE spiffe_id = ?", id).Scan(&one)
			if err == nil {
				return errkind.New(errkind.AlreadyExists, "node %s already attested: its method trusts on first use; evict the node to admit it again", id)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		res, err := t.exec(ctx, `UPDATE nodes SET attestation_type = ?, selectors = ?, serial_number = ?, new_serial_number = '',
			prev_serial_number = '', prev_serial_until = 0, cert_not_after = ?, last_seen_at = ?, revision = ?
			WHERE spiffe_id = ? AND banned = ?`,
			n.AttestationType, selectorsToDB(n.Selectors), n.SerialNumber, timeToDB(n.CertNotAfter), timeToDB(t.now), t.rev, id, false)
		if err != nil {
			return err
		}
		if rows, err := res.RowsAffected(); err != nil {
			return err
		} else if rows == 0 {
			var one int
			err := t.queryRow(ctx, "SELECT 1 FROM nodes WHERE spiffe_id = ?", id).Scan(&one)
			if err == nil {
				return errNodeBanned(n.SPIFFEID)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			// A new node: its ID must not be an entry's (identity.go).
			if entryID, err := t.entryWithID(ctx, id); err != nil {
				return err
			} else if entryID != "" {
				return errkind.New(errkind.PermissionDenied, "node %s: entry %s has this SPIFFE ID; a node may not carry a workload's identity", id, entryID)
			}
			n.CreatedAt, n.LastSeenAt, n.Revision = t.now, t.now, t.rev
			if err := t.insertRows(ctx, "nodes", nodeCols, 1, func(_ int, args []any) []any {
				return append(args, id, n.AttestationType, selectorsToDB(n.Selectors), n.SerialNumber, "", "", int64(0),
					timeToDB(n.CertNotAfter), false, labelsToDB(n.Labels), n.Revision, timeToDB(n.CreatedAt), timeToDB(n.LastSeenAt))
			}); err != nil {
				return err
			}
		}
		t.record("node.attest", id, map[string]string{"attestation_type": n.AttestationType, "serial_number": n.SerialNumber})
		out, err = scanNode(t.queryRow(ctx, nodeSelect+" WHERE spiffe_id = ?", id))
		return err
	})
	if err != nil {
		return Node{}, err
	}
	return out, nil
}

// errNodeBanned refuses a banned node's attestation or renewal.
func errNodeBanned(id spiffeid.ID) error {
	return errkind.New(errkind.PermissionDenied, "node %s is banned", id)
}

// RenewNodeSVID records a renewed agent SVID: serial becomes the node's
// pending serial (accepted, beside the current one, until the node first
// presents it; see PromoteNodeSerial) and notAfter its certificate expiry.
// Nothing else of the node changes. The write is conditional on the node
// not being banned; a banned node gets an error kinded PermissionDenied,
// an unknown (evicted) one NotFound.
func (s *Store) RenewNodeSVID(ctx context.Context, id spiffeid.ID, serial string, notAfter time.Time) error {
	if serial == "" {
		return errkind.New(errkind.InvalidArgument, "renew node %s: serial is required", id)
	}
	return s.update(ctx, "renew svid of node "+id.String(), true, func(t *wtx) error {
		res, err := t.exec(ctx, "UPDATE nodes SET new_serial_number = ?, cert_not_after = ?, revision = ? WHERE spiffe_id = ? AND banned = ?",
			serial, timeToDB(notAfter), t.rev, idToDB(id), false)
		if err != nil {
			return err
		}
		if rows, err := res.RowsAffected(); err != nil {
			return err
		} else if rows == 0 {
			return t.nodeMissingOrBanned(ctx, id)
		}
		t.record("node.renew", id.String(), map[string]string{"new_serial_number": serial,
			"not_after": notAfter.UTC().Format(time.RFC3339)})
		return nil
	})
}

// nodeMissingOrBanned explains why a conditional node write matched no row.
func (t *wtx) nodeMissingOrBanned(ctx context.Context, id spiffeid.ID) error {
	var banned bool
	err := t.queryRow(ctx, "SELECT banned FROM nodes WHERE spiffe_id = ?", idToDB(id)).Scan(&banned)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errkind.New(errkind.NotFound, "node %s not found", id)
	case err != nil:
		return err
	case banned:
		return errNodeBanned(id)
	}
	return errkind.New(errkind.FailedPrecondition, "node %s changed meanwhile", id)
}

// PromoteNodeSerial makes the node's pending serial, which must equal
// serial, its current one, on the node's first call with its renewed SVID.
// The serial it replaces stays accepted until graceUntil. It reports false,
// writing nothing, when the condition does not hold any more (a concurrent
// call promoted it first, the node re-attested, or it was banned or
// evicted): the caller reads the node again and decides on what it finds.
func (s *Store) PromoteNodeSerial(ctx context.Context, id spiffeid.ID, serial string, graceUntil time.Time) (bool, error) {
	if serial == "" {
		return false, nil
	}
	promoted := false
	err := s.update(ctx, "promote svid of node "+id.String(), true, func(t *wtx) error {
		res, err := t.exec(ctx, `UPDATE nodes SET prev_serial_number = serial_number, prev_serial_until = ?,
			serial_number = new_serial_number, new_serial_number = '', revision = ?
			WHERE spiffe_id = ? AND new_serial_number = ? AND banned = ?`,
			timeToDB(graceUntil), t.rev, idToDB(id), serial, false)
		if err != nil {
			return err
		}
		rows, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if rows == 0 {
			return errRollback
		}
		promoted = true
		t.record("node.svid_rotate", id.String(), map[string]string{"serial_number": serial})
		return nil
	})
	if err != nil {
		return false, err
	}
	return promoted, nil
}

// SetNodeBanned bans or unbans the node and returns it as stored. A ban
// voids every SVID of the node at once (the pending and previous serials
// are cleared too) and outlasts any attestation or renewal racing it: those
// write only where banned is false. Setting the state the node already has
// writes and audits nothing. The error is kinded NotFound for an unknown
// node.
func (s *Store) SetNodeBanned(ctx context.Context, id spiffeid.ID, banned bool) (Node, error) {
	var out Node
	err := s.update(ctx, "set ban of node "+id.String(), true, func(t *wtx) error {
		q := "UPDATE nodes SET banned = ?, revision = ? WHERE spiffe_id = ? AND banned = ?"
		if banned {
			q = "UPDATE nodes SET banned = ?, revision = ?, new_serial_number = '', prev_serial_number = '', prev_serial_until = 0 " +
				"WHERE spiffe_id = ? AND banned = ?"
		}
		res, err := t.exec(ctx, q, banned, t.rev, idToDB(id), !banned)
		if err != nil {
			return err
		}
		rows, err := res.RowsAffected()
		if err != nil {
			return err
		}
		out, err = scanNode(t.queryRow(ctx, nodeSelect+" WHERE spiffe_id = ?", idToDB(id)))
		if errors.Is(err, sql.ErrNoRows) {
			return errkind.New(errkind.NotFound, "node %s not found", id)
		}
		if err != nil {
			return err
		}
		if rows == 0 {
			return errRollback // already in that state
		}
		action := "node.unban"
		if banned {
			action = "node.ban"
		}
		t.record(action, id.String(), map[string]string{"serial_number": out.SerialNumber})
		return nil
	})
	if err != nil {
		return Node{}, err
	}
	return out, nil
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
