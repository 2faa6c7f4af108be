package store_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

func openPostgres(tb testing.TB, dsn string) *store.Store {
	tb.Helper()
	s, err := store.Open(tb.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil {
		tb.Fatalf("Open(postgres) error = %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *store.Store {
		return openPostgres(t, storetest.PostgresDSN(t))
	})
}

func TestPostgresReopen(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	testReopen(t, s, func() *store.Store { return openPostgres(t, dsn) })
}

// TestPostgresConcurrentOpen starts several "replicas" on one fresh
// database at once: the migration lock must let exactly one migrate.
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open() error = %v", i, err)
		}
	}
}

func TestPostgresOpenErrors(t *testing.T) {
	const secret = "s3cr3t-pw"
	cases := map[string]string{
		"unreachable url": "postgres://signet:" + secret + "@127.0.0.1:1/signet?sslmode=disable&connect_timeout=2",
		"unreachable kv":  "host=127.0.0.1 port=1 user=signet password=" + secret + " dbname=signet sslmode=disable connect_timeout=2",
		"malformed":       "postgres://signet:" + secret + "@127.0.0.1:notaport/signet",
		"empty":           "",
	}
	for name, dsn := range cases {
		s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
		if err == nil {
			s.Close()
			t.Errorf("%s: Open() error = nil", name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "postgres") || strings.Contains(msg, secret) {
			t.Errorf("%s: Open() error = %q, want it to name postgres and not reveal the password", name, msg)
		}
	}
}

// TestPostgresAnalyzesGrownTables: once bulk creates have added
// minAnalyzeRows rows to a never-analyzed table, the store analyzes it, so
// the planner knows SPIFFE IDs are distinct (n_distinct -1) instead of
// planning CreateEntries' IN-list checks as scans of the whole table.
func TestPostgresAnalyzesGrownTables(t *testing.T) {
	s := openPostgres(t, storetest.PostgresDSN(t))
	ctx := store.WithActor(t.Context(), "test")
	nDistinct := func() (float64, bool) {
		t.Helper()
		var nd float64
		err := s.DB().QueryRowContext(ctx, `SELECT n_distinct FROM pg_stats
			WHERE schemaname = current_schema() AND tablename = 'entries' AND attname = 'spiffe_id'`).Scan(&nd)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false
		}
		if err != nil {
			t.Fatalf("read pg_stats: %v", err)
		}
		return nd, true
	}
	create := func(from, n int) {
		t.Helper()
		es := make([]store.Entry, n)
		for i := range es {
			es[i] = store.Entry{
				SPIFFEID:  spiffeID(t, fmt.Sprintf("spiffe://example.org/analyze/%d", from+i)),
				ParentID:  spiffeID(t, "spiffe://example.org/node/n1"),
				Selectors: []store.Selector{{Type: "unix", Value: "uid:1000"}},
			}
		}
		res, err := s.CreateEntries(ctx, es, true)
		if err != nil {
			t.Fatalf("CreateEntries() error = %v", err)
		}
		if len(res) != n {
			t.Fatalf("CreateEntries() = %d results, want %d", len(res), n)
		}
	}
	create(0, 600)
	if nd, ok := nDistinct(); ok {
		t.Fatalf("after 600 entries: entries.spiffe_id n_distinct = %v, want no statistics yet (threshold 1000)", nd)
	}
	create(600, 600)
	nd, ok := nDistinct()
	if !ok || nd != -1 {
		t.Fatalf("after 1,200 entries: entries.spiffe_id n_distinct = %v (statistics: %v), want -1 (all distinct)", nd, ok)
	}
}
