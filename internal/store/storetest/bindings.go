package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

var bindingTests = map[string]func(t *testing.T, s *store.Store){
	"RecordAndLookUp":         testBindingsRecordAndLookUp,
	"ConcurrentIssuances":     testBindingsConcurrent,
	"PruneForgetsExpired":     testBindingsPrune,
	"BadInputWritesNothing":   testBindingsBadInput,
	"UnknownDigestIsNotFound": testBindingsNotFound,
}

func binding(i int, node string, exp time.Time) store.SVIDBinding {
	return store.SVIDBinding{Digest: model.SVIDDigest(fmt.Appendf(nil, "svid-%d", i)), EntryID: fmt.Sprintf("entry-%d", i),
		NodeID: node, ExpiresAt: exp}
}

func testBindingsRecordAndLookUp(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	// 80 bindings in one issuance: past the batch size at which PostgreSQL
	// writes use COPY.
	iss := store.Issuance{At: time.Now(), Records: []store.AuditRecord{{Action: "svid.x509.sign", Object: "batch"}}}
	for i := range 80 {
		node := "spiffe://example.org/node/a"
		if i%2 == 1 {
			node = "" // issued without a node (a CI job)
		}
		iss.Bindings = append(iss.Bindings, binding(i, node, exp))
	}
	if err := s.RecordIssuance(ctx, iss); err != nil {
		t.Fatalf("RecordIssuance: %v", err)
	}
	for _, want := range iss.Bindings {
		got, err := s.SVIDBinding(ctx, want.Digest)
		if err != nil {
			t.Fatalf("SVIDBinding(%s): %v", want.EntryID, err)
		}
		if got.EntryID != want.EntryID || got.NodeID != want.NodeID || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Digest != want.Digest {
			t.Fatalf("SVIDBinding = %+v, want %+v", got, want)
		}
	}
}

func testBindingsConcurrent(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.RecordIssuance(ctx, store.Issuance{At: time.Now(), Issued: nil,
				Records:  []store.AuditRecord{{Action: "svid.jwt.sign", Object: fmt.Sprint(i)}},
				Bindings: []store.SVIDBinding{binding(i, "spiffe://example.org/node/b", exp)}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("RecordIssuance %d: %v", i, err)
		}
		if _, err := s.SVIDBinding(ctx, binding(i, "", exp).Digest); err != nil {
			t.Fatalf("SVIDBinding %d: %v", i, err)
		}
	}
}

func testBindingsPrune(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	now := time.Now()
	old, live := binding(1, "spiffe://example.org/node/a", now.Add(-time.Minute)), binding(2, "spiffe://example.org/node/a", now.Add(time.Hour))
	if err := s.RecordIssuance(ctx, store.Issuance{At: now, Bindings: []store.SVIDBinding{old, live}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneSVIDBindings(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("PruneSVIDBindings = %d, %v; want 1, nil", n, err)
	}
	if _, err := s.SVIDBinding(ctx, old.Digest); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("SVIDBinding(pruned) = %v, want NotFound", err)
	}
	if _, err := s.SVIDBinding(ctx, live.Digest); err != nil {
		t.Fatalf("SVIDBinding(live) = %v, want it kept", err)
	}
}

func testBindingsBadInput(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	good := binding(1, "spiffe://example.org/node/a", exp)
	for name, bad := range map[string]store.SVIDBinding{
		"short digest": {Digest: "abc", EntryID: "e", ExpiresAt: exp},
		"no entry":     {Digest: good.Digest, ExpiresAt: exp},
		"no expiry":    {Digest: good.Digest, EntryID: "e"},
	} {
		err := s.RecordIssuance(ctx, store.Issuance{At: time.Now(), Records: []store.AuditRecord{{Action: "svid.x509.sign", Object: name}},
			Bindings: []store.SVIDBinding{good, bad}})
		if errkind.Of(err) != errkind.InvalidArgument {
			t.Errorf("RecordIssuance(%s) = %v, want InvalidArgument", name, err)
		}
	}
	if _, err := s.SVIDBinding(ctx, good.Digest); !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("a refused issuance left its valid binding behind: %v", err)
	}
	recs, err := s.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("a refused issuance left %d audit records", len(recs))
	}
}

func testBindingsNotFound(t *testing.T, s *store.Store) {
	_, err := s.SVIDBinding(ctxFor(t), model.SVIDDigest([]byte("never issued")))
	if !errkind.Is(err, errkind.NotFound) {
		t.Fatalf("SVIDBinding(unknown) = %v, want NotFound", err)
	}
}
