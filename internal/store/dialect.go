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
	// driverInserts is set when the multi-row INSERTs of bulk writes run on
	// the driver's connection (insertRowsDriver).
	driverInserts bool
	// analyze is set when the store keeps the planner statistics of the
	// tables bulk writes grow (analyze.go).
	analyze bool
	// jsonListHas is a condition with one placeholder: the JSON text array
	// column %s holds that string.
	jsonListHas string
}

var sqliteDialect = &dialect{
	name:          DriverSQLite,
	goose:         goose.DialectSQLite3,
	snapshot:      sql.TxOptions{ReadOnly: true}, // WAL read transactions are snapshots
	maxParams:     32766,
	insert:        "INSERT OR ROLLBACK INTO ",
	driverInserts: true,
	jsonListHas:   "? IN (SELECT value FROM json_each(%s))",
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
	analyze:   true,
	// jsonb_array_elements_text rather than jsonb's ? operator, which
	// rebind would take for a placeholder.
	jsonListHas: "? IN (SELECT jsonb_array_elements_text(%s::jsonb))",
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
	"temp_store(MEMORY)", // statement journals of multi-row INSERTs stay off the disk
}

// SQLite page cache per connection, in KiB: 2 MiB on each of up to eight
// readers and, to begin with, on the one write connection. A write by
// another connection empties a reader's cache anyway. The writer keeps its
// cache from one write to the next (no one else writes), and a larger one
// holds more of the leaves bulk inserts touch (one per parent and SPIFFE
// ID prefix of the parent, SPIFFE ID and selector indexes: 64 MiB made
// 100,000-entry slices 37 % cheaper in BenchmarkCreateEntries1M), but it
// is resident memory: 64 MiB took the server's peak RSS in
// BenchmarkEntryCreate100k from 127–132 MB to 259–263 MB and 16 MiB to
// 163–167 MB, past the 150 MB the server is held to for a 100,000-entry
// batch. So the writer's cache grows only with a large database
// (writecache.go).
const (
	sqliteReadCacheKiB  = 2 << 10
	sqliteWriteCacheKiB = 2 << 10
)

// openSQLite opens the database file at path, creating it (0600) and its
// directory (0700) when missing, and returns a pool of up to eight
// connections.
func openSQLite(path string, log *slog.Logger, tp trace.TracerProvider) (*sql.DB, error) {
	if err := prepareSQLiteFile(path, log); err != nil {
		return nil, err
	}
	return sqlitePool(path, tp, sqliteReadCacheKiB, 8)
}

// openSQLiteWriter opens the store's one write connection to the database
// file at path, which openSQLite has prepared: SQLite admits one writer at a
// time, and a connection that alone writes keeps a valid page cache.
//
// Only the writer's commits checkpoint the WAL, so its wal_autocheckpoint
// is the one that counts: 10,000 pages (about 40 MB of WAL) instead of
// SQLite's 1,000. A checkpoint copies every page the WAL holds into the
// database file, reading each back first; the pages bulk creates and
// issuance records dirty are mostly the same from one commit to the next,
// so checkpointing a tenth as often copies each far fewer times
// (BenchmarkCreateEntries1M: −55 % reads, −27 % bytes written; an earlier
// measurement: RecordIssuance500 −22 % CPU).
func openSQLiteWriter(path string, tp trace.TracerProvider) (*sql.DB, error) {
	return sqlitePool(path, tp, sqliteWriteCacheKiB, 1, "wal_autocheckpoint(10000)")
}

// prepareSQLiteFile checks path and creates the file and its directory when
// missing.
func prepareSQLiteFile(path string, log *slog.Logger) error {
	if path == "" {
		return errkind.New(errkind.InvalidArgument, "open sqlite store: the DSN (database file path) is empty")
	}
	if strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return errkind.New(errkind.InvalidArgument,
			"open sqlite store at %s: the DSN must be a plain file path without '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "open sqlite store at "+path+": create directory")
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "open sqlite store at "+path)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "open sqlite store at "+path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("sqlite store file is accessible to other users; consider chmod 600",
			"path", path, "mode", fi.Mode().Perm().String())
	}
	return nil
}

// sqlitePool returns a handle of up to conns connections to the database
// file at path, each with a page cache of cacheKiB and sqlitePragmas, then
// pragmas, applied.
func sqlitePool(path string, tp trace.TracerProvider, cacheKiB, conns int, pragmas ...string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range sqlitePragmas {
		q.Add("_pragma", p)
	}
	q.Add("_pragma", "cache_size(-"+strconv.Itoa(cacheKiB)+")")
	for _, p := range pragmas {
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
	var err error
	if tp != nil {
		db, err = otelsql.Open("sqlite", u.String(), sqlTracing(tp, semconv.DBSystemNameSQLite)...)
	} else {
		db, err = sql.Open("sqlite", u.String())
	}
	if err != nil {
		return nil, fmt.Errorf("open sqlite store at %s: %w", path, err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
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
