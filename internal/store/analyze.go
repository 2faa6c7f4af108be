package store

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Log keys of the statistics keeper.
const (
	logKeyTable = "table"
	logKeyError = "error"
)

// minAnalyzeRows is how many rows bulk writes add to a table, at the least,
// before the store analyzes it again.
const minAnalyzeRows = 1000

// tableStats keeps PostgreSQL's planner statistics of the tables bulk
// writes grow (wtx.insertRows). Without statistics the planner guesses
// that each value of an IN list matches half a percent of the rows, so a
// check of 500 SPIFFE IDs (CreateEntries) is planned as a sequential scan
// of the whole entries table: cheap while it fits in shared_buffers, a
// scan from the disk per 500 entries once it does not
// (BenchmarkCreateEntries1M). Autovacuum analyzes tables as they grow,
// but it may be off, as it is on the test machines, and it wakes once a
// minute, far behind a bulk load. So the store analyzes a table itself
// once writes through this Store have added a fifth of the rows it had
// when last analyzed (and at least minAnalyzeRows), after the write
// commits: the statistics then say the keys are distinct, which holds as
// the table grows further. ANALYZE reads a sample of at most 30,000 rows
// and takes a lock that does not block reads or writes. Nil on SQLite,
// whose planner uses an index for IN lists without statistics.
type tableStats struct {
	mu sync.Mutex
	// added counts the rows written since the table was last analyzed; rows
	// is the table's size then (reltuples; 0 until read).
	added map[string]int64
	rows  map[string]int64
	known map[string]bool // rows was read from pg_class
}

func newTableStats() *tableStats {
	return &tableStats{added: make(map[string]int64), rows: make(map[string]int64), known: make(map[string]bool)}
}

// grown records rows added per table by a committed write and analyzes
// the tables that have grown enough. An ANALYZE that fails is logged: the
// write has committed, and only plans suffer.
func (s *Store) grown(ctx context.Context, added map[string]int) {
	ts := s.stats
	if ts == nil || len(added) == 0 {
		return
	}
	for table, n := range added {
		ts.mu.Lock()
		if !ts.known[table] {
			ts.mu.Unlock()
			var rows float64
			err := s.db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)", table).Scan(&rows)
			if err != nil {
				s.log.Warn("read table size for planner statistics failed", logKeyTable, table, logKeyError, err)
				continue
			}
			ts.mu.Lock()
			if !ts.known[table] {
				ts.known[table], ts.rows[table] = true, max(int64(rows), 0) // -1: never analyzed
			}
		}
		ts.added[table] += int64(n)
		due := ts.added[table] >= max(minAnalyzeRows, ts.rows[table]/5)
		if due {
			// Counted as analyzed before it runs: concurrent writers do not
			// analyze the same table twice.
			ts.rows[table] += ts.added[table]
			ts.added[table] = 0
		}
		ts.mu.Unlock()
		if !due {
			continue
		}
		// The write has committed: analyze even if its caller goes away.
		if _, err := s.w.ExecContext(context.WithoutCancel(ctx), "ANALYZE "+pgx.Identifier{table}.Sanitize()); err != nil {
			s.log.Warn("analyze table for planner statistics failed", logKeyTable, table, logKeyError, err)
		}
	}
}
