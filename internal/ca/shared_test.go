package ca

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/model"
)

// claimStore is memStore with the rotation claim, as the SQL store has it.
type claimStore struct {
	*memStore
	cmu    sync.Mutex
	holder string
	until  time.Time
	claims map[string]int // won claims per holder
}

func (s *claimStore) ClaimCARotation(_ context.Context, holder string, now, until time.Time) (bool, error) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.holder != holder && now.Before(s.until) {
		return false, nil
	}
	s.holder, s.until = holder, until
	s.claims[holder]++
	return true, nil
}

func (s *claimStore) ReleaseCARotation(_ context.Context, holder string) error {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.holder == holder {
		s.holder, s.until = "", time.Time{}
	}
	return nil
}

// sharedKeys is memKeys marked as shared by every replica.
type sharedKeys struct{ *memKeys }

func (sharedKeys) SharedByReplicas() {}

var (
	_ RotationClaimer  = (*claimStore)(nil)
	_ SharedKeyManager = sharedKeys{}
)

// replicas starts n Managers over one store and one shared key manager,
// on one fake clock, initialized concurrently.
func replicas(t *testing.T, n int) ([]*Manager, *claimStore, *fakeClock) {
	t.Helper()
	st := &claimStore{memStore: newMemStore(), claims: map[string]int{}}
	keys := sharedKeys{newMemKeys()}
	clock := &fakeClock{t: testEpoch}
	ms := make([]*Manager, n)
	var wg sync.WaitGroup
	for i := range ms {
		m, err := New(Config{TrustDomain: testTD, ServerID: "replica-" + string(rune('a'+i)), Store: st, KeyManager: keys,
			Now: clock.Now, CATTL: time.Hour, JWTKeyTTL: time.Hour})
		if err != nil {
			t.Fatalf("New() = %v", err)
		}
		ms[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Init(t.Context()); err != nil {
				t.Errorf("Init(replica %d) = %v", i, err)
			}
		}()
	}
	wg.Wait()
	return ms, st, clock
}

// count returns how many authorities of kind the store holds in state.
func count(t *testing.T, st *claimStore, kind model.AuthorityKind, state model.AuthorityState) int {
	t.Helper()
	auths, _ := st.ListAuthorities(t.Context())
	n := 0
	for _, a := range auths {
		if a.Kind == kind && a.State == state {
			if a.ServerID != SharedServerID {
				t.Errorf("authority %s/%s owned by %q, want %q", a.Kind, a.ID, a.ServerID, SharedServerID)
			}
			n++
		}
	}
	return n
}

// sameSigners fails unless every replica signs with the same authorities.
func sameSigners(t *testing.T, ms []*Manager) {
	t.Helper()
	defer func() {
		if t.Failed() {
			auths, _ := ms[0].store.ListAuthorities(t.Context())
			for _, a := range auths {
				t.Logf("store: %s %s %s", a.Kind, a.ID, a.State)
			}
		}
	}()
	for _, kind := range kinds {
		for i, m := range ms[1:] {
			if got, want := m.activeID(kind), ms[0].activeID(kind); got != want || got == "" {
				t.Errorf("replica %d signs with %s authority %q, replica 0 with %q", i+1, kind, got, want)
			}
		}
	}
}

// rotateAll runs Rotate on every replica at once, several times, then
// Follow on each, as the server does when it sees the authorities change
// (a replica that lost every claim may have looked before the winner wrote).
func rotateAll(t *testing.T, ms []*Manager) {
	t.Helper()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if err := m.Rotate(t.Context()); err != nil {
					t.Errorf("Rotate() = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for _, m := range ms {
		if err := m.Follow(t.Context()); err != nil {
			t.Errorf("Follow() = %v", err)
		}
	}
}

// TestSharedRotationOncePerStep: three replicas with a shared key manager
// start together, rotate together through a whole lifetime, and there is
// one authority per step, owned by the trust domain; all replicas sign
// with the same one.
func TestSharedRotationOncePerStep(t *testing.T) {
	ms, st, clock := replicas(t, 3)
	for _, kind := range kinds {
		if n := count(t, st, kind, model.StateActive); n != 1 {
			t.Fatalf("after concurrent Init: %d active %s authorities, want 1", n, kind)
		}
	}
	sameSigners(t, ms)
	first := ms[0].activeID(model.AuthorityX509)

	clock.Add(31 * time.Minute) // past half of the 1h lifetime: prepare
	rotateAll(t, ms)
	for _, kind := range kinds {
		if n := count(t, st, kind, model.StatePrepared); n != 1 {
			t.Errorf("after the prepare point: %d prepared %s authorities, want 1", n, kind)
		}
	}
	clock.Add(20 * time.Minute) // past 5/6: activate
	rotateAll(t, ms)
	for _, kind := range kinds {
		if a, o, p := count(t, st, kind, model.StateActive), count(t, st, kind, model.StateOld), count(t, st, kind, model.StatePrepared); a != 1 || o != 1 || p != 0 {
			t.Errorf("after the activation point: %s authorities active %d, old %d, prepared %d; want 1, 1, 0", kind, a, o, p)
		}
	}
	sameSigners(t, ms)
	if ms[1].activeID(model.AuthorityX509) == first {
		t.Error("replicas still sign with the first x509 authority after activation")
	}
}

// TestSharedManualTransitionsFollowed: an operator's prepare and activate on
// one replica is what every replica signs with once it follows the store.
func TestSharedManualTransitionsFollowed(t *testing.T) {
	ms, st, _ := replicas(t, 2)
	p, err := ms[1].Prepare(t.Context(), model.AuthorityX509)
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	if _, err := ms[0].Prepare(t.Context(), model.AuthorityX509); err == nil {
		t.Error("Prepare on the other replica succeeded while one is prepared for the trust domain")
	}
	if _, err := ms[0].Activate(t.Context(), model.AuthorityX509); err != nil {
		t.Fatalf("Activate() on the other replica = %v", err)
	}
	if err := ms[1].Follow(t.Context()); err != nil {
		t.Fatalf("Follow() = %v", err)
	}
	sameSigners(t, ms)
	if got := ms[1].activeID(model.AuthorityX509); got != p.ID {
		t.Errorf("replica 1 signs with %s, want the activated %s", got, p.ID)
	}
	if n := count(t, st, model.AuthorityX509, model.StateActive); n != 1 {
		t.Errorf("%d active x509 authorities, want 1", n)
	}
}

// TestSharedNeedsClaimingStore: a shared key manager over a store without
// the rotation claim is refused.
func TestSharedNeedsClaimingStore(t *testing.T) {
	_, err := New(Config{TrustDomain: testTD, ServerID: "r", Store: newMemStore(), KeyManager: sharedKeys{newMemKeys()}})
	if err == nil {
		t.Fatal("New(shared keys, store without claim) succeeded")
	}
}
