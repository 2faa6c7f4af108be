package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// openSQLite opens (creating when missing) the SQLite store at path and
// closes it when tb ends.
func openSQLite(tb testing.TB, path string) *store.Store {
	tb.Helper()
	s, err := store.Open(tb.Context(), store.Config{DSN: path})
	if err != nil {
		tb.Fatalf("Open(sqlite %s) error = %v", path, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Store {
		return openSQLite(t, filepath.Join(t.TempDir(), "signet.db"))
	})
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "signet.db")
	s, err := store.Open(t.Context(), store.Config{Driver: store.DriverSQLite, DSN: path})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	testReopen(t, s, func() *store.Store { return openSQLite(t, path) })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("database file mode = %v, want 0600", perm)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

func TestSQLiteOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		cfg  store.Config
		kind errkind.Kind
		want string
	}{
		"empty dsn":      {store.Config{}, errkind.InvalidArgument, "sqlite"},
		"dir is a file":  {store.Config{DSN: filepath.Join(file, "signet.db")}, errkind.Unavailable, "sqlite store at"},
		"uri dsn":        {store.Config{DSN: "file:x.db?mode=ro"}, errkind.InvalidArgument, "plain file path"},
		"unknown driver": {store.Config{Driver: "mysql", DSN: "x"}, errkind.InvalidArgument, `unknown driver "mysql"`},
		"not a database": {store.Config{DSN: notADatabase(t)}, errkind.Unavailable, "file is not a database"},
	}
	for name, c := range cases {
		s, err := store.Open(t.Context(), c.cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open() error = nil", name)
			continue
		}
		if errkind.Of(err) != c.kind || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open() error = %v (kind %v), want kind %v mentioning %q", name, err, errkind.Of(err), c.kind, c.want)
		}
	}
}

func notADatabase(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(p, []byte(strings.Repeat("this is not a database file ", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
