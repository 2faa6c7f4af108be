package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// defaultTestPostgres is the database the PostgreSQL tests use unless
// SIGNET_TEST_POSTGRES names another. Each test gets its own schema in it.
const defaultTestPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var pg struct {
	once sync.Once
	dsn  string
	db   *sql.DB
	err  error
}

// pgAdmin returns a connection to the test database, skipping the test when
// PostgreSQL is unreachable (failing it when the CI variable is set).
func pgAdmin(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	pg.once.Do(func() {
		pg.dsn = os.Getenv("SIGNET_TEST_POSTGRES")
		if pg.dsn == "" {
			pg.dsn = defaultTestPostgres
		}
		pg.db, pg.err = sql.Open("pgx", pg.dsn)
		if pg.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pg.err = pg.db.PingContext(ctx)
	})
	if pg.err != nil {
		msg := "PostgreSQL for tests is unreachable (set SIGNET_TEST_POSTGRES, or start it with " +
			"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): %v"
		if os.Getenv("CI") != "" {
			tb.Fatalf(msg, pg.err)
		}
		tb.Skipf(msg, pg.err)
	}
	return pg.db, pg.dsn
}

// pgSchemaDSN creates a fresh schema, dropped when tb ends, and returns a
// DSN whose search_path selects it.
func pgSchemaDSN(tb testing.TB) string {
	tb.Helper()
	db, dsn := pgAdmin(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "signet_t_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(tb.Context(), "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn + " search_path=" + schema // key=value form
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

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
	pgAdmin(t)
	storetest.Run(t, func(t *testing.T) *store.Store {
		return openPostgres(t, pgSchemaDSN(t))
	})
}

func TestPostgresReopen(t *testing.T) {
	dsn := pgSchemaDSN(t)
	s, err := store.Open(t.Context(), store.Config{Driver: store.DriverPostgres, DSN: dsn})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	testReopen(t, s, func() *store.Store { return openPostgres(t, dsn) })
}

// TestPostgresConcurrentOpen starts several "replicas" on one fresh
// database at once: the migration lock must let exactly one migrate.
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := pgSchemaDSN(t)
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
