// Package ca is the Signet server's certificate authority: it owns the
// trust domain's signing keys, rotates them, and mints X509-SVIDs and
// JWT-SVIDs.
//
// With a per-replica key manager (disk), every server replica owns its own
// X.509 CA and JWT signing key; with a shared one (SharedKeyManager: sealed
// keys in the store) the trust domain has one set, owned by SharedServerID,
// which every replica signs with and exactly one replica at a time rotates,
// under the store's rotation claim (RotationClaimer). Each authority goes
// prepared → active → old: a prepared authority is published in the trust
// bundle (through the shared store) long before it starts signing, so every
// relying party already trusts it when the first SVID it signed arrives; an
// old authority stays published until it expires, so the SVIDs it signed keep
// verifying. Operators can taint an old authority (published, flagged as
// suspect) and revoke it (removed from the bundle at once).
//
// Private keys live in a KeyManager (the disk one keeps PKCS#8 PEM files,
// mode 0600); the store holds only the public halves. The package depends
// on the store only through AuthorityStore, over the types of
// internal/model.
// BundleFromAuthorities turns the stored authorities of all replicas into the
// SPIFFE trust bundle that agents and clients trust.
//
// With an UpstreamAuthority, each X.509 CA certificate is signed by an
// existing enterprise CA instead: SVID chains then carry Signet's CA and the
// upstream intermediates, and the bundle holds the upstream roots.
//
// Minting (SignX509SVID, SignJWTSVID) is safe for concurrent use and takes
// no lock: it reads the active authorities through atomic pointers that
// rotation swaps.
package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultCATTL       = 24 * time.Hour
	DefaultJWTKeyTTL   = 24 * time.Hour
	DefaultRefreshHint = 5 * time.Minute
)

// clockSkew is how far NotBefore is backdated on every certificate, so that
// peers whose clocks run slightly behind accept it at once.
const clockSkew = 10 * time.Second

// ClockSkew is how far NotBefore is backdated on every certificate: an
// X509-SVID signed at T has NotBefore T-ClockSkew (to the second).
const ClockSkew = clockSkew

// Log keys.
const (
	logKind     = "kind"
	logID       = "authority_id"
	logState    = "state"
	logServerID = "server_id"
	logNotAfter = "not_after"
	logError    = "error"
)

// AuthorityStore is the part of the store the CA needs. The server's SQL
// store implements it; it is shared by all server replicas.
type AuthorityStore interface {
	// ListAuthorities returns every authority of every server.
	ListAuthorities(ctx context.Context) ([]model.Authority, error)
	// PutAuthority creates or replaces the authority with a's kind and id.
	PutAuthority(ctx context.Context, a model.Authority) error
	// DeleteAuthority removes an authority.
	DeleteAuthority(ctx context.Context, kind model.AuthorityKind, id string) error
}

// RotationClaimer is the optional capability of an AuthorityStore shared by
// several replicas: a claim (a conditional update in the store) that lets
// exactly one replica change the trust domain's authorities at a time. The
// Manager requires it with a SharedKeyManager.
type RotationClaimer interface {
	// ClaimCARotation makes holder the claimant until until, unless another
	// holder's claim runs at now; it reports whether holder holds it.
	ClaimCARotation(ctx context.Context, holder string, now, until time.Time) (bool, error)
	// ReleaseCARotation ends holder's claim, if it holds it.
	ReleaseCARotation(ctx context.Context, holder string) error
}

// Config configures a Manager. Zero values of the optional fields select
// the documented defaults.
type Config struct {
	// TrustDomain is the trust domain every SVID is minted in. Required.
	TrustDomain spiffeid.TrustDomain
	// ServerID names this server replica. With a per-replica key manager it
	// owns the authorities that carry it; with a SharedKeyManager the
	// authorities carry SharedServerID and ServerID names the replica in the
	// rotation claim. Required.
	ServerID string
	// KeyType of new authority keys: "ec-p256" (default), "ec-p384",
	// "rsa-2048" or "rsa-4096". Existing keys keep their type.
	KeyType string
	// CATTL is the lifetime of each X.509 CA certificate (default 24h).
	CATTL time.Duration
	// JWTKeyTTL is the lifetime of each JWT signing key (default 24h).
	JWTKeyTTL time.Duration
	// MaxSVIDTTL is the longest TTL an SVID may get. When set, requested
	// TTLs are capped to it and an authority is replaced at the latest
	// MaxSVIDTTL before it expires, so SVIDs are never cut short by their
	// authority's end. It must not exceed half of CATTL or JWTKeyTTL. Zero
	// means no cap (the replacement happens at 5/6 of the lifetime).
	MaxSVIDTTL time.Duration
	// Store holds the authorities. Required.
	Store AuthorityStore
	// KeyManager holds this server's private keys (a SharedKeyManager: the
	// trust domain's, and Store must be a RotationClaimer). Required.
	KeyManager KeyManager
	// UpstreamAuthority, when set, signs every new X.509 CA certificate:
	// Signet becomes an intermediate, and the bundle holds the upstream
	// roots. Authorities created before keep working until they retire.
	UpstreamAuthority UpstreamAuthority
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives transition logs (default: discarded).
	Logger *slog.Logger
	// Subject of CA and leaf certificates (default O=Signet).
	Subject pkix.Name
	// JWTIssuer, when set, is the iss claim of every JWT-SVID: the URL
	// whose /.well-known/openid-configuration publishes the JWT keys
	// (jwt_issuer). Empty: JWT-SVIDs carry no iss.
	JWTIssuer string
}

