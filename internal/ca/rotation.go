package ca

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// abandonedGrace is how long after its NotAfter another server's active or
// prepared authority is left alone before it is deleted as abandoned (the
// server was decommissioned).
const abandonedGrace = time.Hour

// kinds lists the authority kinds a Manager keeps, in rotation order.
var kinds = [...]model.AuthorityKind{model.AuthorityX509, model.AuthorityJWT}

// Rotate advances this server's authorities to where they should be now:
//
//   - an active authority past half of its lifetime gets a prepared
//     successor, which is published in the bundle from that moment;
//   - past 5/6 of its lifetime (or MaxSVIDTTL before its end), the prepared
//     successor becomes active and the previous one old, provided the
//     successor has been published for a third of the configured lifetime
//     (or the active one has already expired);
//   - old, tainted and revoked authorities of any server, and this server's
//     unused prepared ones, are deleted once past their NotAfter; another
//     server's active or prepared ones an hour later (that server is gone).
//
// With a SharedKeyManager the authorities are the trust domain's and only
// the replica that wins the store's rotation claim takes these steps; the
// others switch to the active authorities the store holds.
//
// Rotate is idempotent; Run calls it on a ticker.
func (m *Manager) Rotate(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claimer != nil {
		// Shared authorities: the replica that wins the claim takes the
		// step; the others follow what the store holds.
		won, err := m.claim(ctx)
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if !won {
			return m.followLocked(ctx)
		}
		defer m.release(ctx)
	}
	auths, err := m.store.ListAuthorities(ctx)
	if err != nil {
		return fmt.Errorf("rotate: list authorities: %w", err)
	}
	return m.rotateLocked(ctx, auths)
}

