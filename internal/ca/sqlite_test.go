package ca

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// TestWithSQLiteStore runs restart and a rotation cycle against the real
// embedded store, whose times and ordering must round-trip what the CA
// relies on.
func TestWithSQLiteStore(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testEpoch}
	st, err := store.Open(ctx, store.Config{DSN: filepath.Join(t.TempDir(), "signet.db"), Now: clock.Now})
	if err != nil {
		t.Fatalf("store.Open() = %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg := Config{TrustDomain: testTD, DataDir: t.TempDir(), ServerID: "server-1", Store: st, Now: clock.Now}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Init(ctx); err != nil {
		t.Fatalf("Init() = %v", err)
	}
	first := m.activeID(model.AuthorityX509)
	csr := newCSR(t, newP256(t), nil)
	old, err := m.SignX509SVID(ctx, csr, X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	// A restarted manager finds the same authorities.
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatalf("Init() after restart = %v", err)
	}
	if got := m2.activeID(model.AuthorityX509); got != first {
		t.Fatalf("active after restart = %s, want %s", got, first)
	}

	// One rotation cycle: prepared at 12h, active at 20h, old one deleted at 24h.
	for _, at := range []time.Duration{12 * time.Hour, 20 * time.Hour, 24 * time.Hour} {
		clock.Set(testEpoch.Add(at))
		if err := m2.Rotate(ctx); err != nil {
			t.Fatalf("Rotate() at +%s = %v", at, err)
		}
		auths, err := st.ListAuthorities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := BundleFromAuthorities(testTD, auths, 1)
		if err != nil {
			t.Fatal(err)
		}
		if at == 20*time.Hour {
			verifyX509(t, old, b, testEpoch.Add(30*time.Minute)) // old CA still published
		}
		chain, err := m2.SignX509SVID(ctx, csr, X509Params{ID: workload, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		verifyX509(t, chain, b, clock.Now())
	}
	if got := m2.activeID(model.AuthorityX509); got == first {
		t.Error("no rotation after a full lifetime")
	}
	auths, _ := st.ListAuthorities(ctx)
	for _, a := range auths {
		if a.ID == first {
			t.Errorf("expired authority %s still stored (%s)", a.ID, a.State)
		}
	}
}
