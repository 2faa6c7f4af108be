package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

// migrations holds the versioned schema, one directory per dialect. Files
// are named NNNNN_what.sql and never edited once released: a change is a new
// file.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// migrate applies pending migrations. On PostgreSQL it holds an advisory lock
// scoped to the current schema meanwhile, so replicas starting together do
// not race each other.
func (s *Store) migrate(ctx context.Context) (err error) {
	fsys, err := fs.Sub(migrations, "migrations/"+s.d.name)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if s.d.name == DriverPostgres {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		defer conn.Close()
		const lock = "SELECT pg_advisory_lock(7146, hashtext(coalesce(current_schema(), '')))"
		const unlock = "SELECT pg_advisory_unlock(7146, hashtext(coalesce(current_schema(), '')))"
		if _, err := conn.ExecContext(ctx, lock); err != nil {
			return fmt.Errorf("migrate: take migration lock: %w", err)
		}
		defer func() {
			// The lock also ends with the session should this fail.
			if _, uerr := conn.ExecContext(context.WithoutCancel(ctx), unlock); uerr != nil && err == nil {
				err = fmt.Errorf("migrate: release migration lock: %w", uerr)
			}
		}()
	}
	p, err := goose.NewProvider(s.d.goose, s.db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if len(res) > 0 {
		s.log.Info("store schema migrations applied", logKeyDriver, s.d.name,
			logKeyFirst, res[0].Source.Version, logKeyLast, res[len(res)-1].Source.Version)
	}
	return nil
}
