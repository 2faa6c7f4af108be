package storetest

import (
	"testing"
	"time"

	"github.com/signet-id/signet/internal/store"
)

var revisionTests = map[string]func(t *testing.T, s *store.Store){
	"EveryMutationBumpsOnce": testRevisionBumps,
	"PingAndDriver":          testPingAndDriver,
}

func testRevisionBumps(t *testing.T, s *store.Store) {
	if rev := revision(t, s); rev != 0 {
		t.Fatalf("Revision() of a fresh store = %d, want 0", rev)
	}
	var e store.Entry
	var n store.Node
	steps := []struct {
		name string
		do   func() error
		bump bool
	}{
		{"create entries", func() error { e = create(t, s, entry("a", "n1"), entry("b", "n1"))[0]; return nil }, true},
		{"update entry", func() error { _, err := s.UpdateEntry(ctxFor(t), e); return err }, true},
		{"touch entries", func() error { return s.TouchEntries(t.Context(), []string{e.ID}, epoch) }, false},
		{"delete entries", func() error { _, err := s.DeleteEntries(ctxFor(t), []string{e.ID}); return err }, true},
		{"prune tombstones", func() error { _, err := s.PruneTombstones(t.Context(), epoch); return err }, false},
		{"create node", func() error { var err error; n, err = s.CreateNode(ctxFor(t), node("n1")); return err }, true},
		{"renew node", func() error { return s.RenewNodeSVID(ctxFor(t), n.SPIFFEID, "ee", epoch) }, true},
		{"promote node serial", func() error { _, err := s.PromoteNodeSerial(ctxFor(t), n.SPIFFEID, "ee", epoch); return err }, true},
		{"ban node", func() error { _, err := s.SetNodeBanned(ctxFor(t), n.SPIFFEID, true); return err }, true},
		{"touch node", func() error { return s.TouchNode(t.Context(), n.SPIFFEID, epoch) }, false},
		{"delete node", func() error { return s.DeleteNode(ctxFor(t), n.SPIFFEID) }, true},
		{"create token", func() error {
			return s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash("t"), ExpiresAt: epoch.Add(time.Hour)})
		}, true},
		{"consume token", func() error { _, err := s.ConsumeJoinToken(ctxFor(t), tokenHash("t"), epoch); return err }, true},
		{"prune tokens", func() error { _, err := s.PruneJoinTokens(t.Context(), epoch); return err }, false},
		{"put authority", func() error {
			return s.PutAuthority(ctxFor(t), authority(store.AuthorityJWT, "k", store.StateActive))
		}, true},
		{"delete authority", func() error { return s.DeleteAuthority(ctxFor(t), store.AuthorityJWT, "k") }, true},
		{"append audit", func() error { return s.AppendAudit(t.Context(), store.AuditRecord{Action: "x"}) }, false},
	}
	for _, st := range steps {
		before := revision(t, s)
		must(t, st.name, st.do())
		want := before
		if st.bump {
			want++
		}
		if got := revision(t, s); got != want {
			t.Errorf("after %s: Revision() = %d, want %d", st.name, got, want)
		}
	}
	verifyOK(t, s)
}

func testPingAndDriver(t *testing.T, s *store.Store) {
	must(t, "Ping", s.Ping(t.Context()))
	if d := s.Driver(); d != store.DriverSQLite && d != store.DriverPostgres {
		t.Errorf("Driver() = %q", d)
	}
}
