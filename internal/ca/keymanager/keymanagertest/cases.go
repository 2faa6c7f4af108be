package keymanagertest

import (
	"context"
	"crypto"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/errkind"
)

func testGenerateAndGet(t *testing.T, s *suite) {
	km := s.open(t)
	for _, kt := range keyTypes {
		t.Run(kt, func(t *testing.T) {
			if kt == ca.KeyTypeRSA4096 && testing.Short() {
				t.Skip("RSA-4096 generation is slow; skipped with -short")
			}
			id := "x509-" + strings.ReplaceAll(kt, "-", "_")
			k := s.generate(t, km, id, kt)
			checkType(t, k, kt)
			checkSigns(t, k, k.Public())
			got := get(t, km, id)
			if !samePublic(k, got) {
				t.Errorf("GetKey(%q) returned another key than GenerateKey", id)
			}
			checkSigns(t, got, k.Public())
		})
	}
	// Keys of different ids are independent.
	a := s.generate(t, km, "jwt-a", ca.KeyTypeECP256)
	b := s.generate(t, km, "jwt-b", ca.KeyTypeECP256)
	if samePublic(a, b) {
		t.Fatal("two GenerateKey calls returned the same key")
	}
	if !samePublic(get(t, km, "jwt-a"), a) || !samePublic(get(t, km, "jwt-b"), b) {
		t.Error("GetKey mixes up keys of different ids")
	}
}

func testGetAfterReopen(t *testing.T, s *suite) {
	km := s.open(t)
	ec := s.generate(t, km, "x509-0123456789abcdef", ca.KeyTypeECP256)
	rs := s.generate(t, km, "jwt-Ab_9-x", ca.KeyTypeRSA2048)

	again := s.open(t)
	for id, want := range map[string]crypto.Signer{"x509-0123456789abcdef": ec, "jwt-Ab_9-x": rs} {
		got := get(t, again, id)
		if !samePublic(got, want) {
			t.Errorf("GetKey(%q) after reopening = another key", id)
		}
		checkSigns(t, got, want.Public())
	}
	// A deletion by one manager is seen by the other.
	if err := again.DeleteKey(context.Background(), "jwt-Ab_9-x"); err != nil {
		t.Fatalf("DeleteKey() = %v", err)
	}
	_, err := km.GetKey(context.Background(), "jwt-Ab_9-x")
	wantKind(t, "GetKey(deleted by another manager)", err, errkind.NotFound)
}

func testReplace(t *testing.T, s *suite) {
	km := s.open(t)
	first := s.generate(t, km, "x509-slot", ca.KeyTypeECP256)
	second := s.generate(t, km, "x509-slot", ca.KeyTypeECP384)
	if samePublic(first, second) {
		t.Fatal("GenerateKey over an existing id returned the old key")
	}
	got := get(t, km, "x509-slot")
	if !samePublic(got, second) {
		t.Error("GetKey after a replacing GenerateKey = the old key")
	}
	checkType(t, got, ca.KeyTypeECP384)
	if got := get(t, s.open(t), "x509-slot"); !samePublic(got, second) {
		t.Error("GetKey after reopening = the replaced key")
	}
}

func testDelete(t *testing.T, s *suite) {
	ctx := context.Background()
	km := s.open(t)
	s.generate(t, km, "x509-gone", ca.KeyTypeECP256)
	keep := s.generate(t, km, "x509-kept", ca.KeyTypeECP256)
	if err := km.DeleteKey(ctx, "x509-gone"); err != nil {
		t.Fatalf("DeleteKey() = %v", err)
	}
	_, err := km.GetKey(ctx, "x509-gone")
	wantKind(t, "GetKey(deleted)", err, errkind.NotFound)
	if err := km.DeleteKey(ctx, "x509-gone"); err != nil {
		t.Errorf("DeleteKey(already deleted) = %v, want nil", err)
	}
	if err := km.DeleteKey(ctx, "never-created"); err != nil {
		t.Errorf("DeleteKey(never created) = %v, want nil", err)
	}
	if !samePublic(get(t, km, "x509-kept"), keep) {
		t.Error("DeleteKey removed or changed another key")
	}
	_, err = s.open(t).GetKey(ctx, "x509-gone")
	wantKind(t, "GetKey(deleted) after reopening", err, errkind.NotFound)
}

