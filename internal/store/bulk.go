package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// insertBatchRows is how many rows one multi-row INSERT carries at most.
// Larger statements amortize per-statement overhead; past a few hundred rows
// the gain flattens (see BenchmarkCreateEntries100k).
var insertBatchRows = 256

// inListSize is how many values one IN (…) list carries at most.
const inListSize = 500

// insertSQL returns a multi-row INSERT of rows rows into table.
func (d *dialect) insertSQL(table string, cols []string, rows int) string {
	var b strings.Builder
	row := "(" + strings.Repeat("?, ", len(cols)-1) + "?)"
	b.Grow(len(table) + 32 + len(cols)*12 + rows*(len(row)+2))
	b.WriteString(d.insert)
	b.WriteString(table)
	b.WriteString(" (")
	b.WriteString(strings.Join(cols, ", "))
	b.WriteString(") VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// copyMinRows is the batch size from which PostgreSQL writes use COPY.
const copyMinRows = 64

// insertRows inserts n rows into table. row appends the values of row i to
// args. On SQLite it uses multi-row INSERTs, preparing each statement shape
// once; on PostgreSQL, COPY for large batches.
func (t *wtx) insertRows(ctx context.Context, table string, cols []string, n int, row func(i int, args []any) []any) error {
	t.rows += n
	if t.d.analyze {
		if t.inserted == nil {
			t.inserted = make(map[string]int)
		}
		t.inserted[table] += n
	}
	if t.d.copy && n >= copyMinRows {
		return t.copyRows(ctx, table, cols, n, row)
	}
	per := min(insertBatchRows, t.d.maxParams/len(cols))
	if t.d.driverInserts && t.span == nil {
		return t.insertRowsDriver(ctx, table, cols, n, per, row)
	}
	return t.insertChunks(table, cols, n, per, row, func(query string) (rowStmt, error) {
		stmt, err := t.tx.PrepareContext(ctx, query)
		if err != nil {
			return rowStmt{}, err
		}
		return rowStmt{
			exec: func(args []any) error {
				_, err := stmt.ExecContext(ctx, args...)
				return err
			},
			close: stmt.Close,
		}, nil
	})
}

// rowStmt is one prepared multi-row INSERT: exec runs it with a chunk's
// arguments.
type rowStmt struct {
	exec  func(args []any) error
	close func() error
}

// insertChunks inserts n rows into table in multi-row INSERTs of per rows
// (the last one shorter), preparing each statement shape once with
// prepare: every chunk but the last reuses one statement.
func (t *wtx) insertChunks(table string, cols []string, n, per int, row func(i int, args []any) []any,
	prepare func(query string) (rowStmt, error)) error {
	var stmt rowStmt
	stmtRows := 0
	closeStmt := func() {
		if stmt.close != nil {
			stmt.close()
			stmt = rowStmt{}
		}
	}
	defer closeStmt()
	args := make([]any, 0, min(per, n)*len(cols))
	for start := 0; start < n; start += per {
		k := min(per, n-start)
		if k != stmtRows {
			closeStmt()
			var err error
			if stmt, err = prepare(t.d.rebind(t.d.insertSQL(table, cols, k))); err != nil {
				return err
			}
			stmtRows = k
		}
		args = args[:0]
		for i := start; i < start+k; i++ {
			args = row(i, args)
		}
		if err := stmt.exec(args); err != nil {
			return err
		}
	}
	return nil
}

// insertRowsDriver is insertRows's multi-row INSERTs run on the driver's
// own connection, with the statement arguments converted into one buffer
// the transaction reuses: database/sql would allocate a []driver.NamedValue
// of every argument per statement, 15 % of all a 100,000-entry batch
// allocated. Used on SQLite when tracing is off (a traced statement goes
// through database/sql to get its span).
func (t *wtx) insertRowsDriver(ctx context.Context, table string, cols []string, n, per int, row func(i int, args []any) []any) error {
	return t.conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("insert into %s: driver connection %T cannot prepare statements", table, dc)
		}
		return t.insertChunks(table, cols, n, per, row, func(query string) (rowStmt, error) {
			ds, err := pc.PrepareContext(ctx, query)
			if err != nil {
				return rowStmt{}, err
			}
			stmt, ok := ds.(driver.StmtExecContext)
			if !ok {
				ds.Close()
				return rowStmt{}, fmt.Errorf("insert into %s: driver statement %T cannot execute with a context", table, ds)
			}
			return rowStmt{
				exec: func(args []any) error {
					nv, err := t.namedValues(args)
					if err != nil {
						return fmt.Errorf("insert into %s: %w", table, err)
					}
					_, err = stmt.ExecContext(ctx, nv)
					return err
				},
				close: ds.Close,
			}, nil
		})
	})
}

// namedValues converts args as database/sql converts a statement's
// arguments for a driver without its own checker, into the transaction's
// reused buffer, valid until the next call.
func (t *wtx) namedValues(args []any) ([]driver.NamedValue, error) {
	nv := t.nv[:0]
	for i, a := range args {
		switch a.(type) {
		case nil, int64, float64, bool, []byte, string, time.Time:
		default:
			v, err := driver.DefaultParameterConverter.ConvertValue(a)
			if err != nil {
				return nil, fmt.Errorf("argument %d: %w", i+1, err)
			}
			a = v
		}
		nv = append(nv, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	t.nv = nv
	return nv, nil
}

// copyRows streams n rows into table with PostgreSQL's COPY protocol,
// inside the transaction.
func (t *wtx) copyRows(ctx context.Context, table string, cols []string, n int, row func(i int, args []any) []any) error {
	return t.conn.Raw(func(dc any) error {
		// A traced handle (otelsql) wraps the driver's connection.
		if w, ok := dc.(interface{ Raw() driver.Conn }); ok {
			dc = w.Raw()
		}
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("copy into %s: driver connection is %T, not pgx", table, dc)
		}
		i := 0
		var vals []any
		_, err := c.Conn().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			vals = row(i, vals[:0])
			i++
			return vals, nil
		}))
		return err
	})
}

// placeholders returns "?, ?, …" with n placeholders.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// chunks calls fn with consecutive sub-slices of vals of at most size
// elements, stopping at the first error.
func chunks[T any](vals []T, size int, fn func(part []T) error) error {
	for start := 0; start < len(vals); start += size {
		if err := fn(vals[start:min(start+size, len(vals))]); err != nil {
			return err
		}
	}
	return nil
}

// anys converts vals to a []any of query arguments.
func anys[T any](vals []T) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}
