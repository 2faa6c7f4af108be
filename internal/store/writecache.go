package store

import (
	"context"
	"database/sql"
	"fmt"
)

// The SQLite write connection's page cache grows with a large database.
// Bulk creates touch, per commit, a few leaves of each parent's,
// namespace's and SPIFFE ID prefix's run in the entry indexes (BENCHMARKS.md,
// "1,000,000 entries at a flat rate"): a working set that grows with the
// store, which sqliteWriteCacheKiB holds only while the store is small.
// Past writeCacheFrom of database file, the writer's cache grows by a
// quarter of the excess, up to writeCacheMaxKiB: a store of 100,000
// entries (about 115 MB) keeps the small cache, so a 100,000-entry batch
// stays within the server's memory bound (issue 16); the cap is reached at
// about 376 MB (some 330,000 entries; 1,000,000 are about 1.15 GB, with
// ~385 MB of entry cache in the server).
const (
	writeCacheFrom   = 128 << 10 // KiB of database
	writeCacheShare  = 4
	writeCacheMaxKiB = 64 << 10
)

// writeCacheKiB is the writer's cache for a database of dbKiB.
func writeCacheKiB(dbKiB int64) int64 {
	if dbKiB <= writeCacheFrom {
		return sqliteWriteCacheKiB
	}
	return min(sqliteWriteCacheKiB+(dbKiB-writeCacheFrom)/writeCacheShare, writeCacheMaxKiB)
}

// The sizing in force; tests replace it.
var (
	// writeCacheEvery is how many inserted rows pass between two sizings:
	// each reads three pragmas on the write connection.
	writeCacheEvery = 20_000
	writeCacheFor   = writeCacheKiB
)

// countInserted counts rows a committed write transaction inserted and,
// once writeCacheEvery have passed since the last sizing, sizes the write
// connection's cache. Called on SQLite only, with the write turn held (or
// from Open, before any write) and conn the write connection or nil.
func (s *Store) countInserted(ctx context.Context, conn *sql.Conn, rows int) {
	if s.cacheRows += rows; s.cacheRows < writeCacheEvery {
		return
	}
	s.cacheRows = 0
	if err := s.sizeWriteCache(ctx, conn); err != nil {
		s.log.Warn("sizing the sqlite write connection's page cache failed", logKeyError, err)
	}
}

// sizeWriteCache sets the page cache of conn, the write connection (nil:
// take it from the pool), to writeCacheKiB of the database's size, unless
// what it has is within a quarter of that. The cache size is read back
// each time: a connection the pool replaced starts with the default.
func (s *Store) sizeWriteCache(ctx context.Context, conn *sql.Conn) error {
	if conn == nil {
		c, err := s.w.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		conn = c
	}
	var pages, pageSize, cache int64
	for _, p := range []struct {
		name string
		v    *int64
	}{{"page_count", &pages}, {"page_size", &pageSize}, {"cache_size", &cache}} {
		if err := conn.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(p.v); err != nil {
			return fmt.Errorf("read %s: %w", p.name, err)
		}
	}
	have := -cache // negative: KiB; positive: pages
	if cache > 0 {
		have = cache * pageSize >> 10
	}
	want := writeCacheFor(pages * pageSize >> 10)
	if d := want - have; d*4 <= have && -d*4 <= have {
		return nil
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", want)); err != nil {
		return fmt.Errorf("set cache_size: %w", err)
	}
	s.log.Debug("sqlite write connection's page cache sized", "database_kib", pages*pageSize>>10, "cache_kib", want)
	return nil
}
