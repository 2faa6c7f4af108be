// Package postgres is the broker's provider of dynamic PostgreSQL users:
// each lease gets its own role, created by the configured creation
// statements with a random password and VALID UNTIL the lease's end, and
// dropped (its sessions terminated first) when the lease is revoked or
// expires.
//
// Role names are derived from the lease id by a hash ("signet_" and 24 hex
// digits), so they never collide, never carry caller input and can be found
// again by a Revoke that has nothing but the lease id (a server that
// crashed between creating the role and activating the lease). Every value
// put into a statement is quoted by Signet: the role name with pgx's
// identifier sanitizing, the password and expiry as literals.
//
// The admin role in dsn_file needs CREATEROLE, the privileges it grants,
// and, to terminate sessions, membership in pg_signal_backend (or
// superuser).
package postgres

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Name is the provider's registry name and config value.
const Name = "postgres"

// Config is a postgres credential's configuration (besides the broker's
// own provider, default_ttl and max_ttl keys).
type Config struct {
	// DSNFile holds the connection string of an admin role allowed to
	// CREATE ROLE, such as postgres://signet-admin:…@db:5432/orders. The
	// file is read at start; its content is never logged.
	DSNFile string `yaml:"dsn_file"`
	// CreationStatements create and grant the role, in one transaction.
	// They may use {{name}}, {{password}} and {{expiry}}, unquoted.
	CreationStatements []string `yaml:"creation_statements"`
}

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if c.DSNFile == "" {
		errs = append(errs, errors.New("dsn_file: required (a file holding the admin role's connection string)"))
	}
	if _, err := parseStatements(c.CreationStatements); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Provider creates and drops PostgreSQL roles for leases.
type Provider struct {
	credential string
	pool       *pgxpool.Pool
	database   string
	statements []statement
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Renewer  = (*Provider)(nil)
)

// ReadDSNFile reads the connection string in path. The file must not be
// accessible to others (it holds the admin password).
func ReadDSNFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("dsn_file: %w", err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("dsn_file: %s has mode %04o: it holds a password, make it unreadable by others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("dsn_file: %w", err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("dsn_file: %s is empty", path)
	}
	return dsn, nil
}

// New returns the provider of credential, connecting (lazily) with dsn.
// cfg must be valid. Close releases the connections.
func New(credential, dsn string, cfg Config) (*Provider, error) {
	sts, err := parseStatements(cfg.CreationStatements)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the DSN, password and all.
		return nil, errors.New("dsn_file: not a valid PostgreSQL connection string (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
	}
	pc.MaxConns = 4
	pc.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres credential %s: %w", credential, err)
	}
	return &Provider{credential: credential, pool: pool, database: pc.ConnConfig.Database, statements: sts}, nil
}

// Close closes the provider's connections.
func (p *Provider) Close() error {
	p.pool.Close()
	return nil
}

// RoleName returns the role a lease's credential is: "signet_" and 24 hex
// digits of a hash of the lease id.
func RoleName(leaseID string) string {
	h := sha256.Sum256([]byte("signet broker postgres role v1\x00" + leaseID))
	return "signet_" + hex.EncodeToString(h[:12])
}

// expiryLiteral formats t for VALID UNTIL.
func expiryLiteral(t time.Time) string {
	return quoteLiteral(t.UTC().Format("2006-01-02T15:04:05.000000Z"))
}

// Issue creates the lease's role with a fresh random password, running the
// creation statements in one transaction: on any error nothing is created.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	role := RoleName(r.LeaseID)
	password := rand.Text()
	vals := map[string]string{
		phName:     pgx.Identifier{role}.Sanitize(),
		phPassword: quoteLiteral(password),
		phExpiry:   expiryLiteral(r.ExpiresAt),
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for i, st := range p.statements {
			if _, err := tx.Exec(ctx, st.render(vals)); err != nil {
				return fmt.Errorf("creation_statements[%d]: %w", i, pgError(err))
			}
		}
		return nil
	})
	if err != nil {
		return provider.Credential{}, fmt.Errorf("postgres credential %s: create role %s: %w", p.credential, role, err)
	}
	return provider.Credential{Data: map[string]string{"username": role, "password": password, "database": p.database}}, nil
}

// Revoke stops the role logging in, terminates its sessions, drops what it
// owns and drops it. A role that does not exist is already revoked.
func (p *Provider) Revoke(ctx context.Context, ref provider.Ref) error {
	role := RoleName(ref.LeaseID)
	if err := p.revoke(ctx, role); err != nil {
		return fmt.Errorf("postgres credential %s: drop role %s: %w", p.credential, role, err)
	}
	return nil
}

func (p *Provider) revoke(ctx context.Context, role string) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return pgError(err)
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return pgError(err)
	}
	if !exists {
		return nil
	}
	ident := pgx.Identifier{role}.Sanitize()
	steps := []struct {
		sql  string
		args []any
	}{
		{"ALTER ROLE " + ident + " NOLOGIN", nil},
		// Wait up to 5 s for each session to end.
		{"SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()", []any{role}},
		{"REASSIGN OWNED BY " + ident + " TO CURRENT_USER", nil},
		{"DROP OWNED BY " + ident, nil},
		{"DROP ROLE IF EXISTS " + ident, nil},
	}
	for _, s := range steps {
		if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
			if isUndefinedRole(err) { // another replica dropped it meanwhile
				return nil
			}
			return pgError(err)
		}
	}
	return nil
}

// Renew moves the role's VALID UNTIL to expiresAt.
func (p *Provider) Renew(ctx context.Context, ref provider.Ref, expiresAt time.Time) error {
	role := RoleName(ref.LeaseID)
	_, err := p.pool.Exec(ctx, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" VALID UNTIL "+expiryLiteral(expiresAt))
	if err != nil {
		return fmt.Errorf("postgres credential %s: renew role %s: %w", p.credential, role, pgError(err))
	}
	return nil
}

// Exists reports whether the lease's role exists (tests and reconciliation
// checks).
func (p *Provider) Exists(ctx context.Context, leaseID string) (bool, error) {
	var exists bool
	err := p.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", RoleName(leaseID)).Scan(&exists)
	return exists, pgError(err)
}

func isUndefinedRole(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42704"
}

// pgError reduces a PostgreSQL error to its code and message: never the
// statement (which holds the password) or the connection string.
func pgError(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("postgres: %s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return errors.New("postgres: cannot connect to the server in dsn_file")
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return errors.New("postgres: " + err.Error())
}
