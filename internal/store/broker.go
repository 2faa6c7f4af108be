package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/logsafe"
)

// The credential broker's state: the check value of its key-encryption key
// (KEK), sealed static secrets and leases. The store keeps sealed values as
// opaque bytes; sealing and opening is internal/broker/seal's job, so the
// store never holds a plaintext.

// Secret is one version of a sealed static secret.
type Secret struct {
	Name    string
	Version int64
	// KeyID names the KEK the value is sealed under.
	KeyID string
	// Sealed is the sealed value; empty in ListSecrets results.
	Sealed    []byte
	CreatedAt time.Time
}

// LeaseState is where a lease is in its life: pending (recorded, the
// provider may be creating the credential), active (handed out), and the
// final states revoked and expired.
type LeaseState string

// Lease states.
const (
	LeasePending LeaseState = "pending"
	LeaseActive  LeaseState = "active"
	LeaseRevoked LeaseState = "revoked"
	LeaseExpired LeaseState = "expired"
)

// Final reports whether no further transition leaves s.
func (s LeaseState) Final() bool { return s == LeaseRevoked || s == LeaseExpired }

// Lease is one brokered credential: who got what from which provider, until
// when, and whether it is still alive.
type Lease struct {
	ID         string
	Credential string
	Provider   string
	Subject    spiffeid.ID
	// Node is the agent the subject's SVID was signed for; zero when
	// unknown (an SVID issued without a node, or one with no binding).
	Node spiffeid.ID
	// Context is the request's task context (a JSON object).
	Context map[string]any
	// SecretVersion is the static secret's version handed out; 0 for
	// providers that mint credentials.
	SecretVersion int64
	State         LeaseState
	IssuedAt      time.Time
	ExpiresAt     time.Time
	UpdatedAt     time.Time
	// RevokeData is the provider's sealed revocation data; nil when the
	// provider needs none.
	RevokeData []byte
	// Reason says why a lease reached its final state.
	Reason string
}

// LeaseFilter selects leases in ListLeases; zero fields match everything.
type LeaseFilter struct {
	Credential string
	Subject    spiffeid.ID
	States     []LeaseState
	// ExpiresAfter selects the leases whose end is after it (zero: any).
	ExpiresAfter time.Time
	// Limit bounds the result (0: no bound).
	Limit int
	// After is a cursor: only leases listed after this one (newest first,
	// then by ID). Zero: from the newest.
	After LeaseCursor
}

// LeaseCursor names a lease's place in ListLeases' order.
type LeaseCursor struct {
	IssuedAt time.Time
	ID       string
}

// Bounds of broker names and values.
const (
	maxBrokerName   = 128
	maxSealedSecret = 1 << 20
	maxLeaseContext = 64 << 10
)

// CheckBrokerName reports whether name is usable as a credential name: 1 to
// 128 characters of letters, digits, '-', '_' and '.', starting with a
// letter or digit.
func CheckBrokerName(name string) error {
	if name == "" || len(name) > maxBrokerName {
		return errkind.New(errkind.InvalidArgument, "credential name %q: want 1 to %d characters", logsafe.Truncate(name), maxBrokerName)
	}
	if c := name[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
		return errkind.New(errkind.InvalidArgument, "credential name %q: start with a letter or digit", logsafe.Truncate(name))
	}
	if strings.TrimLeft(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		return errkind.New(errkind.InvalidArgument, "credential name %q: use letters, digits, '-', '_' and '.'", logsafe.Truncate(name))
	}
	return nil
}

