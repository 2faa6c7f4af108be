package store

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"

	"github.com/signet-id/signet/internal/errkind"
)

// SchemaState is how far a database's schema is migrated: Current is the
// highest migration applied (0: none, an empty database), Latest the
// highest this build knows.
type SchemaState struct {
	Current, Latest int64
}

// Pending reports whether Open would apply migrations.
func (s SchemaState) Pending() bool { return s.Current < s.Latest }

// InspectSchema connects to the database cfg names, checks it answers and
// reads its schema version without changing anything: no migration, no
// version table created (signet doctor runs it beside a live server). A
// SQLite file that does not exist is created empty by the driver, so
// callers check for it first.
func InspectSchema(ctx context.Context, cfg Config) (SchemaState, error) {
	if cfg.Driver == "" {
		cfg.Driver = DriverSQLite
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var (
		db  *sql.DB
		d   *dialect
		err error
	)
	switch cfg.Driver {
	case DriverSQLite:
		d = sqliteDialect
		db, err = openSQLite(cfg.DSN, cfg.Logger, nil)
	case DriverPostgres:
		d = postgresDialect
		db, err = openPostgres(cfg.DSN, nil)
	default:
		return SchemaState{}, errkind.New(errkind.InvalidArgument,
			"inspect store: unknown driver %q: use %q or %q", cfg.Driver, DriverSQLite, DriverPostgres)
	}
	if err != nil {
		return SchemaState{}, err
	}
	defer db.Close()
	where := fmt.Sprintf("%s store at %s", cfg.Driver, redactDSN(cfg.DSN))
	if err := db.PingContext(ctx); err != nil {
		return SchemaState{}, errkind.Wrap(errkind.Unavailable, err, "inspect "+where+": cannot reach the database")
	}
	latest, err := latestMigration(d.name)
	if err != nil {
		return SchemaState{}, err
	}
	st := SchemaState{Latest: latest}
	var exists bool
	q := "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'"
	if d.name == DriverPostgres {
		q = "SELECT to_regclass('goose_db_version') IS NOT NULL"
	}
	if err := db.QueryRowContext(ctx, q).Scan(&exists); err != nil {
		return SchemaState{}, fmt.Errorf("inspect %s: %w", where, err)
	}
	if !exists {
		return st, nil
	}
	var cur sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(version_id) FROM goose_db_version WHERE is_applied").Scan(&cur); err != nil {
		return SchemaState{}, fmt.Errorf("inspect %s: read schema version: %w", where, err)
	}
	st.Current = cur.Int64
	return st, nil
}

// latestMigration is the highest migration version embedded for driver.
func latestMigration(driver string) (int64, error) {
	fsys, err := fs.Sub(migrations, "migrations/"+driver)
	if err != nil {
		return 0, fmt.Errorf("inspect store: %w", err)
	}
	d := sqliteDialect
	if driver == DriverPostgres {
		d = postgresDialect
	}
	// The provider only lists the files here; it never touches db.
	p, err := goose.NewProvider(d.goose, &sql.DB{}, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("inspect store: %w", err)
	}
	src := p.ListSources()
	if len(src) == 0 {
		return 0, nil
	}
	return src[len(src)-1].Version, nil
}