// Manager owns this server's authorities: it creates, rotates and loads
// them, and mints SVIDs with the active ones. Build it with New, call Init,
// then run Run in the background. All methods are safe for concurrent use.
type Manager struct {
	td         spiffeid.TrustDomain
	serverID   string          // owner of this Manager's authorities: the replica, or SharedServerID
	replica    string          // this replica's id (Config.ServerID)
	claimer    RotationClaimer // non-nil with a SharedKeyManager
	keyType    string
	caTTL      time.Duration
	jwtTTL     time.Duration
	maxSVIDTTL time.Duration
	subject    pkix.Name
	// leafSubject is subject as X509-SVIDs carry it, pre-encoded.
	leafSubject leafSubject
	store       AuthorityStore
	now         func() time.Time
	log         *slog.Logger
	keys        KeyManager
	upstream    UpstreamAuthority // nil: self-signed CAs
	jwtIssuer   string            // iss of JWT-SVIDs; empty: none

	// x509 and jwt are the active signers: read lock-free by minting,
	// replaced by rotation under mu.
	x509 atomic.Pointer[x509Signer]
	jwt  atomic.Pointer[jwtSigner]

	mu     sync.Mutex            // serializes Init, Rotate and the manual transitions
	loaded map[string]privateKey // keys of own prepared/active authorities, by kind/id
}

// x509Signer is an active X.509 CA: its parsed certificate and key, and
// the upstream intermediates above it (none when self-signed).
type x509Signer struct {
	id             string
	cert           *x509.Certificate
	upstream       []*x509.Certificate
	signedUpstream bool // cert is signed by an upstream authority, not by itself
	key            privateKey
	leaf           leafSigning // the signature algorithm and AKI of its leaves
}

// jwtSigner is an active JWT key with a ready go-jose signer.
type jwtSigner struct {
	id       string
	notAfter time.Time
	signer   jose.Signer
	// txn signs transaction tokens (typ txntoken+jwt) with the same key.
	txn jose.Signer
}

