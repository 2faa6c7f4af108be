package store

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations holds the versioned schema, one directory per dialect. Files
// are named NNNNN_what.sql and never edited once released: a change is a new
// file.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// migrate applies pending migrations. On PostgreSQL, goose's session
// locker holds an advisory lock meanwhile, keyed by the current schema, so
// replicas starting together on one schema take turns while different
// schemas (test runs, tenants) do not wait for each other.
func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations/"+s.d.name)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.d.name == DriverPostgres {
		var schema string
		if err := s.db.QueryRowContext(ctx, "SELECT coalesce(current_schema(), '')").Scan(&schema); err != nil {
			return fmt.Errorf("migrate: read current schema: %w", err)
		}
		h := fnv.New64a()
		_, _ = h.Write([]byte("signet.migrate/" + schema))
		// Probe every second for up to five minutes.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(s.d.goose, s.db, fsys, opts...)
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
