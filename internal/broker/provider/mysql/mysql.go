// Package mysql is the broker's provider of dynamic MySQL and MariaDB
// users: each lease gets its own user, created with a random password and
// the configured grants, and locked, its sessions killed and dropped when
// the lease is revoked or expires.
//
// User names are derived from the lease id by a hash ("signet_" and 24 hex
// digits, 31 characters: within MySQL 8's limit of 32), so they never
// collide, never carry caller input and can be found again by a Revoke that
// has nothing but the lease id. Grants are parsed at load into a privilege
// list on a db.table pattern and rendered by Signet with every name
// backquoted; anything else is refused. The statements used (CREATE USER …
// IDENTIFIED BY, GRANT … ON … TO, ALTER USER … ACCOUNT LOCK, KILL, DROP USER
// IF EXISTS) are the same on MySQL 8 and MariaDB 10.11.
//
// MySQL has no per-account expiry time (PASSWORD EXPIRE counts days), so a
// user works until the broker's sweeper revokes its lease at expiry.
//
// The admin account in dsn_file needs CREATE USER, the privileges it
// grants WITH GRANT OPTION, and CONNECTION_ADMIN (MySQL 8) or
// CONNECTION ADMIN/SUPER (MariaDB) to kill other users' sessions.
package mysql

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Name is the provider's registry name and config value.
const Name = "mysql"

// Config is a mysql credential's configuration (besides the broker's own
// provider, default_ttl and max_ttl keys).
type Config struct {
	// DSNFile holds the go-sql-driver/mysql DSN of an admin account,
	// user:password@tcp(host:3306)/. The file is read at start; its
	// content is never logged.
	DSNFile string `yaml:"dsn_file"`
	// Grants are given to each lease's user: privilege lists on db.table
	// patterns, such as "SELECT ON reports.*".
	Grants []string `yaml:"grants"`
}

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if c.DSNFile == "" {
		errs = append(errs, errors.New("dsn_file: required (a file holding the admin account's DSN, user:password@tcp(host:3306)/)"))
	}
	if _, err := parseGrants(c.Grants); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Provider creates and drops MySQL users for leases.
type Provider struct {
	credential string
	db         *sql.DB
	addr       string
	grants     []grant
}

var _ provider.Provider = (*Provider)(nil)

// ReadDSNFile reads the DSN in path. The file must not be accessible to
// others (it holds the admin password).
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
	grants, err := parseGrants(cfg.Grants)
	if err != nil {
		return nil, err
	}
	dc, err := driver.ParseDSN(dsn)
	if err != nil {
		// The parser's message may quote the DSN, password and all.
		return nil, errors.New("dsn_file: not a valid MySQL DSN (USER:PASSWORD@tcp(HOST:3306)/)")
	}
	dc.Timeout = 10 * time.Second
	dc.ReadTimeout, dc.WriteTimeout = 30*time.Second, 30*time.Second
	conn, err := driver.NewConnector(dc)
	if err != nil {
		return nil, errors.New("dsn_file: not a valid MySQL DSN (USER:PASSWORD@tcp(HOST:3306)/)")
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Provider{credential: credential, db: db, addr: dc.Addr, grants: grants}, nil
}

// Close closes the provider's connections.
func (p *Provider) Close() error { return p.db.Close() }

// UserName returns the user a lease's credential is: "signet_" and 24 hex
// digits of a hash of the lease id.
func UserName(leaseID string) string {
	h := sha256.Sum256([]byte("signet broker mysql user v1\x00" + leaseID))
	return "signet_" + hex.EncodeToString(h[:12])
}