// rotateLocked is Rotate on an already listed set. Callers hold mu.
func (m *Manager) rotateLocked(ctx context.Context, auths []model.Authority) error {
	now := m.now()
	var errs []error
	for _, kind := range kinds {
		if err := m.rotateKind(ctx, kind, auths, now); err != nil {
			errs = append(errs, fmt.Errorf("rotate %s authorities: %w", kind, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) rotateKind(ctx context.Context, kind model.AuthorityKind, auths []model.Authority, now time.Time) error {
	var actives, prepared []model.Authority
	history := false // this server had authorities of this kind before
	for _, a := range auths {
		if a.Kind != kind {
			continue
		}
		mine := a.ServerID == m.serverID
		history = history || mine
		expired := !now.Before(a.NotAfter)
		// Another server's expired active or prepared authority is its own
		// business until a grace period shows the server is gone.
		abandoned := !mine && !now.Before(a.NotAfter.Add(abandonedGrace))
		if expired && (retired(a.State) || mine && a.State == model.StatePrepared) || abandoned {
			if err := m.delete(ctx, a); err != nil {
				return err
			}
			continue
		}
		switch {
		case mine && a.State == model.StateActive:
			actives = append(actives, a)
		case mine && a.State == model.StatePrepared:
			prepared = append(prepared, a)
		}
	}
	byNotBefore := func(a, b model.Authority) int { return a.NotBefore.Compare(b.NotBefore) }
	slices.SortFunc(actives, byNotBefore)
	slices.SortFunc(prepared, byNotBefore)

	// Several actives or prepared can only follow a crash between two
	// writes: the newest wins, the others retire.
	for len(actives) > 1 {
		if err := m.retire(ctx, actives[0], now); err != nil {
			return err
		}
		actives = actives[1:]
	}
	for len(prepared) > 1 {
		if err := m.retire(ctx, prepared[0], now); err != nil {
			return err
		}
		prepared = prepared[1:]
	}

	if len(actives) == 0 {
		if len(prepared) == 1 {
			return m.activate(ctx, prepared[0], nil, now)
		}
		a, err := m.create(ctx, kind, model.StateActive, now)
		if err != nil {
			return err
		}
		if history {
			// A gap: the previous authority ended before a successor was
			// prepared (the server was down through the whole window).
			m.log.Warn("authority activated without a prepared phase: peers that have not fetched the new bundle reject its SVIDs until they do",
				logKind, kind, logID, a.ID)
		} else {
			m.log.Info("first authority created", logKind, kind, logID, a.ID)
		}
		return nil
	}
	active := actives[0]
	if m.activeID(kind) != active.ID {
		publish, err := m.signerFor(ctx, active)
		if err != nil {
			return err
		}
		publish()
		m.logSigning(active)
	}

	lead := m.ttl(kind) / 3
	start := active.NotBefore.Add(clockSkew)
	life := active.NotAfter.Sub(start)
	activateAt := start.Add(life * 5 / 6)
	if m.maxSVIDTTL > 0 {
		activateAt = minTime(activateAt, active.NotAfter.Add(-m.maxSVIDTTL))
	}
	prepareAt := minTime(start.Add(life/2), activateAt.Add(-lead))

	if len(prepared) == 0 && !now.Before(prepareAt) {
		p, err := m.create(ctx, kind, model.StatePrepared, now)
		if err != nil {
			return err
		}
		prepared = append(prepared, p)
	}
	if len(prepared) == 1 && !now.Before(activateAt) {
		published := now.Sub(prepared[0].NotBefore.Add(clockSkew))
		if published >= lead || !now.Before(active.NotAfter) {
			return m.activate(ctx, prepared[0], &active, now)
		}
	}
	return nil
}

// Prepare creates a new prepared authority of kind for this server, which
// is published in the bundle at once and signs nothing until activated. It
// fails with FailedPrecondition if one is already prepared.
func (m *Manager) Prepare(ctx context.Context, kind model.AuthorityKind) (model.Authority, error) {
	if err := checkKind(kind); err != nil {
		return model.Authority{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out model.Authority
	err := m.withClaim(ctx, fmt.Sprintf("prepare %s authority", kind), func() error {
		auths, err := m.store.ListAuthorities(ctx)
		if err != nil {
			return fmt.Errorf("prepare %s authority: %w", kind, err)
		}
		if p, ok := m.find(auths, kind, model.StatePrepared); ok {
			return errkind.New(errkind.FailedPrecondition,
				"prepare %s authority: %s is already prepared: activate it first", kind, p.ID)
		}
		out, err = m.create(ctx, kind, model.StatePrepared, m.now())
		return err
	})
	return out, err
}

// Activate makes this server's prepared authority of kind the active one
// and marks the previously active one old. It fails with
// FailedPrecondition when nothing is prepared.
func (m *Manager) Activate(ctx context.Context, kind model.AuthorityKind) (model.Authority, error) {
	if err := checkKind(kind); err != nil {
		return model.Authority{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out model.Authority
	err := m.withClaim(ctx, fmt.Sprintf("activate %s authority", kind), func() error {
		auths, err := m.store.ListAuthorities(ctx)
		if err != nil {
			return fmt.Errorf("activate %s authority: %w", kind, err)
		}
		p, ok := m.find(auths, kind, model.StatePrepared)
		if !ok {
			return errkind.New(errkind.FailedPrecondition,
				"activate %s authority: none is prepared: prepare one first", kind)
		}
		var prev *model.Authority
		if a, ok := m.find(auths, kind, model.StateActive); ok {
			prev = &a
		}
		if err := m.activate(ctx, p, prev, m.now()); err != nil {
			return err
		}
		p.State = model.StateActive
		out = p
		return nil
	})
	return out, err
}

// Taint flags an old authority (of any server) as suspected compromised:
// it stays in the bundle, so agents can see it and replace the SVIDs it
// signed. Only an old authority can be tainted (FailedPrecondition
// otherwise; NotFound if there is none with that id).
func (m *Manager) Taint(ctx context.Context, kind model.AuthorityKind, id string) error {
	return m.transition(ctx, kind, id, model.StateTainted, model.StateOld)
}

// Revoke removes a tainted or old authority (of any server) from the bundle
// at once: SVIDs it signed stop verifying. Other states are refused with
// FailedPrecondition; an unknown id is NotFound. An X.509 authority signed
// by an upstream authority cannot be revoked here (FailedPrecondition):
// the bundle publishes the upstream roots, not its certificate.
func (m *Manager) Revoke(ctx context.Context, kind model.AuthorityKind, id string) error {
	return m.transition(ctx, kind, id, model.StateRevoked, model.StateOld, model.StateTainted)
}

// transition moves authority kind/id to state to, provided it is in one of
// the states from.
func (m *Manager) transition(ctx context.Context, kind model.AuthorityKind, id string, to model.AuthorityState, from ...model.AuthorityState) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.withClaim(ctx, fmt.Sprintf("set %s authority %s %s", kind, id, to), func() error {
		return m.transitionLocked(ctx, kind, id, to, from...)
	})
}

// transitionLocked is transition under mu (and the claim, when shared).
func (m *Manager) transitionLocked(ctx context.Context, kind model.AuthorityKind, id string, to model.AuthorityState, from ...model.AuthorityState) error {
	auths, err := m.store.ListAuthorities(ctx)
	if err != nil {
		return fmt.Errorf("set %s authority %s %s: %w", kind, id, to, err)
	}
	i := slices.IndexFunc(auths, func(a model.Authority) bool { return a.Kind == kind && a.ID == id })
	if i < 0 {
		return errkind.New(errkind.NotFound, "%s authority %s not found", kind, id)
	}
	a := auths[i]
	if to == model.StateRevoked && len(a.UpstreamRoots) > 0 {
		return errkind.New(errkind.FailedPrecondition,
			"cannot revoke x509 authority %s: it is signed by the upstream authority, and the bundle holds the upstream roots, "+
				"so its SVIDs would keep verifying: taint it and rotate, and revoke its certificate at the upstream ca", id)
	}
	if !slices.Contains(from, a.State) {
		return errkind.New(errkind.FailedPrecondition,
			"cannot make %s authority %s %s: it is %s, and only %s ones can be", kind, id, to, a.State, statesText(from))
	}
	a.State = to
	a.UpdatedAt = m.now()
	if err := m.store.PutAuthority(ctx, a); err != nil {
		return fmt.Errorf("set %s authority %s %s: %w", kind, id, to, err)
	}
	if a.ServerID == m.serverID {
		if err := m.forgetKey(ctx, a); err != nil {
			return fmt.Errorf("set %s authority %s %s: %w", kind, id, to, err)
		}
	}
	m.logTransition("authority "+string(to), a)
	return nil
}

// create makes a new authority of kind in state (prepared, or active when
// there is none to prepare from): it generates its key in the key manager,
// then stores the authority.
func (m *Manager) create(ctx context.Context, kind model.AuthorityKind, state model.AuthorityState, now time.Time) (_ model.Authority, err error) {
	kid := newKeyID(kind)
	key, err := m.keys.GenerateKey(ctx, kid, m.keyType)
	if err != nil {
		return model.Authority{}, fmt.Errorf("create %s authority: generate key %s: %w", kind, kid, err)
	}
	a := model.Authority{Kind: kind, KeyID: kid}
	defer func() {
		if err != nil {
			// The authority was never stored: its key is of no use. The
			// cleanup must run even when ctx has ended.
			_ = m.forgetKey(context.WithoutCancel(ctx), a)
		}
	}()
	pub, err := publicKeyDER(key)
	if err != nil {
		return model.Authority{}, fmt.Errorf("create %s authority: %w", kind, err)
	}
	// Whole seconds, rounded up: certificates carry seconds, and rotation
	// must never see an authority as older than it is.
	start := ceilSecond(now)
	a.State = state
	a.ServerID = m.serverID
	a.PublicKey = pub
	a.NotBefore = start.Add(-clockSkew)
	a.NotAfter = start.Add(m.ttl(kind))
	a.CreatedAt, a.UpdatedAt = now, now
	switch kind {
	case model.AuthorityX509:
		ski, err := subjectKeyID(pub)
		if err != nil {
			return model.Authority{}, fmt.Errorf("create x509 authority: %w", err)
		}
		a.ID = hex.EncodeToString(ski)
		if m.upstream != nil {
			err = m.upstreamCertificate(ctx, &a, key, now)
		} else {
			a.Certificate, err = m.caCertificate(a, ski, key)
		}
		if err != nil {
			return model.Authority{}, fmt.Errorf("create x509 authority %s: %w", a.ID, err)
		}
	case model.AuthorityJWT:
		tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(cryptoSHA256)
		if err != nil {
			return model.Authority{}, fmt.Errorf("create jwt authority: thumbprint: %w", err)
		}
		a.ID = base64URL(tp)
	}

	m.loaded[string(kind)+"/"+a.ID] = privateKey{id: a.ID, signer: key}
	var publish func()
	if state == model.StateActive {
		if publish, err = m.signerFor(ctx, a); err != nil {
			return model.Authority{}, fmt.Errorf("create %s authority: %w", kind, err)
		}
	}
	if err := m.store.PutAuthority(ctx, a); err != nil {
		return model.Authority{}, fmt.Errorf("create %s authority: store: %w", kind, err)
	}
	if publish != nil {
		publish()
	}
	m.logTransition("authority "+string(state), a)
	return a, nil
}

// activate makes next active (publishing its signer for minting) and
// retires prev, if any.
func (m *Manager) activate(ctx context.Context, next model.Authority, prev *model.Authority, now time.Time) error {
	publish, err := m.signerFor(ctx, next)
	if err != nil {
		return fmt.Errorf("activate %s authority %s: %w", next.Kind, next.ID, err)
	}
	next.State = model.StateActive
	next.UpdatedAt = now
	if err := m.store.PutAuthority(ctx, next); err != nil {
		return fmt.Errorf("activate %s authority %s: %w", next.Kind, next.ID, err)
	}
	publish()
	m.logTransition("authority activated", next)
	if prev != nil {
		return m.retire(ctx, *prev, now)
	}
	return nil
}

// retire marks a old and deletes its private key: it never signs again.
// An authority already past its NotAfter is deleted outright.
func (m *Manager) retire(ctx context.Context, a model.Authority, now time.Time) error {
	if !now.Before(a.NotAfter) {
		return m.delete(ctx, a)
	}
	a.State = model.StateOld
	a.UpdatedAt = now
	if err := m.store.PutAuthority(ctx, a); err != nil {
		return fmt.Errorf("retire %s authority %s: %w", a.Kind, a.ID, err)
	}
	if err := m.forgetKey(ctx, a); err != nil {
		return fmt.Errorf("retire %s authority %s: %w", a.Kind, a.ID, err)
	}
	m.logTransition("authority retired", a)
	return nil
}

// delete removes an expired authority from the store (and its key, if it
// is this server's). An authority another replica deleted first is fine.
func (m *Manager) delete(ctx context.Context, a model.Authority) error {
	err := m.store.DeleteAuthority(ctx, a.Kind, a.ID)
	if err != nil && !errkind.Is(err, errkind.NotFound) {
		return fmt.Errorf("delete expired %s authority %s: %w", a.Kind, a.ID, err)
	}
	if a.ServerID == m.serverID {
		if err := m.forgetKey(ctx, a); err != nil {
			return fmt.Errorf("delete expired %s authority %s: %w", a.Kind, a.ID, err)
		}
	}
	m.logTransition("authority deleted", a)
	return nil
}

// signerFor builds the minting state of own authority a and returns the
// function that publishes it, so a failure happens before any store write.
func (m *Manager) signerFor(ctx context.Context, a model.Authority) (publish func(), err error) {
	key, err := m.key(ctx, a)
	if err != nil {
		return nil, err
	}
	switch a.Kind {
	case model.AuthorityX509:
		s, err := newX509Signer(a, key)
		if err != nil {
			return nil, err
		}
		return func() { m.x509.Store(s) }, nil
	case model.AuthorityJWT:
		s, err := newJWTSigner(a, key)
		if err != nil {
			return nil, err
		}
		return func() { m.jwt.Store(s) }, nil
	}
	return nil, fmt.Errorf("unknown authority kind %q", a.Kind)
}

// find returns this server's newest authority of kind in state.
func (m *Manager) find(auths []model.Authority, kind model.AuthorityKind, state model.AuthorityState) (model.Authority, bool) {
	var found model.Authority
	ok := false
	for _, a := range auths {
		if a.Kind == kind && a.State == state && a.ServerID == m.serverID && (!ok || a.NotBefore.After(found.NotBefore)) {
			found, ok = a, true
		}
	}
	return found, ok
}

// activeID returns the id of the authority of kind that minting uses.
func (m *Manager) activeID(kind model.AuthorityKind) string {
	switch kind {
	case model.AuthorityX509:
		if s := m.x509.Load(); s != nil {
			return s.id
		}
	case model.AuthorityJWT:
		if s := m.jwt.Load(); s != nil {
			return s.id
		}
	}
	return ""
}

// ttl returns the configured lifetime of authorities of kind.
func (m *Manager) ttl(kind model.AuthorityKind) time.Duration {
	if kind == model.AuthorityJWT {
		return m.jwtTTL
	}
	return m.caTTL
}

// logTransition logs an authority transition; never key material.
func (m *Manager) logTransition(msg string, a model.Authority) {
	m.log.Info(msg, logKind, a.Kind, logID, a.ID, logState, a.State,
		logServerID, a.ServerID, logNotAfter, a.NotAfter)
}

// checkKind refuses unknown authority kinds.
func checkKind(kind model.AuthorityKind) error {
	if kind != model.AuthorityX509 && kind != model.AuthorityJWT {
		return errkind.New(errkind.InvalidArgument, "unknown authority kind %q: use x509 or jwt", kind)
	}
	return nil
}

// retired reports whether an authority in state s no longer signs and is
// kept only until it expires.
func retired(s model.AuthorityState) bool {
	return s == model.StateOld || s == model.StateTainted || s == model.StateRevoked
}

// statesText joins states for an error message: "old or tainted".
func statesText(states []model.AuthorityState) string {
	s := ""
	for i, st := range states {
		if i > 0 {
			s += " or "
		}
		s += string(st)
	}
	return s
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	tr := t.Truncate(time.Second)
	if tr.Equal(t) {
		return tr
	}
	return tr.Add(time.Second)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
