package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
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

// PostgresDSN creates a fresh, empty schema in the test PostgreSQL database,
// drops it when tb ends, and returns a DSN whose search_path selects it, for
// store.Config{Driver: store.DriverPostgres, DSN: …}. It skips the test when
// PostgreSQL is unreachable, and fails it instead when $CI is set.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(PostgresEnv)
	if dsn == "" {
		dsn = DefaultPostgresDSN
	}
	// A pool per caller, closed in cleanup: nothing outlives the test, so
	// goroutine-leak checks stay meaningful.
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err != nil {
			db.Close()
		}
	}
	if err != nil {
		msg := "PostgreSQL for tests is unreachable (set " + PostgresEnv + ", or start it with " +
			"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): %v"
		if os.Getenv("CI") != "" {
			tb.Fatalf(msg, err)
		}
		tb.Skipf(msg, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "signet_t_" + hex.EncodeToString(b[:])
	if _, err := db.ExecContext(tb.Context(), "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		defer db.Close()
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
