// Package store is Signet's persistent state: registration entries, attested
// nodes, join tokens, CA authorities, the hash-chained audit log, and the
// inventory's findings and coverage reports. One SQL implementation serves
// embedded SQLite (the default) and PostgreSQL (shared by server replicas);
// both pass the conformance suite in internal/store/storetest. Schema
// migrations are embedded and applied by Open.
//
// Every state change runs in one transaction that advances a global
// revision and appends its audit records, so revision order is commit order
// and the audit chain stays linear. Node state changes are narrow
// conditional writes (AdmitNode, RenewNodeSVID, PromoteNodeSerial,
// SetNodeBanned), never a rewrite of a whole row from a stale copy, and
// issuance records are group-committed (RecordIssuance).
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/trace"

	"github.com/signet-id/signet/internal/errkind"
)

// Driver names accepted in Config.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Log keys used by the store.
const (
	logKeyDriver = "driver"
	logKeyFirst  = "first_version"
	logKeyLast   = "last_version"
)

// Config selects and configures a backend. The zero value is not usable:
// DSN is always required.
type Config struct {
	// Driver is DriverSQLite (the default when empty) or DriverPostgres.
	Driver string
	// DSN is, for SQLite, the path of the database file (created 0600, its
	// directory 0700, when missing) and, for PostgreSQL, a connection string
	// such as postgres://signet@db.internal:5432/signet?sslmode=verify-full.
	DSN string
	// Logger receives migration and housekeeping messages; nil discards them.
	Logger *slog.Logger
	// Now is the clock used for created/updated stamps and audit times; nil
	// means time.Now.
	Now func() time.Time
	// NodeAliasParent is the parent ID of node aliases (the server's own
	// ID). When set, aliases and other entries never share a SPIFFE ID
	// (identity.go); zero turns that one check off.
	NodeAliasParent spiffeid.ID
	// TracerProvider, when set, gives every write transaction a span named
	// after its operation and every SQL statement a child span (otelsql:
	// the statement text with its placeholders, never the bound values).
	// Nil means no tracing and no instrumentation at all.
	TracerProvider trace.TracerProvider
}

// Store is Signet's persistent state on one SQL database. It is safe for
// concurrent use, also by several processes (server replicas) sharing one
// PostgreSQL database. Create it with Open and release it with Close.
type Store struct {
	db *sql.DB
	// w is the handle every write goes through: on SQLite a second handle
	// of one connection (openSQLiteWriter), on PostgreSQL db itself.
	w   *sql.DB
	d   *dialect
	log *slog.Logger
	now func() time.Time
	// writeSem serializes this process's write transactions on SQLite, where
	// the database admits one writer at a time anyway: waiting here is cheaper
	// and fairer than SQLite's busy-timeout polling. Nil on PostgreSQL, where
	// the revision row lock does the serializing.
	writeSem chan struct{}
	// Group commits (groupcommit.go) of RecordIssuance, MarkTokenUsed
	// and CreateLease calls.
	issuance groupCommit[Issuance, struct{}]
	replay   groupCommit[replayReq, struct{}]
	leases   groupCommit[*leaseReq, Lease]
	// aliasParent is Config.NodeAliasParent as stored, "" when unset.
	aliasParent string
	// tracer starts the write transactions' spans; nil when tracing is off.
	tracer trace.Tracer
	// stats keeps the planner statistics of tables bulk writes grow
	// (analyze.go); nil on SQLite.
	stats *tableStats
	// cacheRows counts the rows inserted since the SQLite write
	// connection's page cache was last sized (writecache.go); written with
	// the write turn held.
	cacheRows int
}

