package store_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/store"
)

func spiffeID(tb testing.TB, s string) spiffeid.ID {
	tb.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// testReopen writes through s, closes it, reopens the same database with
// reopen (migrations must be a no-op) and checks that everything is there.
func testReopen(t *testing.T, s *store.Store, reopen func() *store.Store) {
	t.Helper()
	ctx := t.Context()
	res, err := s.CreateEntries(ctx, []store.Entry{{
		SPIFFEID:  spiffeID(t, "spiffe://example.org/web"),
		ParentID:  spiffeID(t, "spiffe://example.org/node/a"),
		Selectors: []store.Selector{{Type: "unix", Value: "uid:1"}},
	}}, true)
	if err != nil {
		t.Fatalf("CreateEntries() error = %v", err)
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	for range 2 {
		s = reopen()
		got, err := s.GetEntry(ctx, res[0].Entry.ID)
		if err != nil {
			t.Fatalf("GetEntry() after reopen error = %v", err)
		}
		if got.Revision != rev || !got.CreatedAt.Equal(res[0].Entry.CreatedAt) {
			t.Errorf("entry after reopen = %+v, want %+v", got, res[0].Entry)
		}
		if r, _ := s.Revision(ctx); r != rev {
			t.Errorf("Revision() after reopen = %d, want %d", r, rev)
		}
		rep, err := s.VerifyAudit(ctx)
		if err != nil || !rep.OK || rep.Records != 1 {
			t.Errorf("VerifyAudit() after reopen = %+v, %v", rep, err)
		}
	}
}