func testUnknownKey(t *testing.T, s *suite) {
	km := s.open(t)
	_, err := km.GetKey(context.Background(), "x509-never")
	wantKind(t, "GetKey(unknown)", err, errkind.NotFound)
	s.generate(t, km, "x509-other", ca.KeyTypeECP256)
	_, err = km.GetKey(context.Background(), "x509-never")
	wantKind(t, "GetKey(unknown, other keys exist)", err, errkind.NotFound)
}

func testInvalidID(t *testing.T, s *suite) {
	ctx := context.Background()
	km := s.open(t)
	s.generate(t, km, "x509-real", ca.KeyTypeECP256)
	for _, id := range []string{"", "../x509-real", "a/b", `a\b`, "a.b", "x y", "é", strings.Repeat("a", 129), "x509-real\x00"} {
		_, err := km.GenerateKey(ctx, id, ca.KeyTypeECP256)
		wantKind(t, fmt.Sprintf("GenerateKey(%q)", id), err, errkind.InvalidArgument)
		_, err = km.GetKey(ctx, id)
		wantKind(t, fmt.Sprintf("GetKey(%q)", id), err, errkind.InvalidArgument)
		wantKind(t, fmt.Sprintf("DeleteKey(%q)", id), km.DeleteKey(ctx, id), errkind.InvalidArgument)
	}
	get(t, km, "x509-real") // untouched by the attempts
	if !ca.ValidKeyID(strings.Repeat("a", 128)) {
		t.Fatal("ValidKeyID refuses a 128-character id")
	}
	s.generate(t, km, strings.Repeat("a", 128), ca.KeyTypeECP256)
}

func testUnknownKeyType(t *testing.T, s *suite) {
	ctx := context.Background()
	km := s.open(t)
	for _, kt := range []string{"", "dsa-1024", "EC-P256", "ed25519"} {
		_, err := km.GenerateKey(ctx, "x509-typed", kt)
		wantKind(t, fmt.Sprintf("GenerateKey(key type %q)", kt), err, errkind.InvalidArgument)
	}
	_, err := km.GetKey(ctx, "x509-typed")
	wantKind(t, "GetKey(after failed generations)", err, errkind.NotFound)
}

// testConcurrent runs generation, reads and deletions of many keys at
// once, through two managers over the same storage; each goroutine checks
// what it sees. A shared key is read throughout and must never change.
func testConcurrent(t *testing.T, s *suite) {
	ctx := context.Background()
	kms := []ca.KeyManager{s.open(t), s.open(t)}
	shared := s.generate(t, kms[0], "jwt-shared", ca.KeyTypeECP256)
	const workers, rounds = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			km := kms[w%2]
			other := kms[(w+1)%2]
			for r := range rounds {
				id := fmt.Sprintf("x509-w%d-r%d", w, r)
				k, err := km.GenerateKey(ctx, id, ca.KeyTypeECP256)
				if err != nil {
					errs <- fmt.Errorf("GenerateKey(%q) = %w", id, err)
					continue
				}
				got, err := other.GetKey(ctx, id)
				if err != nil || !samePublic(got, k) {
					errs <- fmt.Errorf("GetKey(%q) through the other manager = %v, same key %t", id, err, err == nil && samePublic(got, k))
				}
				sh, err := km.GetKey(ctx, "jwt-shared")
				if err != nil || !samePublic(sh, shared) {
					errs <- fmt.Errorf("GetKey(shared) during concurrent use = %v, same key %t", err, err == nil && samePublic(sh, shared))
				}
				if r%2 == 1 {
					if err := other.DeleteKey(ctx, id); err != nil {
						errs <- fmt.Errorf("DeleteKey(%q) = %w", id, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range workers {
		for r := range rounds {
			id := fmt.Sprintf("x509-w%d-r%d", w, r)
			_, err := kms[0].GetKey(ctx, id)
			if r%2 == 1 {
				wantKind(t, fmt.Sprintf("GetKey(%q) after its deletion", id), err, errkind.NotFound)
			} else if err != nil {
				t.Errorf("GetKey(%q) after concurrent use = %v", id, err)
			}
		}
	}
}