// Open connects to the database cfg names, applies pending schema migrations
// and returns a ready store. Open fails, naming the driver and the (redacted)
// DSN, when the database is unreachable or the DSN malformed.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Driver == "" {
		cfg.Driver = DriverSQLite
	}
	s := &Store{log: cfg.Logger, now: cfg.Now, aliasParent: idToDB(cfg.NodeAliasParent)}
	s.issuance, s.replay, s.leases = s.newIssuanceBatcher(), s.newReplayBatcher(), s.newLeaseBatcher()
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	switch cfg.Driver {
	case DriverSQLite:
		s.d = sqliteDialect
		s.db, err = openSQLite(cfg.DSN, s.log, cfg.TracerProvider)
		if err == nil {
			if s.w, err = openSQLiteWriter(cfg.DSN, cfg.TracerProvider); err != nil {
				s.db.Close()
			}
		}
		s.writeSem = make(chan struct{}, 1)
	case DriverPostgres:
		s.d = postgresDialect
		s.db, err = openPostgres(cfg.DSN, cfg.TracerProvider)
		s.w = s.db
		s.stats = newTableStats()
	default:
		return nil, errkind.New(errkind.InvalidArgument,
			"open store: unknown driver %q: use %q or %q", cfg.Driver, DriverSQLite, DriverPostgres)
	}
	if err != nil {
		return nil, err
	}
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	where := fmt.Sprintf("%s store at %s", cfg.Driver, redactDSN(cfg.DSN))
	if err := s.db.PingContext(ctx); err != nil {
		s.Close()
		return nil, errkind.Wrap(errkind.Unavailable, err, "open "+where+": cannot reach the database")
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	if s.writeSem != nil {
		// A store opened large gets its writer's cache at once.
		s.countInserted(ctx, nil, writeCacheEvery)
	}
	return s, nil
}

// Close closes the database connections. Calls in flight may fail.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.w != s.db {
		err = errors.Join(err, s.w.Close())
	}
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return errkind.Wrap(errkind.Unavailable, err, "ping "+s.d.name+" store")
	}
	return nil
}

// DB returns the underlying database handle. It is meant for tests and
// operator tools only: writes through it bypass the revision counter and the
// audit chain (and show up as tampering in VerifyAudit).
func (s *Store) DB() *sql.DB { return s.db }

// Driver returns the backend's driver name, DriverSQLite or DriverPostgres.
func (s *Store) Driver() string { return s.d.name }

// Revision returns the current global state revision. Every committed
// mutation of entries, nodes, join tokens or authorities advances it by one.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM revision WHERE id = 1").Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

type actorKey struct{}

// DefaultActor is the actor recorded in audit records when the context
// carries none.
const DefaultActor = "system"

// WithActor returns a context whose mutations are recorded in the audit log
// as done by actor, such as "admin:uid:0" or "agent:spiffe://example.org/node/a".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return DefaultActor
}

// errRollback, returned by an update function, rolls the transaction back
// and makes update return nil: there was nothing to write.
var errRollback = errors.New("nothing to write")

// wtx is one write transaction: the revision it stamps rows with, its
// timestamp and the audit records it appends when it commits.
type wtx struct {
	tx    *sql.Tx
	conn  *sql.Conn // the connection tx runs on
	d     *dialect
	rev   int64     // the new revision; 0 when the transaction does not bump it
	now   time.Time // normalized (UTC, nanosecond precision)
	actor string
	audit []AuditRecord
	// delSel is the prepared selector-index delete; closed with the
	// transaction.
	delSel *sql.Stmt
	// inserted counts the rows insertRows wrote, per table, where the
	// store keeps planner statistics; rows counts them all.
	inserted map[string]int
	rows     int
	// nv is insertRowsDriver's argument buffer, reused by each statement.
	nv []driver.NamedValue
	// span is the transaction's span, nil when tracing is off: statements
	// run through exec, query and queryRow are its children even when the
	// caller's closure passes its own context.
	span trace.Span
}

// traced returns ctx carrying the transaction's span, or ctx itself when
// tracing is off.
func (t *wtx) traced(ctx context.Context) context.Context {
	if t.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, t.span)
}

func (t *wtx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.traced(ctx), t.d.rebind(q), args...)
}

func (t *wtx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.traced(ctx), t.d.rebind(q), args...)
}

