package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

// Revocation is one SVID revocation in force (migration 00013).
type Revocation struct {
	// Serial is the lowercase hex serial of a revoked X509-SVID; empty for
	// the revocation of SPIFFEID's JWT-SVIDs issued at or before RevokedAt.
	Serial    string
	SPIFFEID  string
	RevokedAt time.Time
	// ExpiresAt is when the revoked SVIDs expire; the row is pruned after.
	ExpiresAt time.Time
	// Revision is the store revision the revocation was written at.
	Revision int64
}

// MaxRevokeSerials bounds how many X509-SVIDs one revocation by SPIFFE ID
// may name.
const MaxRevokeSerials = 100000

// ActionSVIDRevoke is the audit action of every revocation.
const ActionSVIDRevoke = "svid.revoke"

// liveSVID is an issued SVID that has not expired.
type liveSVID struct {
	serial, spiffeID string
	expiresAt        int64
	node             bool // an agent SVID (from the nodes table)
}

// RevokeSerial revokes the X509-SVID with serial (lowercase hex, without
// leading zeros), a workload SVID recorded at issuance or an agent SVID
// of an attested node. A serial that was never issued (or whose SVID
// expired) is NotFound; one already revoked returns its revocation and
// writes nothing. The revocation is audited (svid.revoke).
func (s *Store) RevokeSerial(ctx context.Context, serial string) (Revocation, error) {
	if serial == "" {
		return Revocation{}, errkind.New(errkind.InvalidArgument, "serial is required")
	}
	var out Revocation
	err := s.update(ctx, "revoke svid "+serial, true, func(t *wtx) error {
		now := timeToDB(t.now)
		if r, ok, err := t.revocation(ctx, serial, ""); err != nil {
			return err
		} else if ok {
			out = r
			return errRollback
		}
		live, err := t.liveSVIDs(ctx, "serial", serial, now)
		if err != nil {
			return err
		}
		if len(live) == 0 {
			return errkind.New(errkind.NotFound,
				"serial: no unexpired SVID with serial %s was issued by this trust domain's server (check `signet svid revocations` and the audit log's svid.x509.sign records)", serial)
		}
		out = Revocation{Serial: serial, SPIFFEID: live[0].spiffeID, RevokedAt: timeFromDB(now),
			ExpiresAt: timeFromDB(live[0].expiresAt), Revision: t.rev}
		return t.writeRevocations(ctx, []Revocation{out}, nodeSerials(live))
	})
	return out, err
}

