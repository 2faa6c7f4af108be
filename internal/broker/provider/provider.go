// Package provider is the seam between the credential broker and the
// systems it mints credentials for: a PostgreSQL server, a sealed static
// secret and, later, MySQL, SSH certificate authorities, cloud token
// services and SaaS APIs. A Provider does two things, Issue and Revoke;
// providers that can extend a credential also implement Renewer.
//
// The broker owns the lease lifecycle around a provider: it records a lease
// as pending before Issue, activates it after, and calls Revoke when the
// lease is revoked, expires, or was left pending by a crash. Providers make
// that safe by deriving every name they create from the lease id (so a
// Revoke that carries no revocation data still finds what an interrupted
// Issue made) and by making Revoke idempotent.
//
// Built-in providers are listed in internal/builtin; each passes the
// conformance suite in internal/broker/provider/providertest.
package provider

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Request is what the broker asks a provider to issue: one credential for
// one lease, already allowed by policy.
type Request struct {
	// LeaseID identifies the lease; unique and never reused. Providers
	// derive the names of what they create from it.
	LeaseID string
	// Credential is the configured credential's name ("orders-db").
	Credential string
	// Subject is the calling workload; Node the agent it runs on (zero when
	// unknown).
	Subject spiffeid.ID
	Node    spiffeid.ID
	// NodeAddresses are the addresses Node's agent was seen connecting to
	// the server from, most recent first; empty when none is recorded (or
	// Node is unknown). The ssh provider binds source-address to them.
	NodeAddresses []netip.Addr
	// Context is the request's task context, as the policy saw it.
	Context map[string]any
	// ExpiresAt is when the lease ends: the credential must stop working by
	// then even if Revoke is never called, where the target allows it.
	ExpiresAt time.Time
	// PublicKey is the client's public key for providers that certify a
	// key generated on the client (ssh: authorized_keys format); empty
	// when the request carries none.
	PublicKey string
	// SSH, when set, narrows an ssh certificate below its credential's
	// configuration: what the allowing policy rule's ssh key says. Other
	// providers ignore it (the server refuses rules with an ssh key for
	// credentials that are not ssh ones).
	SSH *SSHOptions
}

// SSHOptions narrow an ssh certificate. A nil list keeps the credential's
// configured one; an empty, non-nil Extensions grants none.
type SSHOptions struct {
	// Principals replace the configured principals; each must be one of them.
	Principals []string
	// Extensions replace the configured extensions; each must be one of them.
	Extensions []string
	// ForceCommand, when not empty, sets the force-command critical option.
	ForceCommand string
}

// Credential is what a provider issued.
type Credential struct {
	// Data is returned to the caller as the credential's "data" object
	// (postgres: username, password, database; static: value).
	Data map[string]string
	// RevokeData is what Revoke needs besides the lease id; the broker
	// keeps it sealed with the lease. Nil when nothing is needed.
	RevokeData []byte
	// ExpiresAt, when set, is an earlier end the provider imposes (a cloud
	// token's own lifetime); the lease is shortened to it.
	ExpiresAt time.Time
	// SecretVersion is the version of a stored secret handed out (static);
	// 0 for minted credentials.
	SecretVersion int64
}

// Ref names an issued credential to revoke or renew.
type Ref struct {
	LeaseID    string
	Credential string
	// RevokeData is Credential.RevokeData as issued; nil when the lease was
	// left pending (the broker crashed between Issue and activation) or
	// the provider returned none.
	RevokeData []byte
}

// Provider issues and revokes credentials of one configured credential.
// Implementations are safe for concurrent use.
type Provider interface {
	// Issue creates the credential for r. On error nothing must be left
	// behind that a Revoke of r.LeaseID would not remove.
	Issue(ctx context.Context, r Request) (Credential, error)
	// Revoke ends the credential at the target at once (a database role
	// dropped, its sessions terminated). It is idempotent: revoking what is
	// gone, or was never created, succeeds. Providers whose credentials
	// cannot be recalled (a static secret already handed out) return nil
	// and say so in Revocable.
	Revoke(ctx context.Context, ref Ref) error
}

// Renewer is implemented by providers that can extend a credential's life
// at the target (a PostgreSQL role's VALID UNTIL).
type Renewer interface {
	Renew(ctx context.Context, ref Ref, expiresAt time.Time) error
}

// Recaller is implemented by providers that report whether Revoke really
// recalls a credential. A provider that does not implement it is assumed
// to recall (the postgres provider drops the role).
type Recaller interface {
	// Recalls reports whether Revoke takes the credential away from a
	// holder who already has it.
	Recalls() bool
}

// ReadOnly is implemented by providers whose Issue creates nothing at the
// target (it reads a stored value, like static). The broker then issues
// before recording the lease and records it active in one write, since no
// crash can leave anything behind.
type ReadOnly interface {
	ReadOnly() bool
}

// IsReadOnly reports whether p's Issue creates nothing.
func IsReadOnly(p Provider) bool {
	r, ok := p.(ReadOnly)
	return ok && r.ReadOnly()
}

// Recalls reports whether p's Revoke takes a credential away.
func Recalls(p Provider) bool {
	if r, ok := p.(Recaller); ok {
		return r.Recalls()
	}
	return true
}

// SecretSource reads the current version of a sealed static secret,
// opened. The broker implements it over the store and the KEK.
type SecretSource interface {
	// CurrentSecret returns the newest version of the secret called name
	// and its number; an error kinded NotFound when there is none.
	CurrentSecret(ctx context.Context, name string) (value []byte, version int64, err error)
}

// Deps is what provider factories may use.
type Deps struct {
	// Credential is the name of the configured credential being built.
	Credential string
	// Secrets opens sealed static secrets.
	Secrets SecretSource
	// SignJWTSVID mints a JWT-SVID for subject (the calling workload, a
	// Request's Subject) with the one audience aud, living at most ttl,
	// signed by the server's CA (with iss when jwt_issuer is set).
	// Providers that trade it at a cloud or SaaS token service (aws_sts,
	// gcp_wif, azure_wif, oauth) need it; nil where there is no CA.
	SignJWTSVID func(ctx context.Context, subject spiffeid.ID, aud string, ttl time.Duration) (string, error)
	// HTTPClient, when set, is the client providers call remote services
	// with (tests pass one trusting their fakes); nil: the provider's own.
	HTTPClient *http.Client
	Log        *slog.Logger
	Now        func() time.Time
}
