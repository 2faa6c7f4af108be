// Package mysqltest gives tests an admin DSN for the MySQL or MariaDB
// server on the machine.
package mysqltest

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
)

// Env names the admin DSN of the test server.
const Env = "SIGNET_TEST_MYSQL"

// DefaultDSN is the machine's MariaDB as root over TCP.
const DefaultDSN = "root@tcp(127.0.0.1:3306)/"

// DSN returns the admin DSN, after checking the server answers. It skips
// the test when the server is unreachable, and fails it under CI.
func DSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(Env)
	if dsn == "" {
		dsn = DefaultDSN
	}
	err := ping(dsn)
	if err != nil {
		msg := "MySQL/MariaDB for tests is unreachable (set " + Env + ", or start it with service mariadb start): %v"
		if os.Getenv("CI") != "" {
			tb.Fatalf(msg, err)
		}
		tb.Skipf(msg, err)
	}
	return dsn
}

// Open returns a connection pool for dsn, closed when the test ends.
func Open(tb testing.TB, dsn string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// WithUser returns dsn with its user and password replaced.
func WithUser(tb testing.TB, dsn, user, password string) string {
	tb.Helper()
	c, err := driver.ParseDSN(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	c.User, c.Passwd = user, password
	return c.FormatDSN()
}

func ping(dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}
