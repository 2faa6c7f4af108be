// Package broker trades a workload's SPIFFE identity for a short-lived,
// revocable credential to something that cannot speak SPIFFE (a PostgreSQL
// database, a SaaS API key). Each request is decided by the CEL policy
// (internal/broker/policy), every decision is audited, and every credential
// handed out is a lease in the store:
//
//	pending ──Issue ok──▶ active ──revoke / expiry──▶ revoked / expired
//	   └──crash, stall or revoke during Issue──▶ revoked (reconciled)
//
// A lease is recorded pending before the provider creates anything and
// activated after, so a server killed at any moment leaves a trace the
// sweeper (Run, on every replica) finds: it revokes expired leases at the
// provider and reconciles pending ones whose issuance cannot still be
// running. Static secrets and provider revocation data are sealed under the
// KEK (internal/broker/seal); the store never holds a plaintext.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/seal"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// Defaults of Config.
const (
	DefaultTTL           = 15 * time.Minute
	DefaultMaxTTL        = time.Hour
	DefaultIssueTimeout  = 30 * time.Second
	DefaultSweepInterval = 5 * time.Second
	// MaxSecretSize bounds a static secret's value.
	MaxSecretSize = 64 << 10
)

// Log keys.
const (
	logKeyLease      = "lease"
	logKeyCredential = "credential"
	logKeyError      = "error"
)

// Credential is one configured credential: its name, provider and TTLs.
type Credential struct {
	Name         string
	ProviderName string
	Provider     provider.Provider
	// DefaultTTL applies when a request asks for none; MaxTTL bounds what
	// a request may ask for and a lease's whole life across renewals.
	DefaultTTL time.Duration
	MaxTTL     time.Duration
}

// Decider decides a credential request; *policy.Holder implements it.
// Evaluate decides without per-clause explanations (the request path's
// fast form); Decide also explains, and is used for denials so that their
// audit record names the clauses that were false.
type Decider interface {
	Evaluate(ctx context.Context, in policy.Input) policy.Decision
	Decide(ctx context.Context, in policy.Input) policy.Decision
}

// Config configures a Broker. Store, Sealer and Policy are required.
type Config struct {
	Store       *store.Store
	Sealer      *seal.Sealer
	Policy      Decider
	Credentials []Credential
	Log         *slog.Logger
	Now         func() time.Time
	// IssueTimeout bounds one provider Issue; a pending lease older than
	// twice it is reconciled by the sweeper. Zero: DefaultIssueTimeout.
	IssueTimeout time.Duration
	// SweepInterval is how often Run looks for due leases. Zero:
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// Metrics, when set, receives lease counts and ages after each sweep.
	Metrics *Metrics
}

// Broker decides credential requests, issues and revokes leases and keeps
// sealed secrets. It is safe for concurrent use; several replicas may share
// one store. Make one with New; Close releases the providers.
type Broker struct {
	st      *store.Store
	sealer  *seal.Sealer
	policy  Decider
	creds   map[string]Credential
	log     *slog.Logger
	now     func() time.Time
	issueTO time.Duration
	sweepIv time.Duration
	metrics *Metrics
}

// New checks the KEK against the store's check value (recording it on
// first use) and returns a broker. A KEK other than the one the store's
// values were sealed with is refused with a message naming both key ids.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Policy == nil {
		return nil, errors.New("broker: store, sealer and policy are required")
	}
	check, err := cfg.Sealer.CheckValue()
	if err != nil {
		return nil, err
	}
	stored, err := cfg.Store.EnsureBrokerKEK(ctx, cfg.Sealer.KeyID(), check)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := cfg.Sealer.Verify(stored); err != nil {
		return nil, err
	}
	b := &Broker{
		st: cfg.Store, sealer: cfg.Sealer, policy: cfg.Policy, creds: map[string]Credential{},
		log: cfg.Log, now: cfg.Now, issueTO: cfg.IssueTimeout, sweepIv: cfg.SweepInterval, metrics: cfg.Metrics,
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.issueTO <= 0 {
		b.issueTO = DefaultIssueTimeout
	}
	if b.sweepIv <= 0 {
		b.sweepIv = DefaultSweepInterval
	}
	for _, c := range cfg.Credentials {
		if c.DefaultTTL <= 0 {
			c.DefaultTTL = DefaultTTL
		}
		if c.MaxTTL <= 0 {
			c.MaxTTL = max(DefaultMaxTTL, c.DefaultTTL)
		}
		if c.DefaultTTL > c.MaxTTL {
			return nil, fmt.Errorf("broker.credentials.%s: default_ttl %s exceeds max_ttl %s", c.Name, c.DefaultTTL, c.MaxTTL)
		}
		if _, dup := b.creds[c.Name]; dup {
			return nil, fmt.Errorf("broker.credentials.%s: configured twice", c.Name)
		}
		b.creds[c.Name] = c
	}
	return b, nil
}

