package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The coverage aggregations: the counts a coverage report groups by
// environment or owner, computed in SQL so that a report never reads every
// node, entry and lease into the server. Labels are returned raw (as
// stored); the inventory package normalises them, so that a report and a
// listing of the same rows always agree.

// labelExpr is the SQL expression of one label of a JSON labels column,
// "" when the label is absent. key is a constant of the caller's.
func (d *dialect) labelExpr(col, key string) string {
	if d.dollar {
		return "COALESCE((" + col + ")::jsonb ->> '" + key + "', '')"
	}
	return "COALESCE(json_extract(" + col + ", '$." + key + "'), '')"
}

// idPathExpr is the SQL expression of the path of a SPIFFE ID column
// ("/a/b" of "spiffe://td/a/b"; "" when it has none).
func (d *dialect) idPathExpr(col string) string {
	pos := "instr"
	if d.dollar {
		pos = "strpos"
	}
	// "spiffe://" is 9 bytes; the path starts at the first "/" after it.
	return "CASE WHEN " + pos + "(substr(" + col + ", 10), '/') > 0 THEN substr(" + col + ", 9 + " + pos + "(substr(" + col + ", 10), '/')) ELSE '' END"
}

// WorkloadPlace is the raw labels a workload (or a brokered credential of
// one) counts under: its entry's environment and owner labels, its parent
// node's environment label, and whether its parent is an agentless (CI)
// parent.
type WorkloadPlace struct {
	Environment     string // the entry's environment label; "" when none
	NodeEnvironment string // the parent node's environment label; "" when none or no such node
	Owner           string // the entry's owner label; "" when none
	Agentless       bool   // the parent ID's path starts with AgentlessPath
}

// WorkloadCount is how many workloads share one place, and how many of
// them were served an SVID within the window.
type WorkloadCount struct {
	WorkloadPlace
	Workloads int64
	Active    int64
}

// BrokeredCount is how many distinct (credential, subject) pairs with a
// live lease count under one place.
type BrokeredCount struct {
	WorkloadPlace
	Pairs int64
}

// NodeCount is how many nodes have one pair of environment and owner
// labels (raw, "" when absent).
type NodeCount struct {
	Environment, Owner string
	Nodes              int64
}

// AgentlessPath is the path prefix of the parent IDs of agentless (CI)
// workloads.
const AgentlessPath = "/signet/ci/"

// CoverageCountFilter configures the coverage aggregations.
type CoverageCountFilter struct {
	// ExcludeParent: entries with this parent (the server's own ID: node
	// aliases) are not workloads. Zero: none excluded.
	ExcludeParent spiffeid.ID
	// ActiveSince: a workload served an SVID at or after it is active;
	// agentless workloads count their last issuance too.
	ActiveSince time.Time
	// Now: leases that end after it are live.
	Now time.Time
}

// placeColumns selects a workload's place from entries e and nodes n (LEFT
// JOINed on the parent), in the order scanPlace reads them.
func (d *dialect) placeColumns() string {
	return d.labelExpr("e.labels", "environment") + " AS env, " + d.labelExpr("n.labels", "environment") + " AS node_env, " +
		d.labelExpr("e.labels", "owner") + " AS owner, CASE WHEN substr(" + d.idPathExpr("e.parent_id") + ", 1, " +
		fmt.Sprint(len(AgentlessPath)) + ") = '" + AgentlessPath + "' THEN 1 ELSE 0 END AS agentless"
}

