package storetest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var caKeyTests = map[string]func(t *testing.T, s *store.Store){
	"KEKCheckFirstWins":     testCAKEKFirstWins,
	"PutGetReplaceDelete":   testCAKeyLifecycle,
	"RotationClaimOneWins":  testCARotationClaim,
	"RotationClaimExpires":  testCARotationClaimExpires,
	"RotationClaimReleased": testCARotationClaimReleased,
}

func testCAKEKFirstWins(t *testing.T, s *store.Store) {
	first, err := s.EnsureCAKEK(ctxFor(t), "kek-a", []byte("check-a"))
	must(t, "EnsureCAKEK(a)", err)
	second, err := s.EnsureCAKEK(ctxFor(t), "kek-b", []byte("check-b"))
	must(t, "EnsureCAKEK(b)", err)
	if string(first) != "check-a" || string(second) != "check-a" {
		t.Errorf("EnsureCAKEK = %q, then %q; want the first check value both times", first, second)
	}
}

func testCAKeyLifecycle(t *testing.T, s *store.Store) {
	if _, err := s.CAKey(t.Context(), "x509-1"); !errkind.Is(err, errkind.NotFound) {
		t.Errorf("CAKey(unknown) = %v, want NotFound", err)
	}
	must(t, "PutCAKey", s.PutCAKey(ctxFor(t), "x509-1", "kek", []byte("sealed-1")))
	must(t, "PutCAKey(replace)", s.PutCAKey(ctxFor(t), "x509-1", "kek", []byte("sealed-2")))
	got, err := s.CAKey(t.Context(), "x509-1")
	must(t, "CAKey", err)
	if !bytes.Equal(got, []byte("sealed-2")) {
		t.Errorf("CAKey = %q, want the replacement", got)
	}
	for _, bad := range [][]byte{nil, make([]byte, 17<<10)} {
		if err := s.PutCAKey(ctxFor(t), "x509-2", "kek", bad); !errkind.Is(err, errkind.InvalidArgument) {
			t.Errorf("PutCAKey(%d bytes) = %v, want InvalidArgument", len(bad), err)
		}
	}
	must(t, "DeleteCAKey", s.DeleteCAKey(ctxFor(t), "x509-1"))
	must(t, "DeleteCAKey(again)", s.DeleteCAKey(ctxFor(t), "x509-1"))
	if _, err := s.CAKey(t.Context(), "x509-1"); !errkind.Is(err, errkind.NotFound) {
		t.Errorf("CAKey(deleted) = %v, want NotFound", err)
	}
}

func testCARotationClaim(t *testing.T, s *store.Store) {
	var wins atomic.Int32
	var wg sync.WaitGroup
	for _, h := range []string{"r1", "r2", "r3", "r4"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won, err := s.ClaimCARotation(t.Context(), h, epoch, epoch.Add(30*time.Second))
			if err != nil {
				t.Errorf("ClaimCARotation(%s): %v", h, err)
			}
			if won {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d of 4 racing replicas won the rotation claim, want exactly 1", n)
	}
}

func testCARotationClaimExpires(t *testing.T, s *store.Store) {
	claim := func(h string, at time.Time) bool {
		t.Helper()
		won, err := s.ClaimCARotation(t.Context(), h, at, at.Add(30*time.Second))
		must(t, "ClaimCARotation", err)
		return won
	}
	if !claim("r1", epoch) {
		t.Fatal("first claim lost")
	}
	if claim("r2", epoch.Add(10*time.Second)) {
		t.Error("r2 won while r1's claim runs")
	}
	if !claim("r1", epoch.Add(20*time.Second)) {
		t.Error("r1 could not renew its own claim")
	}
	if claim("r2", epoch.Add(49*time.Second)) {
		t.Error("r2 won before r1's renewed claim ended")
	}
	if !claim("r2", epoch.Add(50*time.Second)) {
		t.Error("r2 lost after r1's claim ended")
	}
	if _, err := s.ClaimCARotation(t.Context(), "", epoch, epoch); !errkind.Is(err, errkind.InvalidArgument) {
		t.Errorf("ClaimCARotation(no holder) = %v, want InvalidArgument", err)
	}
}

func testCARotationClaimReleased(t *testing.T, s *store.Store) {
	won, err := s.ClaimCARotation(t.Context(), "r1", epoch, epoch.Add(time.Hour))
	must(t, "ClaimCARotation(r1)", err)
	must(t, "ReleaseCARotation(r2)", s.ReleaseCARotation(t.Context(), "r2")) // not the holder: no effect
	if again, _ := s.ClaimCARotation(t.Context(), "r2", epoch, epoch.Add(time.Hour)); !won || again {
		t.Fatalf("claims r1 = %v, r2 = %v after a release by a non-holder; want r1 only", won, again)
	}
	must(t, "ReleaseCARotation(r1)", s.ReleaseCARotation(t.Context(), "r1"))
	if won, _ := s.ClaimCARotation(t.Context(), "r2", epoch, epoch.Add(time.Hour)); !won {
		t.Error("r2 lost the claim after r1 released it")
	}
}
