package store

import (
	"path/filepath"
	"testing"
)

// TestSQLiteWriterConnection: on SQLite every write goes through one
// connection of its own, with the large page cache and the long checkpoint
// interval, while readers keep the small cache.
func TestSQLiteWriterConnection(t *testing.T) {
	s, err := Open(t.Context(), Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	defer s.Close()
	if s.w == s.db {
		t.Fatal("the writer is the readers' pool")
	}
	if got := s.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer MaxOpenConnections = %d, want 1", got)
	}
	for _, c := range []struct {
		name, pragma string
		want         int
	}{
		{"writer", "cache_size", -sqliteWriteCacheKiB},
		{"writer", "wal_autocheckpoint", 10000},
		{"reader", "cache_size", -sqliteReadCacheKiB},
		{"reader", "wal_autocheckpoint", 1000},
	} {
		db := s.db
		if c.name == "writer" {
			db = s.w
		}
		var got int
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("%s PRAGMA %s: %v", c.name, c.pragma, err)
		}
		if got != c.want {
			t.Errorf("%s PRAGMA %s = %d, want %d", c.name, c.pragma, got, c.want)
		}
	}
	// A write transaction runs on the writer: while it holds the one
	// connection, the writer has no idle one.
	err = s.update(t.Context(), "test", true, func(tx *wtx) error {
		if st := s.w.Stats(); st.InUse != 1 {
			t.Errorf("writer in use during update = %d, want 1", st.InUse)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("update() error = %v", err)
	}
}
