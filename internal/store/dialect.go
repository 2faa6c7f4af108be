package store

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/XSAM/otelsql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/signet-id/signet/internal/errkind"
)

// dialect holds what differs between the SQL backends. Queries are written
// once, with '?' placeholders, and rebound per dialect.
type dialect struct {
	name  string
	goose goose.Dialect
	// forUpdate is appended to the revision-row read of transactions that
	// lock without bumping. SQLite needs none: its write transactions begin
	// IMMEDIATE and so hold the database's single write lock.
	forUpdate string
	// snapshot are the options of read transactions that must see one
	// consistent state across several statements.
	snapshot sql.TxOptions
	// write are the options of write transactions. PostgreSQL's must be
	// READ COMMITTED whatever the server's default: a writer that waited for
	// the revision row lock must then see what the previous writer committed.
	write *sql.TxOptions
	// maxParams bounds the bind parameters of one statement.
	maxParams int
	dollar    bool // $1, $2 … placeholders instead of ?
	// insert begins the multi-row INSERTs of bulk writes. On SQLite, OR
	// ROLLBACK spares every statement a statement journal: a constraint
	// failure, which the store's own checks rule out, fails the whole
	// transaction instead of only the statement.
	insert string
	// copy is set when large batches go through the COPY protocol.
	copy bool
}

var sqliteDialect = &dialect{
	name:      DriverSQLite,
	goose:     goose.DialectSQLite3,
	snapshot:  sql.TxOptions{ReadOnly: true}, // WAL read transactions are snapshots
	maxParams: 32766,
	insert:    "INSERT OR ROLLBACK INTO ",
}

var postgresDialect = &dialect{
	name:      DriverPostgres,
	goose:     goose.DialectPostgres,
	forUpdate: " FOR UPDATE",
	snapshot:  sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	write:     &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	maxParams: 65535,
	dollar:    true,
	insert:    "INSERT INTO ",
	copy:      true,
}

// rebind rewrites '?' placeholders into the dialect's form. Queries never
// contain '?' inside literals.
func (d *dialect) rebind(q string) string {
	if !d.dollar || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + len(q)/4)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// isUniqueViolation reports whether err is a unique or primary key
// constraint violation.
func (d *dialect) isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return false
}

// sqlitePragmas are applied to every SQLite connection.
var sqlitePragmas = []string{
	"busy_timeout(10000)",
	"journal_mode(WAL)",
	"foreign_keys(ON)",
	"synchronous(NORMAL)",
	"cache_size(-2048)",  // 2 MiB page cache per connection (up to 8 of them): 8 MiB and 32 MiB were no faster for 100,000-entry batches, and 8 MiB cost ~45 MB of peak RSS
	"temp_store(MEMORY)", // statement journals of multi-row INSERTs stay off the disk
}

// openSQLite opens the database file at path, creating it (0600) and its
// directory (0700) when missing.
func openSQLite(path string, log *slog.Logger, tp trace.TracerProvider) (*sql.DB, error) {
	if path == "" {
		return nil, errkind.New(errkind.InvalidArgument, "open sqlite store: the DSN (database file path) is empty")
	}
	if strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, errkind.New(errkind.InvalidArgument,
			"open sqlite store at %s: the DSN must be a plain file path without '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "open sqlite store at "+path+": create directory")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "open sqlite store at "+path)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, errkind.Wrap(errkind.Unavailable, err, "open sqlite store at "+path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("sqlite store file is accessible to other users; consider chmod 600",
			"path", path, "mode", fi.Mode().Perm().String())
	}
	q := url.Values{}
	for _, p := range sqlitePragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	// url.URL renders "file:///abs/path" for absolute and "file:rel" for
	// relative paths, both of which SQLite's URI parser accepts.
	if !filepath.IsAbs(path) {
		u = url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(), RawQuery: q.Encode()}
	}
	var db *sql.DB
	if tp != nil {
		db, err = otelsql.Open("sqlite", u.String(), sqlTracing(tp, semconv.DBSystemNameSQLite)...)
	} else {
		db, err = sql.Open("sqlite", u.String())
	}
	if err != nil {
		return nil, fmt.Errorf("open sqlite store at %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	return db, nil
}

// openPostgres parses dsn and returns a pgx-backed database handle. The
// connection is made lazily; Open pings it.
func openPostgres(dsn string, tp trace.TracerProvider) (*sql.DB, error) {
	if dsn == "" {
		return nil, errkind.New(errkind.InvalidArgument,
			"open postgres store: the DSN is empty: use a connection string such as postgres://signet@localhost:5432/signet")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, errkind.Wrap(errkind.InvalidArgument, err, "open postgres store: invalid DSN")
	}
	var db *sql.DB
	if tp != nil {
		db = otelsql.OpenDB(stdlib.GetConnector(*cfg), sqlTracing(tp, semconv.DBSystemNamePostgreSQL)...)
	} else {
		db = stdlib.OpenDB(*cfg)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	return db, nil
}

var (
	kvPasswordQuoted = regexp.MustCompile(`(?i)(password\s*=\s*)'(?:[^'\\]|\\.)*'`)
	kvPassword       = regexp.MustCompile(`(?i)(password\s*=\s*)[^\s']\S*`)
)

// redactDSN returns dsn with any password replaced by "xxxxx".
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && (u.Host != "" || u.User != nil) {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	dsn = kvPasswordQuoted.ReplaceAllString(dsn, "${1}xxxxx")
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}
