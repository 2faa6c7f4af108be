package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

var tokenTests = map[string]func(t *testing.T, s *store.Store){
	"ConsumeOnce":       testTokenConsumeOnce,
	"FailuresLookAlike": testTokenFailuresLookAlike,
	"CreateErrors":      testTokenCreateErrors,
	"Prune":             testTokenPrune,
	"ConcurrentConsume": testTokenConcurrentConsume,
}

func tokenHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func testTokenConsumeOnce(t *testing.T, s *store.Store) {
	h := tokenHash("secret-1")
	in := store.JoinToken{Hash: h, SPIFFEID: id("spiffe://example.org/agent/a"), ExpiresAt: epoch.Add(time.Hour)}
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), in))
	got, err := s.ConsumeJoinToken(ctxFor(t), h, epoch)
	must(t, "ConsumeJoinToken", err)
	if string(got.Hash) != string(h) || got.SPIFFEID != in.SPIFFEID || !got.ExpiresAt.Equal(in.ExpiresAt) || got.CreatedAt.IsZero() {
		t.Errorf("ConsumeJoinToken() = %+v, want the created token", got)
	}
	_, err = s.ConsumeJoinToken(ctxFor(t), h, epoch)
	wantKind(t, "ConsumeJoinToken(again)", err, errkind.NotFound)

	recs := auditLog(t, s)
	ref := hex.EncodeToString(h)[:8]
	if got := actions(recs); len(got) != 2 || got[0] != "token.create "+ref || got[1] != "token.consume "+ref {
		t.Errorf("audit = %v, want token.create and token.consume of %s", got, ref)
	}
	for _, r := range recs {
		for _, v := range r.Detail {
			if strings.Contains(v, hex.EncodeToString(h)) {
				t.Errorf("audit record %v reveals the token hash", r)
			}
		}
	}
	if revision(t, s) != 2 {
		t.Errorf("Revision = %d, want 2 (create, consume)", revision(t, s))
	}
}

func testTokenFailuresLookAlike(t *testing.T, s *store.Store) {
	used, expired := tokenHash("used"), tokenHash("expired")
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: used, ExpiresAt: epoch.Add(time.Hour)}))
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: expired, ExpiresAt: epoch}))
	_, err := s.ConsumeJoinToken(ctxFor(t), used, epoch)
	must(t, "ConsumeJoinToken", err)
	rev := revision(t, s)
	var msgs []string
	for name, h := range map[string][]byte{"unknown": tokenHash("nope"), "used": used, "expired": expired, "short": {1, 2}} {
		_, err := s.ConsumeJoinToken(ctxFor(t), h, epoch)
		wantKind(t, "ConsumeJoinToken("+name+")", err, errkind.NotFound)
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Errorf("failure messages differ: %q vs %q; they must not tell which case it was", m, msgs[0])
		}
	}
	if revision(t, s) != rev {
		t.Errorf("failed consumption changed the revision")
	}
}

func testTokenCreateErrors(t *testing.T, s *store.Store) {
	h := tokenHash("x")
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: h, ExpiresAt: epoch}))
	wantKind(t, "CreateJoinToken(duplicate)",
		s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: h, ExpiresAt: epoch}), errkind.AlreadyExists)
	wantKind(t, "CreateJoinToken(short hash)",
		s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: []byte("token"), ExpiresAt: epoch}), errkind.InvalidArgument)
	wantKind(t, "CreateJoinToken(no expiry)",
		s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash("y")}), errkind.InvalidArgument)
}

func testTokenPrune(t *testing.T, s *store.Store) {
	for i, exp := range []time.Time{epoch.Add(-time.Hour), epoch, epoch.Add(time.Hour)} {
		must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash(string(rune('a' + i))), ExpiresAt: exp}))
	}
	n, err := s.PruneJoinTokens(t.Context(), epoch)
	must(t, "PruneJoinTokens", err)
	if n != 2 {
		t.Errorf("PruneJoinTokens() = %d, want 2 (expired at or before now)", n)
	}
	if _, err := s.ConsumeJoinToken(ctxFor(t), tokenHash("c"), epoch); err != nil {
		t.Errorf("ConsumeJoinToken(live) error = %v", err)
	}
}

func testTokenConcurrentConsume(t *testing.T, s *store.Store) {
	h := tokenHash("race")
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: h, ExpiresAt: epoch.Add(time.Hour)}))
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			_, errs[i] = s.ConsumeJoinToken(ctxFor(t), h, epoch)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errkind.Of(err) != errkind.NotFound:
			t.Errorf("ConsumeJoinToken() error = %v, want NotFound for losers", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d consumers won, want exactly 1", wins)
	}
	verifyOK(t, s)
}