// EnsureBrokerKEK records keyID and check as the broker's KEK check value
// unless one is recorded already, and returns the recorded check value: the
// caller verifies it opens under its KEK, which proves its KEK is the one
// the stored values were sealed with.
func (s *Store) EnsureBrokerKEK(ctx context.Context, keyID string, check []byte) ([]byte, error) {
	var stored []byte
	err := s.update(ctx, "record broker kek", false, func(t *wtx) error {
		err := t.queryRow(ctx, "SELECT check_value FROM broker_kek WHERE id = 1").Scan(&stored)
		if err == nil {
			return errRollback
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		stored = check
		if _, err := t.exec(ctx, "INSERT INTO broker_kek (id, key_id, check_value, created_at) VALUES (1, ?, ?, ?)",
			keyID, check, timeToDB(t.now)); err != nil {
			return err
		}
		t.record("broker.kek.init", keyID, nil)
		return nil
	})
	return stored, err
}

// PutSecret stores the first version of the secret name, sealed under the
// KEK keyID (audited as secret.put; the value is not). The error is kinded
// AlreadyExists when name has a version already: use RotateSecret.
func (s *Store) PutSecret(ctx context.Context, name, keyID string, sealed []byte) (Secret, error) {
	return s.putSecret(ctx, name, keyID, sealed, false)
}

// RotateSecret stores a new version of the secret name (audited as
// secret.rotate). The error is kinded NotFound when name has no version.
func (s *Store) RotateSecret(ctx context.Context, name, keyID string, sealed []byte) (Secret, error) {
	return s.putSecret(ctx, name, keyID, sealed, true)
}

func (s *Store) putSecret(ctx context.Context, name, keyID string, sealed []byte, rotate bool) (Secret, error) {
	if err := CheckBrokerName(name); err != nil {
		return Secret{}, err
	}
	if len(sealed) == 0 || len(sealed) > maxSealedSecret {
		return Secret{}, errkind.New(errkind.InvalidArgument, "secret %s: sealed value of %d bytes: want 1 to %d", name, len(sealed), maxSealedSecret)
	}
	sec := Secret{Name: name, KeyID: keyID}
	err := s.update(ctx, "put secret "+name, false, func(t *wtx) error {
		var cur sql.NullInt64
		if err := t.queryRow(ctx, "SELECT MAX(version) FROM broker_secrets WHERE name = ?", name).Scan(&cur); err != nil {
			return err
		}
		switch {
		case rotate && !cur.Valid:
			return errkind.New(errkind.NotFound, "secret %s does not exist: store it with secret put", name)
		case !rotate && cur.Valid:
			return errkind.New(errkind.AlreadyExists, "secret %s exists (version %d): replace it with secret rotate", name, cur.Int64)
		}
		sec.Version = cur.Int64 + 1
		sec.CreatedAt = t.now
		if _, err := t.exec(ctx, "INSERT INTO broker_secrets (name, version, key_id, sealed, created_at) VALUES (?, ?, ?, ?, ?)",
			name, sec.Version, keyID, sealed, timeToDB(t.now)); err != nil {
			return err
		}
		action := "secret.put"
		if rotate {
			action = "secret.rotate"
		}
		t.record(action, name, map[string]string{"version": fmt.Sprint(sec.Version), "key_id": keyID})
		return nil
	})
	if err != nil {
		return Secret{}, err
	}
	return sec, nil
}

// CurrentSecret returns the newest version of the secret name with its
// sealed value. The error is kinded NotFound when there is none.
func (s *Store) CurrentSecret(ctx context.Context, name string) (Secret, error) {
	sec := Secret{Name: name}
	var created int64
	err := s.db.QueryRowContext(ctx, s.d.rebind(
		"SELECT version, key_id, sealed, created_at FROM broker_secrets WHERE name = ? ORDER BY version DESC LIMIT 1"), name).
		Scan(&sec.Version, &sec.KeyID, &sec.Sealed, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Secret{}, errkind.New(errkind.NotFound, "secret %s does not exist", logsafe.Truncate(name))
	}
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %s: %w", name, err)
	}
	sec.CreatedAt = timeFromDB(created)
	return sec, nil
}

// ListSecrets returns the newest version of every secret, without sealed
// values, ordered by name.
func (s *Store) ListSecrets(ctx context.Context) ([]Secret, error) {
	return s.ListSecretsPage(ctx, "", 0)
}

// ListSecretsPage is ListSecrets a page at a time: at most limit secrets
// (0: all) whose name sorts after after.
func (s *Store) ListSecretsPage(ctx context.Context, after string, limit int) ([]Secret, error) {
	q := `SELECT s.name, s.version, s.key_id, s.created_at FROM broker_secrets s
		WHERE s.version = (SELECT MAX(version) FROM broker_secrets m WHERE m.name = s.name) AND s.name > ? ORDER BY s.name`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), after)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []Secret
	for rows.Next() {
		var sec Secret
		var created int64
		if err := rows.Scan(&sec.Name, &sec.Version, &sec.KeyID, &created); err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		sec.CreatedAt = timeFromDB(created)
		out = append(out, sec)
	}
	return out, rows.Err()
}

