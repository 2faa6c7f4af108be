package store

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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