// account is the quoted 'user'@'%' of a lease. The name is hex, so the
// quoting never needs escaping; it is applied all the same.
func account(user string) string {
	return quoteString(user) + "@'%'"
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// Issue creates the lease's user with a fresh random password and grants.
// MySQL DDL does not roll back, so a failed grant drops the user again
// before returning; if even that fails, Revoke of the lease id drops it.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	user := UserName(r.LeaseID)
	password := rand.Text()
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return provider.Credential{}, p.errorf("create user %s: %w", user, p.dbError(err))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE USER "+account(user)+" IDENTIFIED BY "+quoteString(password)); err != nil {
		return provider.Credential{}, p.errorf("create user %s: %s", user, strings.ReplaceAll(p.dbError(err).Error(), password, "[password]"))
	}
	for i, g := range p.grants {
		if _, err := conn.ExecContext(ctx, g.statement(account(user))); err != nil {
			cerr := p.dbError(err)
			// Clean up on a fresh context: ctx may be what failed.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, _ = conn.ExecContext(dctx, "DROP USER IF EXISTS "+account(user))
			cancel()
			return provider.Credential{}, p.errorf("create user %s: grants[%d]: %w", user, i, cerr)
		}
	}
	return provider.Credential{Data: map[string]string{"username": user, "password": password}}, nil
}

// Revoke locks the user, kills its sessions and drops it. A user that does
// not exist is already revoked.
func (p *Provider) Revoke(ctx context.Context, ref provider.Ref) error {
	user := UserName(ref.LeaseID)
	if err := p.revoke(ctx, user); err != nil {
		return p.errorf("drop user %s: %w", user, err)
	}
	return nil
}

func (p *Provider) revoke(ctx context.Context, user string) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return p.dbError(err)
	}
	defer conn.Close()
	exists, err := userExists(ctx, conn, user)
	if err != nil || !exists {
		return err
	}
	// Locked first, so no new session starts between the kills and the drop.
	if _, err := conn.ExecContext(ctx, "ALTER USER IF EXISTS "+account(user)+" ACCOUNT LOCK"); err != nil {
		return p.dbError(err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", user)
	if err != nil {
		return p.dbError(err)
	}
	var ids []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return p.dbError(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return p.dbError(err)
	}
	for _, id := range ids {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil && !isUnknownThread(err) {
			return p.dbError(err)
		}
	}
	if _, err := conn.ExecContext(ctx, "DROP USER IF EXISTS "+account(user)); err != nil {
		return p.dbError(err)
	}
	return nil
}

// Exists reports whether the lease's user exists (tests and
// reconciliation checks).
func (p *Provider) Exists(ctx context.Context, leaseID string) (bool, error) {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return false, p.dbError(err)
	}
	defer conn.Close()
	ok, err := userExists(ctx, conn, UserName(leaseID))
	return ok, err
}

func userExists(ctx context.Context, conn *sql.Conn, user string) (bool, error) {
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ?", user).Scan(&n); err != nil {
		return false, sqlError(err)
	}
	return n > 0, nil
}

func (p *Provider) errorf(format string, args ...any) error {
	return fmt.Errorf("mysql credential %s: "+format, append([]any{p.credential}, args...)...)
}

func (p *Provider) dbError(err error) error {
	if e := sqlError(err); e != nil && isConnError(err) {
		return fmt.Errorf("mysql: cannot reach the server in dsn_file (%s): %w", p.addr, e)
	}
	return sqlError(err)
}

// isUnknownThread: the session ended between the listing and the KILL.
func isUnknownThread(err error) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && me.Number == 1094
}

func isConnError(err error) bool {
	var me *driver.MySQLError
	return !errors.As(err, &me) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// sqlError reduces a server error to its number and message: never the
// statement (which holds the password) or the DSN.
func sqlError(err error) error {
	if err == nil {
		return nil
	}
	var me *driver.MySQLError
	if errors.As(err, &me) {
		if me.Number == 1064 { // a syntax error quotes the statement
			return fmt.Errorf("mysql: the server refused the statement's syntax (error %d)", me.Number)
		}
		return fmt.Errorf("mysql: %s (error %d)", me.Message, me.Number)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return errors.New(err.Error())
}