func checkLease(l *Lease) error {
	if l.ID == "" || len(l.ID) > maxBrokerName {
		return errkind.New(errkind.InvalidArgument, "lease id: want 1 to %d characters", maxBrokerName)
	}
	if err := CheckBrokerName(l.Credential); err != nil {
		return err
	}
	if l.Provider == "" || l.Subject.IsZero() {
		return errkind.New(errkind.InvalidArgument, "lease %s: provider and subject are required", l.ID)
	}
	if !l.ExpiresAt.After(l.IssuedAt) {
		return errkind.New(errkind.InvalidArgument, "lease %s: expires_at must be after issued_at", l.ID)
	}
	return nil
}

// CreateLease records l (audited as lease.create) as pending — the broker
// calls it before the provider creates anything — or, when l.State is
// LeaseActive, as active at once with l.RevokeData (for providers that
// create nothing at the target). IssuedAt zero means now. also are further
// audit records written in the same transaction (the policy decision). The
// error is kinded AlreadyExists when the id is taken. Concurrent calls are
// group-committed (leasebatch.go): they share one transaction, and each
// returns only once its own lease and records are durable.
func (s *Store) CreateLease(ctx context.Context, l Lease, also ...AuditRecord) (Lease, error) {
	if l.IssuedAt.IsZero() {
		l.IssuedAt = s.now()
	}
	l.IssuedAt, l.ExpiresAt = normTime(l.IssuedAt), normTime(l.ExpiresAt)
	if err := checkLease(&l); err != nil {
		return Lease{}, err
	}
	if l.Context == nil {
		l.Context = map[string]any{}
	}
	ctxJSON, err := json.Marshal(l.Context)
	if err != nil {
		return Lease{}, errkind.New(errkind.InvalidArgument, "lease %s: context: %v", l.ID, err)
	}
	if len(ctxJSON) > maxLeaseContext {
		return Lease{}, errkind.New(errkind.InvalidArgument, "lease %s: context of %d bytes: at most %d", l.ID, len(ctxJSON), maxLeaseContext)
	}
	switch l.State {
	case "", LeasePending:
		l.State, l.RevokeData = LeasePending, nil
	case LeaseActive:
	default:
		return Lease{}, errkind.New(errkind.InvalidArgument, "lease %s: a new lease is pending or active, not %s", l.ID, l.State)
	}
	l.Reason = ""
	for i := range also {
		if also[i].Action == "" {
			return Lease{}, errkind.New(errkind.InvalidArgument, "create lease %s: audit record %d has no action", l.ID, i)
		}
	}
	actor := actorFrom(ctx)
	recs := make([]AuditRecord, len(also))
	for i, r := range also {
		if r.Actor == "" {
			r.Actor = actor
		}
		r.Time = normTime(r.Time)
		r.Detail = maps.Clone(r.Detail)
		recs[i] = r
	}
	return s.leases.do(ctx, "create lease "+l.ID, &leaseReq{l: l, ctxJSON: string(ctxJSON), actor: actor, also: recs})
}

// ActivateLease moves a pending lease to active, keeping the provider's
// sealed revocation data and the expiry the provider granted (zero: keep
// the recorded one). It is audited as lease.activate. The error is kinded
// FailedPrecondition when the lease is no longer pending (a sweeper
// reconciled it meanwhile: the caller must revoke what it created) and
// NotFound when there is no such lease.
func (s *Store) ActivateLease(ctx context.Context, id string, revokeData []byte, expiresAt time.Time) (Lease, error) {
	return s.transitionLease(ctx, "activate", id, []LeaseState{LeasePending}, func(t *wtx, l *Lease) error {
		l.State = LeaseActive
		l.RevokeData = revokeData
		if !expiresAt.IsZero() {
			l.ExpiresAt = normTime(expiresAt)
		}
		_, err := t.exec(ctx, "UPDATE broker_leases SET state = ?, revoke_data = ?, expires_at = ?, updated_at = ? WHERE id = ?",
			string(LeaseActive), nullBytes(revokeData), timeToDB(l.ExpiresAt), timeToDB(t.now), id)
		return err
	})
}