// Close closes the providers that hold resources (connection pools).
func (b *Broker) Close() error {
	var errs []error
	for _, c := range b.creds {
		if cl, ok := c.Provider.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// Credentials returns the configured credentials' names, sorted.
func (b *Broker) Credentials() []string { return slices.Sorted(maps.Keys(b.creds)) }

// CredentialProviders returns the configured credentials, name → provider
// name (the inventory's suggestions name them).
func (b *Broker) CredentialProviders() map[string]string {
	out := make(map[string]string, len(b.creds))
	for name, c := range b.creds {
		out[name] = c.ProviderName
	}
	return out
}

// Node is what the broker knows of the caller's node.
type Node struct {
	ID                spiffeid.ID
	AttestationMethod string
	Selectors         []model.Selector
	Labels            map[string]string
	// Addresses are the addresses the node's agent was seen connecting to
	// the server from (the agent API's peer addresses), most recent first;
	// providers bind credentials to them (ssh source_address_from_node).
	Addresses []netip.Addr
}

// Request is one credential request from an authenticated workload.
type Request struct {
	Credential string
	Subject    spiffeid.ID
	// SubjectSelectors are the selectors of the caller's registration
	// entry.
	SubjectSelectors []model.Selector
	Node             Node
	// Entry is the id of the registration entry the caller's SVID was
	// issued for, when known; Facts says how SubjectSelectors and Node were
	// established (see exchange.Description). Both are audited.
	Entry, Facts string
	// Context is the task context (parsed by policy.ParseContext).
	Context map[string]any
	// TTL is the lifetime asked for; zero: the credential's default.
	TTL time.Duration
	// PublicKey is the client's public key for providers that certify it
	// (ssh); empty when none was sent.
	PublicKey string
}

// Grant is a credential handed out: its lease and the data for the caller.
type Grant struct {
	Lease store.Lease
	Data  map[string]string
	// Decision is the policy decision that allowed it.
	Decision policy.Decision
}

// Request decides r and, when the policy allows, issues the credential as
// a new lease. Errors are kinded: NotFound for an unknown credential,
// InvalidArgument for a TTL over max_ttl (refused, not clamped: the caller
// learns the bound), PermissionDenied for a policy denial (the decision is
// in the error's explanation and the audit log), Unavailable when the
// provider failed (nothing is left active).
func (b *Broker) Request(ctx context.Context, r Request) (Grant, error) {
	c, ok := b.creds[r.Credential]
	if !ok {
		return Grant{}, errkind.New(errkind.NotFound, "credential %q is not configured", logsafe.Truncate(r.Credential))
	}
	ttl := r.TTL
	switch {
	case ttl < 0:
		return Grant{}, errkind.New(errkind.InvalidArgument, "ttl %s: must be positive", ttl)
	case ttl == 0:
		ttl = c.DefaultTTL
	case ttl > c.MaxTTL:
		return Grant{}, errkind.New(errkind.InvalidArgument, "ttl %s exceeds credential %s's max_ttl of %s", ttl, c.Name, c.MaxTTL)
	}
	now := b.now()
	in := policy.Input{
		Subject: policy.Subject{ID: r.Subject, Selectors: r.SubjectSelectors},
		Node: policy.Node{ID: idString(r.Node.ID), AttestationMethod: r.Node.AttestationMethod,
			Selectors: r.Node.Selectors, Labels: r.Node.Labels},
		Context: r.Context,
		Request: policy.Request{Credential: c.Name, TTL: r.TTL, Time: now},
	}
	d := b.policy.Evaluate(ctx, in)
	if !d.Allowed {
		d = b.policy.Decide(ctx, in) // the same decision, explained for the audit record
	}
	if d.Allowed && d.TTL > 0 && ttl > d.TTL {
		ttl = d.TTL // the rule's ttl caps the lease
	}
	rec := decisionRecord(r, d, ttl)
	if !d.Allowed {
		b.metrics.request(c.Name, "deny")
		if err := b.st.AppendAudit(ctx, rec); err != nil {
			return Grant{}, fmt.Errorf("audit broker decision: %w", err)
		}
		return Grant{Decision: d}, errkind.New(errkind.PermissionDenied, "policy denies credential %s to %s", c.Name, r.Subject)
	}
	b.metrics.request(c.Name, "allow")
	l := store.Lease{
		ID: newLeaseID(), Credential: c.Name, Provider: c.ProviderName, Subject: r.Subject, Node: r.Node.ID,
		Context: r.Context, IssuedAt: now, ExpiresAt: now.Add(ttl),
	}
	preq := provider.Request{LeaseID: l.ID, Credential: c.Name, Subject: r.Subject, Node: r.Node.ID, NodeAddresses: r.Node.Addresses,
		Context: r.Context, ExpiresAt: l.ExpiresAt, PublicKey: r.PublicKey}
	if d.SSH != nil {
		preq.SSH = &provider.SSHOptions{Principals: d.SSH.Principals, Extensions: d.SSH.Extensions, ForceCommand: d.SSH.ForceCommand}
	}
	if provider.IsReadOnly(c.Provider) {
		return b.issueReadOnly(ctx, c, l, preq, rec, d)
	}

	l, err := b.st.CreateLease(ctx, l, rec)
	if err != nil {
		return Grant{}, err
	}
	cred, err := b.issue(ctx, c, preq)
	if err != nil {
		b.abandon(l, nil, "issue failed")
		return Grant{}, err
	}
	sealed, err := b.sealRevokeData(l.ID, cred.RevokeData)
	if err != nil {
		b.abandon(l, cred.RevokeData, "sealing failed")
		return Grant{}, err
	}
	exp := time.Time{}
	if !cred.ExpiresAt.IsZero() && cred.ExpiresAt.Before(l.ExpiresAt) {
		exp = cred.ExpiresAt
	}
	act, err := b.st.ActivateLease(ctx, l.ID, sealed, exp)
	if err != nil {
		// Revoked or reconciled while the provider worked: take it back.
		b.abandon(l, cred.RevokeData, "lease ended during issue")
		return Grant{}, errkind.Wrap(errkind.Unavailable, err, "activate lease")
	}
	return Grant{Lease: act, Data: cred.Data, Decision: d}, nil
}

// issueReadOnly serves providers whose Issue creates nothing: issue first,
// then record the lease active with the decision in one write.
func (b *Broker) issueReadOnly(ctx context.Context, c Credential, l store.Lease, preq provider.Request, rec store.AuditRecord, d policy.Decision) (Grant, error) {
	cred, err := b.issue(ctx, c, preq)
	if err != nil {
		if aerr := b.st.AppendAudit(ctx, rec); aerr != nil {
			return Grant{}, fmt.Errorf("audit broker decision: %w", aerr)
		}
		return Grant{}, err
	}
	sealed, err := b.sealRevokeData(l.ID, cred.RevokeData)
	if err != nil {
		return Grant{}, err
	}
	l.State, l.RevokeData, l.SecretVersion = store.LeaseActive, sealed, cred.SecretVersion
	if !cred.ExpiresAt.IsZero() && cred.ExpiresAt.Before(l.ExpiresAt) {
		l.ExpiresAt = cred.ExpiresAt
	}
	l, err = b.st.CreateLease(ctx, l, rec)
	if err != nil {
		return Grant{}, err
	}
	return Grant{Lease: l, Data: cred.Data, Decision: d}, nil
}

// issue runs the provider's Issue under the issue timeout.
func (b *Broker) issue(ctx context.Context, c Credential, r provider.Request) (provider.Credential, error) {
	start := time.Now()
	ictx, cancel := context.WithTimeout(ctx, b.issueTO)
	cred, err := c.Provider.Issue(ictx, r)
	cancel()
	b.metrics.issued(c.Name, time.Since(start), err)
	if err != nil {
		b.log.Warn("credential issue failed", logKeyCredential, c.Name, logKeyLease, r.LeaseID, logKeyError, err)
		// The request was unusable (an ssh public key) or cannot be served
		// as asked (an ssh certificate for a node with no recorded
		// address): not the target's failure.
		if k := errkind.Of(err); k == errkind.InvalidArgument || k == errkind.FailedPrecondition {
			return cred, errkind.Wrap(k, err, "issue credential "+c.Name)
		}
		return cred, errkind.Wrap(errkind.Unavailable, err, "issue credential "+c.Name)
	}
	return cred, nil
}

func (b *Broker) sealRevokeData(leaseID string, data []byte) ([]byte, error) {
	if data == nil {
		return nil, nil
	}
	return b.sealer.Seal(seal.PurposeRevoke, leaseID, data)
}

// abandon revokes what an interrupted issuance may have created and ends
// the lease. It runs on a fresh context: the caller's may be done.
func (b *Broker) abandon(l store.Lease, revokeData []byte, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), b.issueTO)
	defer cancel()
	c := b.creds[l.Credential]
	if err := c.Provider.Revoke(ctx, provider.Ref{LeaseID: l.ID, Credential: l.Credential, RevokeData: revokeData}); err != nil {
		// The sweeper retries: the lease stays pending until it succeeds.
		b.log.Warn("revoke after a failed issue", logKeyCredential, l.Credential, logKeyLease, l.ID, logKeyError, err)
		return
	}
	if _, err := b.st.EndLease(store.WithActor(ctx, "broker"), l.ID, store.LeaseRevoked, reason); err != nil {
		b.log.Warn("end lease after a failed issue", logKeyLease, l.ID, logKeyError, err)
	}
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// newLeaseID returns a fresh lease id: "lease_" and 26 base32 characters
// (128 random bits).
func newLeaseID() string { return "lease_" + strings.ToLower(rand.Text()) }

// maxAuditContext bounds the task context copied into a decision's audit
// record.
const maxAuditContext = 2048

// decisionRecord is the audit record of a decision (allow or deny) with
// the rule that decided and the inputs that mattered; never a credential.
func decisionRecord(r Request, d policy.Decision, ttl time.Duration) store.AuditRecord {
	action := "broker.deny"
	if d.Allowed {
		action = "broker.allow"
	}
	detail := map[string]string{
		"subject": idString(r.Subject), "node": idString(r.Node.ID), "rule": d.Rule, "policy": d.Policy,
	}
	if r.Entry != "" {
		detail["entry"] = r.Entry
	}
	if r.Facts != "" {
		detail["facts"] = r.Facts
	}
	if r.TTL > 0 {
		detail["requested_ttl"] = r.TTL.String()
	}
	if d.Allowed {
		detail["ttl"] = ttl.String()
	}
	if d.SSH != nil {
		detail["ssh"] = d.SSH.String()
	}
	if len(r.Context) > 0 {
		js, _ := json.Marshal(r.Context)
		detail["context"] = truncate(string(js), maxAuditContext)
	}
	var why []string
	for _, rr := range d.Rules {
		if !rr.Applies || rr.Result == policy.ResultNotEvaluated {
			continue
		}
		s := rr.Name + ": " + string(rr.Result)
		for _, cl := range rr.Clauses {
			s += "; " + string(cl.Result) + ": " + cl.Expr
		}
		why = append(why, s)
	}
	if len(why) > 0 {
		detail["rules"] = truncate(strings.Join(why, " | "), maxAuditContext)
	}
	return store.AuditRecord{Actor: "workload:" + idString(r.Subject), Action: action, Object: r.Credential, Detail: detail}
}

// CurrentSecret opens the newest version of the secret name
// (provider.SecretSource for the static provider).
func (b *Broker) CurrentSecret(ctx context.Context, name string) ([]byte, int64, error) {
	sec, err := b.st.CurrentSecret(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	v, err := b.sealer.Open(seal.PurposeSecret, name, sec.Sealed)
	if err != nil {
		return nil, 0, errkind.Wrap(errkind.Internal, err, "open secret "+name)
	}
	return v, sec.Version, nil
}

// SecretSource returns a provider.SecretSource reading this broker's
// sealed secrets. It exists so providers can be built before the broker
// (their source resolves the broker once it is set).
type SecretSource struct{ B *Broker }

// CurrentSecret implements provider.SecretSource.
func (s *SecretSource) CurrentSecret(ctx context.Context, name string) ([]byte, int64, error) {
	if s.B == nil {
		return nil, 0, errkind.New(errkind.Unavailable, "broker is not started")
	}
	return s.B.CurrentSecret(ctx, name)
}

func checkSecretValue(name string, value []byte) error {
	if err := store.CheckBrokerName(name); err != nil {
		return err
	}
	if len(value) == 0 || len(value) > MaxSecretSize {
		return errkind.New(errkind.InvalidArgument, "secret %s: value of %d bytes: want 1 to %d", name, len(value), MaxSecretSize)
	}
	if !utf8.Valid(value) {
		return errkind.New(errkind.InvalidArgument, "secret %s: value is not UTF-8 text (base64-encode binary keys)", name)
	}
	return nil
}

// PutSecret seals and stores the first version of the secret name.
func (b *Broker) PutSecret(ctx context.Context, name string, value []byte) (store.Secret, error) {
	if err := checkSecretValue(name, value); err != nil {
		return store.Secret{}, err
	}
	sealed, err := b.sealer.Seal(seal.PurposeSecret, name, value)
	if err != nil {
		return store.Secret{}, err
	}
	return b.st.PutSecret(ctx, name, b.sealer.KeyID(), sealed)
}

// RotateSecret seals and stores a new version of the secret name and
// returns the open leases that still hold an older version (stale).
func (b *Broker) RotateSecret(ctx context.Context, name string, value []byte) (store.Secret, []store.Lease, error) {
	if err := checkSecretValue(name, value); err != nil {
		return store.Secret{}, nil, err
	}
	sealed, err := b.sealer.Seal(seal.PurposeSecret, name, value)
	if err != nil {
		return store.Secret{}, nil, err
	}
	sec, err := b.st.RotateSecret(ctx, name, b.sealer.KeyID(), sealed)
	if err != nil {
		return store.Secret{}, nil, err
	}
	open, err := b.st.ListLeases(ctx, store.LeaseFilter{Credential: name, States: []store.LeaseState{store.LeaseActive}})
	if err != nil {
		return sec, nil, err
	}
	var stale []store.Lease
	for _, l := range open {
		if l.SecretVersion < sec.Version {
			stale = append(stale, l)
		}
	}
	return sec, stale, nil
}

// ListSecrets lists the secrets' newest versions, never their values.
func (b *Broker) ListSecrets(ctx context.Context) ([]store.Secret, error) {
	return b.st.ListSecrets(ctx)
}

// ListSecretsPage is ListSecrets a page at a time: at most limit secrets
// whose name sorts after after.
func (b *Broker) ListSecretsPage(ctx context.Context, after string, limit int) ([]store.Secret, error) {
	return b.st.ListSecretsPage(ctx, after, limit)
}

// ListLeases lists leases.
func (b *Broker) ListLeases(ctx context.Context, f store.LeaseFilter) ([]store.Lease, error) {
	return b.st.ListLeases(ctx, f)
}

// Revoke revokes the lease id at its provider and ends it. Revoking a
// lease that already ended returns it unchanged. When the provider fails
// the lease stays open and the error is kinded Unavailable; the sweeper
// retries at expiry.
func (b *Broker) Revoke(ctx context.Context, id, reason string) (store.Lease, error) {
	l, err := b.st.GetLease(ctx, id)
	if err != nil {
		return store.Lease{}, err
	}
	if l.State.Final() {
		return l, nil
	}
	return b.end(ctx, l, store.LeaseRevoked, reason)
}

// RevokeAll revokes every open lease of the subject or credential f names
// (at least one of them); it returns the leases it ended and the first
// error.
func (b *Broker) RevokeAll(ctx context.Context, f store.LeaseFilter, reason string) ([]store.Lease, error) {
	if f.Subject.IsZero() && f.Credential == "" {
		return nil, errkind.New(errkind.InvalidArgument, "revoke: name a lease, a SPIFFE ID or a credential")
	}
	f.States = []store.LeaseState{store.LeasePending, store.LeaseActive}
	ls, err := b.st.ListLeases(ctx, f)
	if err != nil {
		return nil, err
	}
	var out []store.Lease
	var first error
	for _, l := range ls {
		ended, err := b.end(ctx, l, store.LeaseRevoked, reason)
		if err != nil {
			first = cmpErr(first, err)
			continue
		}
		out = append(out, ended)
	}
	return out, first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// end revokes l at its provider and moves it to state.
func (b *Broker) end(ctx context.Context, l store.Lease, state store.LeaseState, reason string) (store.Lease, error) {
	c, ok := b.creds[l.Credential]
	if !ok {
		return store.Lease{}, errkind.New(errkind.FailedPrecondition,
			"lease %s: credential %s is no longer configured, so its provider cannot revoke it", l.ID, l.Credential)
	}
	ref, err := b.ref(l)
	if err != nil {
		return store.Lease{}, err
	}
	if err := c.Provider.Revoke(ctx, ref); err != nil {
		return store.Lease{}, errkind.Wrap(errkind.Unavailable, err, "revoke lease "+l.ID)
	}
	if state == store.LeaseRevoked && !provider.Recalls(c.Provider) {
		// Recorded with the lease: the holder keeps what it was given.
		reason += fmt.Sprintf(" (not recalled: %s credentials cannot be revoked early; what was issued stays valid until it expires, at the latest %s)",
			l.Provider, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return b.st.EndLease(ctx, l.ID, state, reason)
}

func (b *Broker) ref(l store.Lease) (provider.Ref, error) {
	ref := provider.Ref{LeaseID: l.ID, Credential: l.Credential}
	if l.RevokeData != nil {
		data, err := b.sealer.Open(seal.PurposeRevoke, l.ID, l.RevokeData)
		if err != nil {
			return ref, errkind.Wrap(errkind.Internal, err, "lease "+l.ID)
		}
		ref.RevokeData = data
	}
	return ref, nil
}

// Renew extends the active lease id by ttl from now (zero: the
// credential's default_ttl). A lease's whole life is bounded by max_ttl
// from its issue: a longer renewal is refused (InvalidArgument). Providers
// that cannot extend a credential they can recall refuse renewal
// (FailedPrecondition).
func (b *Broker) Renew(ctx context.Context, id string, ttl time.Duration) (store.Lease, error) {
	l, err := b.st.GetLease(ctx, id)
	if err != nil {
		return store.Lease{}, err
	}
	if l.State != store.LeaseActive {
		return store.Lease{}, errkind.New(errkind.FailedPrecondition, "lease %s is %s: only active leases renew", id, l.State)
	}
	c, ok := b.creds[l.Credential]
	if !ok {
		return store.Lease{}, errkind.New(errkind.FailedPrecondition, "lease %s: credential %s is no longer configured", id, l.Credential)
	}
	if ttl <= 0 {
		ttl = c.DefaultTTL
	}
	exp := b.now().Add(ttl)
	if limit := l.IssuedAt.Add(c.MaxTTL); exp.After(limit) {
		return store.Lease{}, errkind.New(errkind.InvalidArgument,
			"renew lease %s to %s: past its max_ttl of %s from issue (%s)", id, exp.UTC().Format(time.RFC3339), c.MaxTTL, limit.UTC().Format(time.RFC3339))
	}
	if r, ok := c.Provider.(provider.Renewer); ok {
		ref, err := b.ref(l)
		if err != nil {
			return store.Lease{}, err
		}
		if err := r.Renew(ctx, ref, exp); err != nil {
			return store.Lease{}, errkind.Wrap(errkind.Unavailable, err, "renew lease "+id)
		}
	} else if provider.Recalls(c.Provider) {
		return store.Lease{}, errkind.New(errkind.FailedPrecondition, "credential %s (provider %s) cannot renew leases", c.Name, c.ProviderName)
	}
	return b.st.RenewLease(ctx, id, exp)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
