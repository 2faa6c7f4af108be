package ca

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// One CA for every replica (a SharedKeyManager). All replicas sign with the
// trust domain's active authorities; only the replica holding the store's
// rotation claim changes them (a rotation step, an operator's prepare,
// activate, taint or revoke), and it lists the authorities only after it
// won the claim, so a step another replica already took is seen and not
// repeated. The others follow: at every rotation tick, and when the server
// sees the authority set change (Follow), they load the active authorities
// from the store and switch their signers.

// claimTTL is how long a rotation claim lasts unless released: far longer
// than any step (a step generates at most one RSA-4096 key and writes a few
// rows), so a claim never lapses under a live holder, and short enough that
// a replica killed holding it delays rotation by no more than that.
const claimTTL = 30 * time.Second

// claimWait bounds how long Init and the operator's transitions wait for
// another replica's claim to end.
const claimWait = 2 * claimTTL

// claimPoll is how often a waiting replica tries the claim again.
const claimPoll = 100 * time.Millisecond

// claim tries the rotation claim once.
func (m *Manager) claim(ctx context.Context) (bool, error) {
	now := m.now()
	won, err := m.claimer.ClaimCARotation(ctx, m.replica, now, now.Add(claimTTL))
	if err != nil {
		return false, fmt.Errorf("claim ca rotation: %w", err)
	}
	return won, nil
}

// release ends this replica's claim; a failure only delays the next
// claimant until the claim expires, so it is logged, not returned.
func (m *Manager) release(ctx context.Context) {
	if err := m.claimer.ReleaseCARotation(context.WithoutCancel(ctx), m.replica); err != nil {
		m.log.Warn("release ca rotation claim; another replica can rotate when it expires", logError, err)
	}
}

// withClaim runs fn holding the rotation claim, waiting up to claimWait for
// another replica's to end (Unavailable after that). Without a claimer (a
// per-replica key manager) fn runs at once. Callers hold mu.
func (m *Manager) withClaim(ctx context.Context, op string, fn func() error) error {
	if m.claimer == nil {
		return fn()
	}
	deadline := time.Now().Add(claimWait)
	for {
		won, err := m.claim(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		if won {
			defer m.release(ctx)
			return fn()
		}
		if time.Now().After(deadline) {
			return errkind.New(errkind.Unavailable,
				"%s: another server replica is changing the trust domain's authorities: retry in a few seconds", op)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(claimPoll):
		}
	}
}

// initShared is Init with a shared key manager: the replica that wins the
// claim creates or rotates the authorities; the others wait until the
// active ones exist and follow them.
func (m *Manager) initShared(ctx context.Context) error {
	deadline := time.Now().Add(claimWait)
	for {
		won, err := m.claim(ctx)
		if err != nil {
			return fmt.Errorf("init ca: %w", err)
		}
		if won {
			err := m.initLocked(ctx)
			m.release(ctx)
			return err
		}
		if err := m.followLocked(ctx); err != nil {
			return fmt.Errorf("init ca: %w", err)
		}
		if m.x509.Load() != nil && m.jwt.Load() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errkind.New(errkind.Unavailable,
				"init ca: another server replica holds the rotation claim and the trust domain has no active authorities yet")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(claimPoll):
		}
	}
}

// Follow loads the trust domain's active authorities from the store and
// signs with them from now on, when another replica changed them. It does
// nothing with a per-replica key manager, nor while this Manager is busy
// rotating (it never blocks on that). The server calls it whenever the
// set of authorities in the store changes.
func (m *Manager) Follow(ctx context.Context) error {
	if m.claimer == nil {
		return nil
	}
	// Never wait behind a rotation step or an operator's transition (which
	// may wait for another replica's claim): whoever holds mu publishes
	// what it changes, and the next tick follows the rest.
	if !m.mu.TryLock() {
		return nil
	}
	defer m.mu.Unlock()
	return m.followLocked(ctx)
}

// followLocked switches the signers to the newest active authority of each
// kind in the store and drops the keys of authorities that no longer sign
// or may sign. It writes nothing. Callers hold mu.
func (m *Manager) followLocked(ctx context.Context) error {
	auths, err := m.store.ListAuthorities(ctx)
	if err != nil {
		return fmt.Errorf("follow authorities: %w", err)
	}
	var errs []error
	for _, kind := range kinds {
		a, ok := m.find(auths, kind, model.StateActive)
		if !ok || m.activeID(kind) == a.ID {
			continue
		}
		publish, err := m.signerFor(ctx, a)
		if err != nil {
			errs = append(errs, fmt.Errorf("follow %s authority %s: %w", kind, a.ID, err))
			continue
		}
		publish()
		m.logSigning(a)
	}
	for ref := range m.loaded {
		current := slices.ContainsFunc(auths, func(a model.Authority) bool {
			return string(a.Kind)+"/"+a.ID == ref && a.ServerID == m.serverID &&
				(a.State == model.StateActive || a.State == model.StatePrepared)
		})
		if !current { // a signer in use keeps its own copy of the key
			delete(m.loaded, ref)
		}
	}
	return errors.Join(errs...)
}

// logSigning logs that minting switched to authority a, which another
// replica (or an earlier run) activated.
func (m *Manager) logSigning(a model.Authority) {
	m.log.Info("signing with the active authority", logKind, a.Kind, logID, a.ID, logServerID, a.ServerID)
}