// RenewLease moves an active lease's expiry to expiresAt (audited as
// lease.renew). The error is kinded FailedPrecondition unless the lease is
// active.
func (s *Store) RenewLease(ctx context.Context, id string, expiresAt time.Time) (Lease, error) {
	return s.transitionLease(ctx, "renew", id, []LeaseState{LeaseActive}, func(t *wtx, l *Lease) error {
		l.ExpiresAt = normTime(expiresAt)
		_, err := t.exec(ctx, "UPDATE broker_leases SET expires_at = ?, updated_at = ? WHERE id = ?",
			timeToDB(l.ExpiresAt), timeToDB(t.now), id)
		return err
	})
}

// EndLease moves a pending or active lease to a final state (LeaseRevoked
// or LeaseExpired) with reason, audited as lease.revoke or lease.expire.
// The broker calls it after the provider revoked the credential. Ending a
// lease that is already final changes nothing and returns it; the error is
// kinded NotFound when there is no such lease.
func (s *Store) EndLease(ctx context.Context, id string, state LeaseState, reason string) (Lease, error) {
	if !state.Final() {
		return Lease{}, errkind.New(errkind.InvalidArgument, "end lease %s: %q is not a final state", id, state)
	}
	l, err := s.transitionLease(ctx, strings.TrimSuffix(string(state), "d"), id, []LeaseState{LeasePending, LeaseActive}, func(t *wtx, l *Lease) error {
		l.State, l.Reason = state, reason
		_, err := t.exec(ctx, "UPDATE broker_leases SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
			string(state), reason, timeToDB(t.now), id)
		return err
	})
	if errkind.Of(err) == errkind.FailedPrecondition {
		if cur, gerr := s.GetLease(ctx, id); gerr == nil && cur.State.Final() {
			return cur, nil
		}
	}
	return l, err
}

func (s *Store) transitionLease(ctx context.Context, verb, id string, from []LeaseState, fn func(t *wtx, l *Lease) error) (Lease, error) {
	var l Lease
	err := s.update(ctx, verb+" lease "+logsafe.Truncate(id), false, func(t *wtx) error {
		rows, err := t.query(ctx, leaseColumns+" WHERE id = ?", id)
		if err != nil {
			return err
		}
		got, err := scanLeases(rows)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return errkind.New(errkind.NotFound, "lease %s does not exist", logsafe.Truncate(id))
		}
		l = got[0]
		ok := false
		for _, st := range from {
			ok = ok || l.State == st
		}
		if !ok {
			return errkind.New(errkind.FailedPrecondition, "lease %s is %s: cannot %s it", id, l.State, verb)
		}
		if err := fn(t, &l); err != nil {
			return err
		}
		l.UpdatedAt = t.now
		detail := map[string]string{"credential": l.Credential, "subject": idToDB(l.Subject), "expires_at": l.ExpiresAt.Format(time.RFC3339Nano)}
		if l.Reason != "" {
			detail["reason"] = l.Reason
		}
		t.record("lease."+verb, id, detail)
		return nil
	})
	if err != nil {
		return Lease{}, err
	}
	return l, nil
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

const leaseColumns = `SELECT id, credential, provider, subject, node, context, secret_version, state,
	issued_at, expires_at, updated_at, revoke_data, reason FROM broker_leases`

func scanLeases(rows *sql.Rows) ([]Lease, error) {
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var subject, node, ctxJSON, state string
		var issued, expires, updated int64
		if err := rows.Scan(&l.ID, &l.Credential, &l.Provider, &subject, &node, &ctxJSON, &l.SecretVersion, &state,
			&issued, &expires, &updated, &l.RevokeData, &l.Reason); err != nil {
			return nil, err
		}
		var err error
		if l.Subject, err = idFromDB(subject); err != nil {
			return nil, err
		}
		if l.Node, err = idFromDB(node); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(ctxJSON), &l.Context); err != nil {
			return nil, fmt.Errorf("decode lease %s context: %w", l.ID, err)
		}
		l.State = LeaseState(state)
		l.IssuedAt, l.ExpiresAt, l.UpdatedAt = timeFromDB(issued), timeFromDB(expires), timeFromDB(updated)
		out = append(out, l)
	}
	return out, rows.Err()
}