// RevokeSPIFFEID revokes every unexpired X509-SVID issued for id so far
// (one revocation per serial) and, with one more row, its JWT-SVIDs issued
// at or before now. An ID no unexpired SVID was issued for is NotFound.
// It returns the revocations written, audited as svid.revoke.
func (s *Store) RevokeSPIFFEID(ctx context.Context, id spiffeid.ID) ([]Revocation, error) {
	if id.IsZero() {
		return nil, errkind.New(errkind.InvalidArgument, "spiffe_id is required")
	}
	var out []Revocation
	err := s.update(ctx, "revoke svids of "+id.String(), true, func(t *wtx) error {
		now := timeToDB(t.now)
		live, err := t.liveSVIDs(ctx, "spiffe_id", id.String(), now)
		if err != nil {
			return err
		}
		if len(live) == 0 {
			return errkind.New(errkind.NotFound, "spiffe_id: no unexpired SVID was issued for %s", id)
		}
		if len(live) > MaxRevokeSerials {
			return errkind.New(errkind.FailedPrecondition, "spiffe_id: %s has %d unexpired SVIDs, more than one revocation may name (%d); revoke its entries instead",
				id, len(live), MaxRevokeSerials)
		}
		var latest int64
		var serials []string
		for _, l := range live {
			if l.serial != "" {
				serials = append(serials, l.serial)
			}
		}
		known := map[string]bool{}
		err = t.queryIn(ctx, "SELECT serial FROM svid_revocations WHERE serial", nil, serials, func(rows *sql.Rows) error {
			var s string
			err := rows.Scan(&s)
			known[s] = true
			return err
		})
		if err != nil {
			return err
		}
		for _, l := range live {
			latest = max(latest, l.expiresAt)
			if l.serial == "" || known[l.serial] {
				continue
			}
			known[l.serial] = true
			out = append(out, Revocation{Serial: l.serial, SPIFFEID: l.spiffeID, RevokedAt: timeFromDB(now),
				ExpiresAt: timeFromDB(l.expiresAt), Revision: t.rev})
		}
		// The ID's row refuses its JWT-SVIDs up to now; a later revocation
		// of the same ID moves it forward.
		if _, err := t.exec(ctx, "DELETE FROM svid_revocations WHERE serial = '' AND spiffe_id = ?", id.String()); err != nil {
			return err
		}
		out = append(out, Revocation{SPIFFEID: id.String(), RevokedAt: timeFromDB(now), ExpiresAt: timeFromDB(latest), Revision: t.rev})
		return t.writeRevocations(ctx, out, nodeSerials(live))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// revocation reads the revocation of (serial, spiffeID), if any.
func (t *wtx) revocation(ctx context.Context, serial, spiffeID string) (Revocation, bool, error) {
	q := "SELECT serial, spiffe_id, revoked_at, expires_at, revision FROM svid_revocations WHERE serial = ?"
	args := []any{serial}
	if serial == "" {
		q += " AND spiffe_id = ?"
		args = append(args, spiffeID)
	}
	r, err := scanRevocation(t.queryRow(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Revocation{}, false, nil
	}
	return r, err == nil, err
}

// liveSVIDs finds the unexpired SVIDs whose column col (serial or
// spiffe_id) is value: workload SVIDs from their issuance bindings, agent
// SVIDs from the nodes' current, pending and previous serials.
func (t *wtx) liveSVIDs(ctx context.Context, col, value string, now int64) ([]liveSVID, error) {
	var out []liveSVID
	rows, err := t.query(ctx, "SELECT serial, spiffe_id, expires_at FROM svid_bindings WHERE "+col+" = ? AND expires_at > ?", value, now)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var l liveSVID
		if err := rows.Scan(&l.serial, &l.spiffeID, &l.expiresAt); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	q := "SELECT spiffe_id, serial_number, new_serial_number, prev_serial_number, cert_not_after FROM nodes WHERE "
	var args []any
	if col == "serial" {
		q += "(serial_number = ? OR new_serial_number = ? OR prev_serial_number = ?)"
		args = []any{value, value, value}
	} else {
		q += "spiffe_id = ?"
		args = []any{value}
	}
	nrows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer nrows.Close()
	for nrows.Next() {
		var id, cur, pending, prev string
		var notAfter int64
		if err := nrows.Scan(&id, &cur, &pending, &prev, &notAfter); err != nil {
			return nil, err
		}
		if notAfter <= now {
			continue
		}
		for _, sn := range []string{cur, pending, prev} {
			if sn != "" && (col != "serial" || sn == value) {
				out = append(out, liveSVID{serial: sn, spiffeID: id, expiresAt: notAfter, node: true})
			}
		}
	}
	return out, nrows.Err()
}

// nodeSerials returns the serials of agent SVIDs among live.
func nodeSerials(live []liveSVID) map[string]bool {
	m := map[string]bool{}
	for _, l := range live {
		if l.node {
			m[l.serial] = true
		}
	}
	return m
}

// writeRevocations inserts revocations and audits each. A revoked agent
// SVID's serial is also taken off its node, so that neither the agent API
// nor agent_reauth (which admits the key of an expired SVID, after the
// revocation itself was pruned) ever accepts it again: the node must attest
// anew.
func (t *wtx) writeRevocations(ctx context.Context, rs []Revocation, agentSerials map[string]bool) error {
	for _, r := range rs {
		if r.Serial == "" || !agentSerials[r.Serial] {
			continue
		}
		for _, col := range []string{"serial_number", "new_serial_number", "prev_serial_number"} {
			if _, err := t.exec(ctx, "UPDATE nodes SET "+col+" = '', revision = ? WHERE spiffe_id = ? AND "+col+" = ?",
				t.rev, r.SPIFFEID, r.Serial); err != nil {
				return fmt.Errorf("take revoked serial off node: %w", err)
			}
		}
	}
	err := t.insertRows(ctx, "svid_revocations", []string{"serial", "spiffe_id", "revoked_at", "expires_at", "revision"}, len(rs),
		func(i int, args []any) []any {
			r := rs[i]
			return append(args, r.Serial, r.SPIFFEID, timeToDB(r.RevokedAt), timeToDB(r.ExpiresAt), r.Revision)
		})
	if err != nil {
		return fmt.Errorf("write svid revocations: %w", err)
	}
	for _, r := range rs {
		object, kind := r.Serial, "x509"
		if r.Serial == "" {
			object, kind = r.SPIFFEID, "jwt"
		}
		t.record(ActionSVIDRevoke, object, map[string]string{"spiffe_id": r.SPIFFEID, "svid": kind,
			"expires_at": r.ExpiresAt.UTC().Format(time.RFC3339)})
	}
	return nil
}

func scanRevocation(row interface{ Scan(...any) error }) (Revocation, error) {
	var r Revocation
	var at, exp int64
	if err := row.Scan(&r.Serial, &r.SPIFFEID, &at, &exp, &r.Revision); err != nil {
		return Revocation{}, err
	}
	r.RevokedAt, r.ExpiresAt = timeFromDB(at), timeFromDB(exp)
	return r, nil
}

// ListRevocations returns the revocations in force at now (unexpired),
// by serial then SPIFFE ID.
func (s *Store) ListRevocations(ctx context.Context, now time.Time) ([]Revocation, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(
		"SELECT serial, spiffe_id, revoked_at, expires_at, revision FROM svid_revocations WHERE expires_at > ?"), timeToDB(now))
	if err != nil {
		return nil, fmt.Errorf("list svid revocations: %w", err)
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		r, err := scanRevocation(rows)
		if err != nil {
			return nil, fmt.Errorf("list svid revocations: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list svid revocations: %w", err)
	}
	slices.SortFunc(out, func(a, b Revocation) int {
		if c := strings.Compare(a.Serial, b.Serial); c != 0 {
			return c
		}
		return strings.Compare(a.SPIFFEID, b.SPIFFEID)
	})
	return out, nil
}

// PruneRevocations forgets the revocations of SVIDs that expired before
// now, and returns how many.
func (s *Store) PruneRevocations(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind("DELETE FROM svid_revocations WHERE expires_at <= ?"), timeToDB(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune svid revocations: %w", err)
	}
	return n, nil
}

// FeedEvent is a change the agents' push streams act on, read from the
// audit log (which every such change appends to in its own transaction,
// in commit order).
type FeedEvent struct {
	Seq    int64
	Action string // node.evict, node.ban or svid.revoke
	Object string // the node's SPIFFE ID, or the revoked serial / SPIFFE ID
}

// feedActions are the audit actions FeedEvents returns.
var feedActions = []string{"node.evict", "node.ban", ActionSVIDRevoke}

// maxFeedEvents bounds one FeedEvents read.
const maxFeedEvents = 10000

// AuditHead returns the sequence number of the newest audit record (0 when
// there is none): where a new reader of FeedEvents starts.
func (s *Store) AuditHead(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM audit_log").Scan(&seq); err != nil {
		return 0, fmt.Errorf("read audit head: %w", err)
	}
	return seq, nil
}

// FeedEvents returns the evictions, bans and revocations recorded after
// audit sequence number after, oldest first, and the sequence number to
// pass next time. At most 10,000 are returned at once; the next call
// continues.
func (s *Store) FeedEvents(ctx context.Context, after int64) ([]FeedEvent, int64, error) {
	head, err := s.AuditHead(ctx)
	if err != nil || head <= after {
		return nil, after, err
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind("SELECT seq, action, object FROM audit_log WHERE seq > ? AND seq <= ? AND action IN (?, ?, ?) ORDER BY seq LIMIT ?"),
		after, head, feedActions[0], feedActions[1], feedActions[2], maxFeedEvents)
	if err != nil {
		return nil, after, fmt.Errorf("read feed events: %w", err)
	}
	defer rows.Close()
	var out []FeedEvent
	for rows.Next() {
		var e FeedEvent
		if err := rows.Scan(&e.Seq, &e.Action, &e.Object); err != nil {
			return nil, after, fmt.Errorf("read feed events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, after, fmt.Errorf("read feed events: %w", err)
	}
	if len(out) == maxFeedEvents {
		head = out[len(out)-1].Seq
	}
	return out, head, nil
}
