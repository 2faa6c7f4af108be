package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var replayTests = map[string]func(t *testing.T, s *store.Store){
	"FirstUseOnly":            testReplayFirstUseOnly,
	"ConcurrentOneWins":       testReplayConcurrentOneWins,
	"BatchIndependent":        testReplayBatchIndependent,
	"PruneForgetsExpired":     testReplayPrune,
	"BadInputInvalidArgument": testReplayBadInput,
}

func testReplayFirstUseOnly(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	if err := s.MarkTokenUsed(ctx, "https://issuer", "jti-1", exp); err != nil {
		t.Fatalf("MarkTokenUsed(first) = %v, want nil", err)
	}
	if err := s.MarkTokenUsed(ctx, "https://issuer", "jti-1", exp); !errors.Is(err, store.ErrReplayed) || errkind.Of(err) != errkind.AlreadyExists {
		t.Fatalf("MarkTokenUsed(again) = %v, want ErrReplayed (AlreadyExists)", err)
	}
	if err := s.MarkTokenUsed(ctx, "https://other", "jti-1", exp); err != nil {
		t.Fatalf("MarkTokenUsed(same id, other issuer) = %v, want nil", err)
	}
}

func testReplayConcurrentOneWins(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.MarkTokenUsed(ctx, "https://issuer", "contested", exp) }()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrReplayed):
			t.Fatalf("MarkTokenUsed = %v, want nil or ErrReplayed", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent uses of one token succeeded, want exactly 1", ok, n)
	}
}

// testReplayBatchIndependent: concurrent calls for distinct tokens (group
// committed together) all succeed, and a replay among them fails alone.
func testReplayBatchIndependent(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	if err := s.MarkTokenUsed(ctx, "iss", "used", exp); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("t-%d", i)
			if i == 7 {
				id = "used"
			}
			errs[i] = s.MarkTokenUsed(ctx, "iss", id, exp)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if want := i == 7; errors.Is(err, store.ErrReplayed) != want || (!want && err != nil) {
			t.Errorf("MarkTokenUsed(%d) = %v, replay want %v", i, err, want)
		}
	}
}

func testReplayPrune(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	now := time.Now()
	if err := s.MarkTokenUsed(ctx, "iss", "old", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkTokenUsed(ctx, "iss", "live", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneTokenReplay(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("PruneTokenReplay = %d, %v; want 1, nil", n, err)
	}
	if err := s.MarkTokenUsed(ctx, "iss", "live", now.Add(time.Hour)); !errors.Is(err, store.ErrReplayed) {
		t.Fatalf("unexpired token after prune: %v, want ErrReplayed", err)
	}
}

func testReplayBadInput(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct{ iss, id string }{{"", "x"}, {"x", ""}, {"x", strings.Repeat("a", store.MaxReplayKeyLen+1)}} {
		if err := s.MarkTokenUsed(ctx, tc.iss, tc.id, exp); errkind.Of(err) != errkind.InvalidArgument {
			t.Errorf("MarkTokenUsed(%q, %d bytes) = %v, want InvalidArgument", tc.iss, len(tc.id), err)
		}
	}
	if err := s.MarkTokenUsed(ctx, "x", "y", time.Time{}); errkind.Of(err) != errkind.InvalidArgument {
		t.Errorf("MarkTokenUsed(no expiry) = %v, want InvalidArgument", err)
	}
}