// queryIn runs q followed by " IN (…)" over keys in chunks of inListSize
// (bound after leading), calling row for each result row.
func (t *wtx) queryIn(ctx context.Context, q string, leading []any, keys []string, row func(*sql.Rows) error) error {
	return chunks(keys, inListSize, func(part []string) error {
		rows, err := t.query(ctx, q+" IN ("+placeholders(len(part))+")", append(slices.Clone(leading), anys(part)...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := row(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

func (t *wtx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.traced(ctx), t.d.rebind(q), args...)
}

// record queues an audit record stamped with the transaction's actor and time.
func (t *wtx) record(action, object string, detail map[string]string) {
	t.audit = append(t.audit, AuditRecord{Time: t.now, Actor: t.actor, Action: action, Object: object, Detail: detail})
}

// update runs fn in a write transaction. The transaction first locks the
// revision row (bumping it when bump is set), which serializes all writers of
// the database, in this process and in others: revision order is commit order
// and the audit chain stays linear. The audit records fn queues are chained
// and written before the commit. Errors without a kind are wrapped with op.
func (s *Store) update(ctx context.Context, op string, bump bool, fn func(t *wtx) error) (err error) {
	if s.tracer != nil {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, spanUpdate, trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(attrOperation.String(op)))
		defer func() { endSpan(span, err) }()
	}
	defer func() {
		if err != nil && errkind.Of(err) == errkind.Internal {
			err = fmt.Errorf("%s: %w", op, err)
		}
	}()
	t, end, err := s.beginWrite(ctx, op, bump)
	if err != nil {
		return err
	}
	if err := fn(t); err != nil {
		_ = end(ctx, false)
		if errors.Is(err, errRollback) {
			return nil
		}
		return err
	}
	return end(ctx, true)
}

// beginWrite takes this process's write turn, opens a write transaction on
// a dedicated connection and locks the revision row (bumping it when bump is
// set), as update does for its fn. end finishes the transaction, exactly
// once: with commit set it chains and writes the queued audit records and
// commits, otherwise (or when that fails) it rolls back; either way it
// releases the connection and the write turn.
func (s *Store) beginWrite(ctx context.Context, op string, bump bool) (t *wtx, end func(ctx context.Context, commit bool) error, err error) {
	release, err := s.acquireWrite(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	// A dedicated connection lets bulk writes reach the driver (COPY on
	// PostgreSQL) inside the transaction.
	conn, err := s.w.Conn(ctx)
	if err != nil {
		release()
		return nil, nil, err
	}
	tx, err := conn.BeginTx(ctx, s.d.write)
	if err != nil {
		conn.Close()
		release()
		return nil, nil, err
	}
	end = func(ctx context.Context, commit bool) (err error) {
		defer release()
		defer conn.Close()
		if !commit {
			return tx.Rollback()
		}
		if err := s.appendAuditTx(ctx, t); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			_ = tx.Rollback()
			return err
		}
		s.grown(ctx, t.inserted)
		if s.writeSem != nil && t.rows > 0 {
			s.countInserted(ctx, conn, t.rows)
		}
		return nil
	}
	t = &wtx{tx: tx, conn: conn, d: s.d, actor: actorFrom(ctx), span: spanOf(ctx, s.tracer != nil)}
	if bump {
		err = t.queryRow(ctx, "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value").Scan(&t.rev)
	} else {
		var cur int64
		err = t.queryRow(ctx, "SELECT value FROM revision WHERE id = 1"+s.d.forUpdate).Scan(&cur)
	}
	if err != nil {
		_ = end(ctx, false)
		return nil, nil, fmt.Errorf("lock revision: %w", err)
	}
	t.now = normTime(s.now())
	return t, end, nil
}

// acquireWrite waits for this process's turn to write (SQLite only) and
// returns the function that ends it.
func (s *Store) acquireWrite(ctx context.Context) (release func(), err error) {
	if s.writeSem == nil {
		return func() {}, nil
	}
	select {
	case s.writeSem <- struct{}{}:
		return func() { <-s.writeSem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readTx runs fn in a read-only transaction that sees one consistent
// snapshot of the database.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &s.d.snapshot)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
