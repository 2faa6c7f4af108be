package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// PostgresEnv names the variable holding the PostgreSQL DSN tests use;
// DefaultPostgresDSN applies when it is unset.
const (
	PostgresEnv        = "SIGNET_TEST_POSTGRES"
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

var pg struct {
	once sync.Once
	dsn  string
	db   *sql.DB
	err  error
}

// PostgresDSN creates a fresh, empty schema in the test PostgreSQL database,
// drops it when tb ends, and returns a DSN whose search_path selects it, for
// store.Config{Driver: store.DriverPostgres, DSN: …}. It skips the test when
// PostgreSQL is unreachable, and fails it instead when $CI is set.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	pg.once.Do(func() {
		pg.dsn = os.Getenv(PostgresEnv)
		if pg.dsn == "" {
			pg.dsn = DefaultPostgresDSN
		}
		if pg.db, pg.err = sql.Open("pgx", pg.dsn); pg.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pg.err = pg.db.PingContext(ctx)
	})
	if pg.err != nil {
		msg := "PostgreSQL for tests is unreachable (set " + PostgresEnv + ", or start it with " +
			"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): %v"
		if os.Getenv("CI") != "" {
			tb.Fatalf(msg, pg.err)
		}
		tb.Skipf(msg, pg.err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "signet_t_" + hex.EncodeToString(b[:])
	if _, err := pg.db.ExecContext(tb.Context(), "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := pg.db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(pg.dsn)
	if err != nil || u.Scheme == "" {
		return pg.dsn + " search_path=" + schema // key=value form
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
