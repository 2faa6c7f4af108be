package store

import (
	"database/sql"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
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

// TestNamedValuesConvertsAsDatabaseSQL: the driver-level bulk inserts pass
// each argument as database/sql would have: driver values as they are,
// everything else through driver.DefaultParameterConverter, with its
// ordinal; a value it cannot convert names the argument.
func TestNamedValuesConvertsAsDatabaseSQL(t *testing.T) {
	type name string
	var nilText *string
	text := "x"
	at := time.Unix(1700000000, 5).UTC()
	var w wtx
	got, err := w.namedValues([]any{"a", int64(1), 2, time.Duration(3), name("b"), nil, nilText, &text, true, 1.5, []byte("c"), at, uint8(7)})
	if err != nil {
		t.Fatalf("namedValues() error = %v", err)
	}
	want := []any{"a", int64(1), int64(2), int64(3), "b", nil, nil, "x", true, 1.5, []byte("c"), at, int64(7)}
	if len(got) != len(want) {
		t.Fatalf("namedValues() = %d values, want %d", len(got), len(want))
	}
	for i, nv := range got {
		if nv.Ordinal != i+1 || !reflect.DeepEqual(nv.Value, want[i]) {
			t.Errorf("value %d = {%d, %#v}, want {%d, %#v}", i, nv.Ordinal, nv.Value, i+1, want[i])
		}
	}
	// The buffer is reused: a second call overwrites the first.
	again, err := w.namedValues([]any{"z"})
	if err != nil || len(again) != 1 || again[0].Value != "z" || &again[0] != &got[0] {
		t.Errorf("second namedValues() = %v, %v; want the reused buffer holding \"z\"", again, err)
	}
	if _, err := w.namedValues([]any{"ok", struct{}{}}); err == nil || !strings.Contains(err.Error(), "argument 2") {
		t.Errorf("namedValues(struct{}) error = %v, want one naming argument 2", err)
	}
}

// TestWriteCacheKiB: the writer's cache is the small default until the
// database passes writeCacheFrom, then grows by a quarter of the excess, up
// to the cap.
func TestWriteCacheKiB(t *testing.T) {
	for _, c := range []struct{ db, want int64 }{
		{0, sqliteWriteCacheKiB},
		{115 << 10, sqliteWriteCacheKiB}, // about 100,000 entries
		{writeCacheFrom, sqliteWriteCacheKiB},
		{writeCacheFrom + 4<<10, sqliteWriteCacheKiB + 1<<10},
		{256 << 10, sqliteWriteCacheKiB + 32<<10},
		{376 << 10, writeCacheMaxKiB},
		{1150 << 10, writeCacheMaxKiB}, // about 1,000,000 entries
		{1 << 40, writeCacheMaxKiB},
	} {
		if got := writeCacheKiB(c.db); got != c.want {
			t.Errorf("writeCacheKiB(%d KiB) = %d KiB, want %d", c.db, got, c.want)
		}
	}
}

// TestWriteCacheSized: at Open and after writes that inserted enough rows,
// the write connection's cache is set to what writeCacheFor says for the
// database's size; it is left alone when within a quarter of that, and set
// again on a connection that lost it; the readers keep theirs.
func TestWriteCacheSized(t *testing.T) {
	want := int64(3000)
	var sawDB int64
	oldEvery, oldFor := writeCacheEvery, writeCacheFor
	writeCacheEvery = 1
	writeCacheFor = func(db int64) int64 { sawDB = db; return want }
	t.Cleanup(func() { writeCacheEvery, writeCacheFor = oldEvery, oldFor })

	s, err := Open(t.Context(), Config{DSN: filepath.Join(t.TempDir(), "signet.db")})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	defer s.Close()
	cacheSize := func(db *sql.DB) int64 {
		t.Helper()
		var v int64
		if err := db.QueryRowContext(t.Context(), "PRAGMA cache_size").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := cacheSize(s.w); got != -3000 || sawDB <= 0 {
		t.Fatalf("writer cache_size after Open = %d (database %d KiB), want -3000", got, sawDB)
	}
	// Within a quarter: left as it is.
	want = 3500
	if err := s.sizeWriteCache(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if got := cacheSize(s.w); got != -3000 {
		t.Errorf("writer cache_size = %d, want -3000 kept (3500 is within a quarter)", got)
	}
	// A write that inserts rows sizes it after its commit, also on a
	// connection that lost the setting (as one the pool replaced would).
	if _, err := s.w.ExecContext(t.Context(), "PRAGMA cache_size = -2048"); err != nil {
		t.Fatal(err)
	}
	want = 8000
	entry := Entry{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/w"),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/n"), Selectors: []Selector{{Type: "unix", Value: "uid:1"}}}
	if _, err := s.CreateEntries(WithActor(t.Context(), "test"), []Entry{entry}, true); err != nil {
		t.Fatalf("CreateEntries() error = %v", err)
	}
	if got := cacheSize(s.w); got != -8000 {
		t.Errorf("writer cache_size after a write = %d, want -8000", got)
	}
	if got := cacheSize(s.db); got != -sqliteReadCacheKiB {
		t.Errorf("reader cache_size = %d, want %d", got, -sqliteReadCacheKiB)
	}
}