// GetLease returns the lease id. The error is kinded NotFound when there is
// no such lease.
func (s *Store) GetLease(ctx context.Context, id string) (Lease, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(leaseColumns+" WHERE id = ?"), id)
	if err != nil {
		return Lease{}, fmt.Errorf("read lease: %w", err)
	}
	got, err := scanLeases(rows)
	if err != nil {
		return Lease{}, fmt.Errorf("read lease: %w", err)
	}
	if len(got) == 0 {
		return Lease{}, errkind.New(errkind.NotFound, "lease %s does not exist", logsafe.Truncate(id))
	}
	return got[0], nil
}

// ListLeases returns the leases f selects, newest first.
func (s *Store) ListLeases(ctx context.Context, f LeaseFilter) ([]Lease, error) {
	var where []string
	var args []any
	if f.Credential != "" {
		where, args = append(where, "credential = ?"), append(args, f.Credential)
	}
	if !f.Subject.IsZero() {
		where, args = append(where, "subject = ?"), append(args, idToDB(f.Subject))
	}
	if len(f.States) > 0 {
		where = append(where, "state IN ("+placeholders(len(f.States))+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if !f.ExpiresAfter.IsZero() {
		where, args = append(where, "expires_at > ?"), append(args, timeToDB(f.ExpiresAfter))
	}
	if f.After.ID != "" {
		at := timeToDB(f.After.IssuedAt)
		where, args = append(where, "(issued_at < ? OR (issued_at = ? AND id > ?))"), append(args, at, at, f.After.ID)
	}
	q := leaseColumns
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY issued_at DESC, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// DueLeases returns, oldest first and at most limit of them, the leases a
// sweeper must act on at now: active or pending leases that expired, and
// pending leases issued before pendingBefore (their issuance crashed or
// stalled).
func (s *Store) DueLeases(ctx context.Context, now, pendingBefore time.Time, limit int) ([]Lease, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(leaseColumns+
		fmt.Sprintf(" WHERE (state IN (?, ?) AND expires_at <= ?) OR (state = ? AND issued_at < ?) ORDER BY expires_at LIMIT %d", limit)),
		string(LeaseActive), string(LeasePending), timeToDB(normTime(now)), string(LeasePending), timeToDB(normTime(pendingBefore)))
	if err != nil {
		return nil, fmt.Errorf("list due leases: %w", err)
	}
	out, err := scanLeases(rows)
	if err != nil {
		return nil, fmt.Errorf("list due leases: %w", err)
	}
	return out, nil
}

// LeaseCount is the number of leases of one credential in one state.
type LeaseCount struct {
	Credential string
	State      LeaseState
	Count      int64
	// OldestIssued is the issue time of the oldest lease counted.
	OldestIssued time.Time
}

// CountLeases counts the pending and active leases per credential and
// state (the broker's metrics).
func (s *Store) CountLeases(ctx context.Context) ([]LeaseCount, error) {
	rows, err := s.db.QueryContext(ctx, s.d.rebind(`SELECT credential, state, COUNT(*), MIN(issued_at) FROM broker_leases
		WHERE state IN (?, ?) GROUP BY credential, state ORDER BY credential, state`), string(LeasePending), string(LeaseActive))
	if err != nil {
		return nil, fmt.Errorf("count leases: %w", err)
	}
	defer rows.Close()
	var out []LeaseCount
	for rows.Next() {
		var c LeaseCount
		var st string
		var oldest int64
		if err := rows.Scan(&c.Credential, &st, &c.Count, &oldest); err != nil {
			return nil, fmt.Errorf("count leases: %w", err)
		}
		c.State, c.OldestIssued = LeaseState(st), timeFromDB(oldest)
		out = append(out, c)
	}
	return out, rows.Err()
}