// CountWorkloads counts the workloads (entries but those under
// f.ExcludeParent) by place, and the active ones among them, in SQL.
func (s *Store) CountWorkloads(ctx context.Context, f CoverageCountFilter) ([]WorkloadCount, error) {
	since := timeToDB(f.ActiveSince)
	q := "SELECT env, node_env, owner, agentless, COUNT(*), " +
		"SUM(CASE WHEN (served > 0 AND served >= ?) OR (agentless = 1 AND issued > 0 AND issued >= ?) THEN 1 ELSE 0 END) FROM (" +
		"SELECT " + s.d.placeColumns() + ", e.last_served_at AS served, e.last_issued_at AS issued FROM entries e " +
		"LEFT JOIN nodes n ON n.spiffe_id = e.parent_id WHERE e.parent_id <> ?" +
		") w GROUP BY env, node_env, owner, agentless ORDER BY env, node_env, owner, agentless"
	var out []WorkloadCount
	err := s.queryRows(ctx, "count workloads", q, []any{since, since, idToDB(f.ExcludeParent)}, func(rows *sql.Rows) error {
		var c WorkloadCount
		if err := rows.Scan(&c.Environment, &c.NodeEnvironment, &c.Owner, &c.Agentless, &c.Workloads, &c.Active); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// CountBrokered counts, by place, the distinct (credential, subject) pairs
// that have a pending or active lease ending after f.Now, in SQL. A pair
// counts once, under the workload of its newest lease: the entry with the
// lease's SPIFFE ID on the lease's node, else the first (by ID) with its
// SPIFFE ID; a pair without such an entry counts under the empty place.
func (s *Store) CountBrokered(ctx context.Context, f CoverageCountFilter) ([]BrokeredCount, error) {
	q := "SELECT env, node_env, owner, agentless, COUNT(*) FROM (" +
		"SELECT " + s.d.placeColumns() + " FROM (" +
		"SELECT p.subject, (SELECT e2.id FROM entries e2 WHERE e2.spiffe_id = p.subject AND e2.parent_id <> ? " +
		"ORDER BY CASE WHEN e2.parent_id = p.node THEN 0 ELSE 1 END, e2.id LIMIT 1) AS entry_id FROM (" +
		"SELECT subject, node, ROW_NUMBER() OVER (PARTITION BY credential, subject ORDER BY issued_at DESC, id) AS rn " +
		"FROM broker_leases WHERE state IN (?, ?) AND expires_at > ?" +
		") p WHERE p.rn = 1" +
		") m LEFT JOIN entries e ON e.id = m.entry_id LEFT JOIN nodes n ON n.spiffe_id = e.parent_id" +
		") b GROUP BY env, node_env, owner, agentless ORDER BY env, node_env, owner, agentless"
	args := []any{idToDB(f.ExcludeParent), string(LeasePending), string(LeaseActive), timeToDB(normTime(f.Now))}
	var out []BrokeredCount
	err := s.queryRows(ctx, "count brokered credentials", q, args, func(rows *sql.Rows) error {
		var c BrokeredCount
		if err := rows.Scan(&c.Environment, &c.NodeEnvironment, &c.Owner, &c.Agentless, &c.Pairs); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// CountNodes counts the nodes by their raw environment and owner labels,
// in SQL.
func (s *Store) CountNodes(ctx context.Context) ([]NodeCount, error) {
	q := "SELECT env, owner, COUNT(*) FROM (SELECT " + s.d.labelExpr("labels", "environment") + " AS env, " +
		s.d.labelExpr("labels", "owner") + " AS owner FROM nodes) n GROUP BY env, owner ORDER BY env, owner"
	var out []NodeCount
	err := s.queryRows(ctx, "count nodes", q, nil, func(rows *sql.Rows) error {
		var c NodeCount
		if err := rows.Scan(&c.Environment, &c.Owner, &c.Nodes); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// FindingPaths calls fn, one finding at a time and without holding them,
// with the status and primary path of every finding of one of statuses:
// the lowest (in byte order) path of its open locations, else of all its
// locations ("" with none), as inventory.PrimaryPath chooses it.
func (s *Store) FindingPaths(ctx context.Context, statuses []FindingStatus, fn func(status FindingStatus, path string) error) error {
	if len(statuses) == 0 {
		return nil
	}
	path := "l.path"
	if s.d.dollar {
		path = `l.path COLLATE "C"` // byte order, whatever the database's collation
	}
	q := "SELECT f.status, COALESCE(MIN(CASE WHEN l.gone_at = 0 THEN " + path + " END), MIN(" + path + "), '') " +
		"FROM findings f LEFT JOIN finding_locations l ON l.fingerprint = f.fingerprint " +
		"WHERE f.status IN (" + placeholders(len(statuses)) + ") GROUP BY f.fingerprint, f.status"
	return s.queryRows(ctx, "read finding paths", q, anys(statuses), func(rows *sql.Rows) error {
		var st, p string
		if err := rows.Scan(&st, &p); err != nil {
			return err
		}
		return fn(FindingStatus(st), p)
	})
}

// NodeTotals counts the nodes, and the banned ones among them, in SQL.
func (s *Store) NodeTotals(ctx context.Context) (total, banned int64, err error) {
	err = s.queryRows(ctx, "count nodes", "SELECT COUNT(*), COALESCE(SUM(CASE WHEN banned THEN 1 ELSE 0 END), 0) FROM nodes", nil,
		func(rows *sql.Rows) error { return rows.Scan(&total, &banned) })
	return total, banned, err
}

// NodesByID returns the stored nodes among ids, by SPIFFE ID; an ID with
// no node is absent from the map.
func (s *Store) NodesByID(ctx context.Context, ids []spiffeid.ID) (map[spiffeid.ID]Node, error) {
	keys := idKeys(ids)
	out := make(map[spiffeid.ID]Node, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), 500)
		rows, err := s.db.QueryContext(ctx, s.d.rebind(nodeSelect+" WHERE spiffe_id IN ("+placeholders(n)+")"), anys(keys[:n])...)
		if err != nil {
			return nil, fmt.Errorf("read nodes: %w", err)
		}
		for rows.Next() {
			nd, err := scanNode(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("read nodes: %w", err)
			}
			out[nd.SPIFFEID] = nd
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read nodes: %w", err)
		}
		keys = keys[n:]
	}
	return out, nil
}

// EntriesBySPIFFEID returns the entries whose SPIFFE ID is one of ids,
// ordered by ID.
func (s *Store) EntriesBySPIFFEID(ctx context.Context, ids []spiffeid.ID) ([]Entry, error) {
	keys := idKeys(ids)
	var out []Entry
	for len(keys) > 0 {
		n := min(len(keys), 500)
		es, err := s.queryEntries(ctx, s.db, entrySelect+" WHERE spiffe_id IN ("+placeholders(n)+") ORDER BY id", anys(keys[:n])...)
		if err != nil {
			return nil, fmt.Errorf("read entries: %w", err)
		}
		out = append(out, es...)
		keys = keys[n:]
	}
	if len(out) > 0 {
		slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	}
	return out, nil
}

// idKeys returns the distinct non-zero IDs among ids as stored, sorted.
func idKeys(ids []spiffeid.ID) []string {
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		if !id.IsZero() {
			keys = append(keys, id.String())
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// queryRows runs a read query and calls scan for each row; what names the
// query in errors.
func (s *Store) queryRows(ctx context.Context, what, q string, args []any, scan func(*sql.Rows) error) error {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
