package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
)

// MaxNodeAddresses is how many addresses the store keeps per node: the most
// recently seen ones.
const MaxNodeAddresses = 4

// NodeAddress is a network address a node's agent was seen connecting
// from, and when.
type NodeAddress struct {
	Addr      netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
}

// canonicalAddr is addr as the store keeps it: an IPv4-mapped IPv6 address
// as IPv4, without a zone.
func canonicalAddr(addr netip.Addr) netip.Addr { return addr.Unmap().WithZone("") }

// RecordNodeAddress records that the agent of node id connected from addr
// at at: a new address is added, a known one has its LastSeen advanced
// (never moved back). Only the MaxNodeAddresses most recently seen
// addresses are kept; older ones are dropped in the same write. It is
// usage, not state: the revision does not change and nothing is audited.
// Every call writes, so callers throttle (the agent API writes on a change
// of address or every few minutes). The error is kinded NotFound when the
// node is unknown (evicted), InvalidArgument when addr is the zero Addr.
func (s *Store) RecordNodeAddress(ctx context.Context, id spiffeid.ID, addr netip.Addr, at time.Time) error {
	if !addr.IsValid() {
		return errkind.New(errkind.InvalidArgument, "record node address of %s: the address is missing", id)
	}
	a, ts, node := canonicalAddr(addr).String(), timeToDB(at), idToDB(id)
	var n int64
	err := s.plainWrite(ctx, func(tx *sql.Tx) error {
		// INSERT … SELECT from nodes: nothing is written for an unknown node.
		res, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO node_addresses (node_id, address, first_seen_at, last_seen_at)
			SELECT spiffe_id, ?, ?, ? FROM nodes WHERE spiffe_id = ?
			ON CONFLICT (node_id, address) DO UPDATE SET last_seen_at = CASE
				WHEN node_addresses.last_seen_at < excluded.last_seen_at THEN excluded.last_seen_at
				ELSE node_addresses.last_seen_at END`), a, ts, ts, node)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, s.d.rebind(`DELETE FROM node_addresses WHERE node_id = ? AND address NOT IN (
			SELECT address FROM node_addresses WHERE node_id = ? ORDER BY last_seen_at DESC, address LIMIT ?)`),
			node, node, MaxNodeAddresses)
		return err
	})
	if err != nil {
		return fmt.Errorf("record node address of %s: %w", id, err)
	}
	if n == 0 {
		return errkind.New(errkind.NotFound, "node %s not found", id)
	}
	return nil
}

// NodeAddresses returns the addresses the agent of node id was seen
// connecting from, most recently seen first (at most MaxNodeAddresses).
// An unknown node, or one never seen on the agent API, has none.
func (s *Store) NodeAddresses(ctx context.Context, id spiffeid.ID) ([]NodeAddress, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(
		"SELECT address, first_seen_at, last_seen_at FROM node_addresses WHERE node_id = ? ORDER BY last_seen_at DESC, address"), idToDB(id))
	if err != nil {
		return nil, fmt.Errorf("list node addresses of %s: %w", id, err)
	}
	defer rows.Close()
	var out []NodeAddress
	for rows.Next() {
		var a string
		var first, last int64
		if err := rows.Scan(&a, &first, &last); err != nil {
			return nil, fmt.Errorf("list node addresses of %s: %w", id, err)
		}
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("list node addresses of %s: stored address %q: %w", id, a, err)
		}
		out = append(out, NodeAddress{Addr: addr, FirstSeen: timeFromDB(first), LastSeen: timeFromDB(last)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list node addresses of %s: %w", id, err)
	}
	return out, nil
}