// New validates cfg and applies defaults. It touches neither the store nor
// the key manager: call Init next.
func New(cfg Config) (*Manager, error) {
	if cfg.KeyType == "" {
		cfg.KeyType = KeyTypeECP256
	}
	if cfg.CATTL == 0 {
		cfg.CATTL = DefaultCATTL
	}
	if cfg.JWTKeyTTL == 0 {
		cfg.JWTKeyTTL = DefaultJWTKeyTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Subject.String() == "" {
		cfg.Subject = pkix.Name{Organization: []string{"Signet"}}
	}

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.TrustDomain.IsZero() {
		bad("trust_domain is required, for example example.org")
	}
	if cfg.ServerID == "" {
		bad("server_id is required")
	}
	if !validKeyType(cfg.KeyType) {
		bad("key_type %q is unknown: use one of ec-p256, ec-p384, rsa-2048, rsa-4096", cfg.KeyType)
	}
	if cfg.CATTL < time.Minute {
		bad("ca_ttl %s is too short: use at least 1m, for example 24h", cfg.CATTL)
	}
	if cfg.JWTKeyTTL < time.Minute {
		bad("jwt_key_ttl %s is too short: use at least 1m, for example 24h", cfg.JWTKeyTTL)
	}
	if cfg.MaxSVIDTTL < 0 {
		bad("max_svid_ttl %s is negative", cfg.MaxSVIDTTL)
	} else if cfg.MaxSVIDTTL > min(cfg.CATTL, cfg.JWTKeyTTL)/2 {
		bad("max_svid_ttl %s exceeds half of ca_ttl (%s) or jwt_key_ttl (%s)", cfg.MaxSVIDTTL, cfg.CATTL, cfg.JWTKeyTTL)
	}
	if cfg.Store == nil {
		bad("store is required")
	}
	if cfg.KeyManager == nil {
		bad("key_manager is required")
	}
	owner := cfg.ServerID
	var claimer RotationClaimer
	if _, shared := cfg.KeyManager.(SharedKeyManager); shared {
		owner = SharedServerID
		var ok bool
		if claimer, ok = cfg.Store.(RotationClaimer); !ok && cfg.Store != nil {
			bad("key_manager: a key manager shared by replicas needs a store with the rotation claim")
		}
	}
	leafSubj, err := newLeafSubject(cfg.Subject)
	if err != nil {
		bad("%v", err)
	}
	if len(errs) > 0 {
		return nil, errkind.Wrap(errkind.InvalidArgument, errors.Join(errs...), "invalid ca config")
	}
	return &Manager{
		leafSubject: leafSubj,
		td:          cfg.TrustDomain,
		serverID:    owner,
		replica:     cfg.ServerID,
		claimer:     claimer,
		keyType:     cfg.KeyType,
		caTTL:       cfg.CATTL,
		jwtTTL:      cfg.JWTKeyTTL,
		maxSVIDTTL:  cfg.MaxSVIDTTL,
		subject:     cfg.Subject,
		store:       cfg.Store,
		now:         cfg.Now,
		log:         cfg.Logger.With("component", "ca"),
		keys:        cfg.KeyManager,
		upstream:    cfg.UpstreamAuthority,
		jwtIssuer:   cfg.JWTIssuer,
		loaded:      make(map[string]privateKey),
	}, nil
}

// Init loads this server's authorities from the store and their keys from
// the key manager, creating and activating the first X.509 CA and JWT key
// when there are none, then catches up on any rotation that fell due while
// the server was down. A key that is missing or does not match its
// authority is an error naming the key.
func (m *Manager) Init(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claimer != nil {
		return m.initShared(ctx)
	}
	return m.initLocked(ctx)
}

// initLocked loads the keys of own current authorities and rotates.
// Callers hold mu (and, when shared, the rotation claim).
func (m *Manager) initLocked(ctx context.Context) error {
	auths, err := m.store.ListAuthorities(ctx)
	if err != nil {
		return fmt.Errorf("init ca: list authorities: %w", err)
	}
	for _, a := range auths {
		if a.ServerID != m.serverID || (a.State != model.StateActive && a.State != model.StatePrepared) {
			continue
		}
		if _, err := m.key(ctx, a); err != nil {
			return fmt.Errorf("init ca: %w", err)
		}
	}
	if err := m.rotateLocked(ctx, auths); err != nil {
		return fmt.Errorf("init ca: %w", err)
	}
	return nil
}

// Run calls Rotate on a ticker until ctx is done, then returns nil. Rotation
// errors are logged and retried at the next tick. Call Init first.
func (m *Manager) Run(ctx context.Context) error {
	if m.x509.Load() == nil || m.jwt.Load() == nil {
		return errkind.New(errkind.FailedPrecondition, "run ca: not initialized: call Init first")
	}
	t := time.NewTicker(m.rotateInterval())
	defer t.Stop()
	for {
		if err := m.Rotate(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("rotate authorities failed; retrying at next tick", logError, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// rotateInterval is how often Run checks: a minute, or less for very short
// lifetimes, so each phase of a lifetime is hit with good precision.
func (m *Manager) rotateInterval() time.Duration {
	return max(time.Second, min(time.Minute, min(m.caTTL, m.jwtTTL)/100))
}

// Authorities returns every authority in the store (all servers), sorted by
// kind, then NotBefore, then id.
func (m *Manager) Authorities(ctx context.Context) ([]model.Authority, error) {
	auths, err := m.store.ListAuthorities(ctx)
	if err != nil {
		return nil, fmt.Errorf("list authorities: %w", err)
	}
	sortAuthorities(auths)
	return auths, nil
}

// sortAuthorities orders authorities by kind, NotBefore and id.
func sortAuthorities(auths []model.Authority) {
	slices.SortFunc(auths, func(a, b model.Authority) int {
		if c := strings.Compare(string(a.Kind), string(b.Kind)); c != 0 {
			return c
		}
		if c := a.NotBefore.Compare(b.NotBefore); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// key returns the private key of own authority a, from memory or from the
// key manager. Callers hold mu.
func (m *Manager) key(ctx context.Context, a model.Authority) (privateKey, error) {
	ref := string(a.Kind) + "/" + a.ID
	if k, ok := m.loaded[ref]; ok {
		return k, nil
	}
	s, err := m.loadKey(ctx, a)
	if err != nil {
		return privateKey{}, err
	}
	k := privateKey{id: a.ID, signer: s}
	m.loaded[ref] = k
	return k, nil
}

// forgetKey drops own authority a's key from memory and from the key
// manager. Callers hold mu.
func (m *Manager) forgetKey(ctx context.Context, a model.Authority) error {
	delete(m.loaded, string(a.Kind)+"/"+a.ID)
	if err := m.keys.DeleteKey(ctx, keyID(a)); err != nil {
		return fmt.Errorf("delete key %s: %w", keyID(a), err)
	}
	return nil
}

// publicKeyDER returns the PKIX DER of a signer's public key.
func publicKeyDER(s crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return der, nil
}
