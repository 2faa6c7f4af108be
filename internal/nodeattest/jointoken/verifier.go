package jointoken

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
)

// TokenStore is the part of the store the server half needs. Hashes are
// SHA-256 (see Hash); unknown, used and expired tokens are all NotFound.
type TokenStore interface {
	// LookupJoinToken checks a token without consuming it, taking no
	// write lock.
	LookupJoinToken(ctx context.Context, hash []byte, now time.Time) (model.JoinToken, error)
	// ConsumeJoinToken deletes the token and returns it, atomically.
	ConsumeJoinToken(ctx context.Context, hash []byte, now time.Time) (model.JoinToken, error)
}

// Config is the server half's configuration, the value of
// node_attestors.join_token. The method is on unless Enabled is false.
type Config struct {
	Enabled *bool `yaml:"enabled"`
}

// On reports whether the method is enabled (the default).
func (c Config) On() bool { return c.Enabled == nil || *c.Enabled }

// Verifier is the server half of join_token attestation. Create it with
// NewVerifier.
type Verifier struct {
	td    spiffeid.TrustDomain
	store TokenStore
	now   func() time.Time
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// NewVerifier returns the verifier of tokens kept in st for trust domain
// td; now is the clock (nil: time.Now).
func NewVerifier(td spiffeid.TrustDomain, st TokenStore, now func() time.Time) (*Verifier, error) {
	if td.IsZero() || st == nil {
		return nil, fmt.Errorf("join_token verifier: a trust domain and a token store are required")
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{td: td, store: st, now: now}, nil
}

// Name returns "join_token".
func (v *Verifier) Name() string { return Name }

// denied is the refusal of every bad token; the log says no more either,
// so that nothing about a token (even its hash) is revealed to a caller.
var denied = errkind.New(errkind.PermissionDenied, "join token invalid, used or expired")

// Attest redeems the token in payload. Malformed and unknown tokens are
// refused by a read-only lookup, so garbage never takes the store's write
// lock; a known token is then consumed atomically, so of two agents
// presenting it at once exactly one is admitted. The agent ID is the one
// the token names, or one derived from the token's hash. Join-token nodes
// carry no selectors and cannot re-attest on their own.
func (v *Verifier) Attest(ctx context.Context, payload []byte, _ nodeattest.Challenger) (nodeattest.Result, error) {
	if Check(string(payload)) != nil {
		return nodeattest.Result{}, denied
	}
	hash := Hash(string(payload))
	now := v.now()
	if _, err := v.store.LookupJoinToken(ctx, hash, now); err != nil {
		if errkind.Is(err, errkind.NotFound) {
			return nodeattest.Result{}, denied
		}
		return nodeattest.Result{}, err
	}
	tok, err := v.store.ConsumeJoinToken(ctx, hash, now)
	if err != nil {
		if errkind.Is(err, errkind.NotFound) {
			return nodeattest.Result{}, denied
		}
		return nodeattest.Result{}, err
	}
	id := tok.SPIFFEID
	if id.IsZero() {
		if id, err = AgentID(v.td, hash); err != nil {
			return nodeattest.Result{}, err
		}
	}
	if !id.MemberOf(v.td) {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "join token names %s, outside trust domain %s", id, v.td.Name())
	}
	return nodeattest.Result{AgentID: id}, nil
}
