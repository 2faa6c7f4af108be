package storetest

import (
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

var revocationTests = map[string]func(t *testing.T, s *store.Store){
	"BySerial":            testRevokeSerial,
	"AgentSerial":         testRevokeAgentSerial,
	"BySPIFFEID":          testRevokeSPIFFEID,
	"UnknownIsNotFound":   testRevokeUnknown,
	"PruneForgetsExpired": testRevokePrune,
	"FeedEventsInOrder":   testFeedEvents,
}

// issue records an X509-SVID (serial != "") or JWT-SVID binding for spiffeID.
func issue(t *testing.T, s *store.Store, digest, serial, spiffeID string, exp time.Time) {
	t.Helper()
	err := s.RecordIssuance(ctxFor(t), store.Issuance{At: time.Now(), Bindings: []store.SVIDBinding{{
		Digest: model.SVIDDigest([]byte(digest)), EntryID: "e-" + digest, NodeID: "spiffe://example.org/node/a",
		ExpiresAt: exp, Serial: serial, SPIFFEID: spiffeID}}})
	must(t, "RecordIssuance", err)
}

func testRevokeSerial(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	issue(t, s, "a", "1f2e", "spiffe://example.org/web", exp)
	r, err := s.RevokeSerial(ctx, "1f2e")
	must(t, "RevokeSerial", err)
	if r.Serial != "1f2e" || r.SPIFFEID != "spiffe://example.org/web" || !r.ExpiresAt.Equal(exp) || r.Revision == 0 {
		t.Fatalf("RevokeSerial = %+v", r)
	}
	again, err := s.RevokeSerial(ctx, "1f2e")
	must(t, "RevokeSerial again", err)
	if again.Revision != r.Revision {
		t.Errorf("RevokeSerial again = %+v, want the first revocation %+v", again, r)
	}
	list, err := s.ListRevocations(ctx, time.Now())
	must(t, "ListRevocations", err)
	if len(list) != 1 || list[0].Serial != "1f2e" {
		t.Fatalf("ListRevocations = %+v, want the one revocation", list)
	}
	recs, err := s.ListAudit(ctx, store.AuditFilter{Action: store.ActionSVIDRevoke})
	must(t, "ListAudit", err)
	if len(recs) != 1 || recs[0].Object != "1f2e" || recs[0].Detail["spiffe_id"] != "spiffe://example.org/web" {
		t.Fatalf("audit = %+v, want one svid.revoke of 1f2e", recs)
	}
}

func testRevokeAgentSerial(t *testing.T, s *store.Store) {
	n := node("n1")
	n.SerialNumber = "abc1"
	n.CertNotAfter = time.Now().Add(time.Hour)
	_, err := s.CreateNode(ctxFor(t), n)
	must(t, "CreateNode", err)
	r, err := s.RevokeSerial(ctxFor(t), "abc1")
	must(t, "RevokeSerial", err)
	if r.SPIFFEID != n.SPIFFEID.String() {
		t.Fatalf("RevokeSerial(agent serial) = %+v, want the node's ID", r)
	}
	got, err := s.GetNode(ctxFor(t), n.SPIFFEID)
	must(t, "GetNode", err)
	if got.SerialNumber != "" {
		t.Errorf("node serial after revocation = %q, want it cleared (no reauth with a revoked key)", got.SerialNumber)
	}
}

func testRevokeSPIFFEID(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	issue(t, s, "x1", "aa01", "spiffe://example.org/db", exp)
	issue(t, s, "x2", "aa02", "spiffe://example.org/db", exp.Add(time.Minute))
	issue(t, s, "j1", "", "spiffe://example.org/db", exp.Add(2*time.Minute))
	issue(t, s, "other", "bb01", "spiffe://example.org/web", exp)
	rs, err := s.RevokeSPIFFEID(ctx, id("spiffe://example.org/db"))
	must(t, "RevokeSPIFFEID", err)
	var serials []string
	var jwt *store.Revocation
	for i, r := range rs {
		if r.Serial == "" {
			jwt = &rs[i]
			continue
		}
		serials = append(serials, r.Serial)
	}
	if len(serials) != 2 || jwt == nil || jwt.SPIFFEID != "spiffe://example.org/db" || jwt.ExpiresAt.Before(exp.Add(2*time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("RevokeSPIFFEID = %+v, want both serials and the ID's JWT row expiring with its last SVID", rs)
	}
	// Revoking again moves the ID's row forward and repeats no serial.
	rs, err = s.RevokeSPIFFEID(ctx, id("spiffe://example.org/db"))
	must(t, "RevokeSPIFFEID again", err)
	if len(rs) != 1 || rs[0].Serial != "" {
		t.Fatalf("RevokeSPIFFEID again = %+v, want only the ID's row", rs)
	}
	list, err := s.ListRevocations(ctx, time.Now())
	must(t, "ListRevocations", err)
	if len(list) != 3 {
		t.Fatalf("ListRevocations = %+v, want 3", list)
	}
}

func testRevokeUnknown(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	issue(t, s, "old", "dead", "spiffe://example.org/web", time.Now().Add(-time.Second))
	for _, serial := range []string{"beef", "dead"} {
		if _, err := s.RevokeSerial(ctx, serial); !errkind.Is(err, errkind.NotFound) {
			t.Errorf("RevokeSerial(%q) = %v, want NotFound", serial, err)
		}
	}
	if _, err := s.RevokeSerial(ctx, ""); !errkind.Is(err, errkind.InvalidArgument) {
		t.Errorf("RevokeSerial(\"\") = %v, want InvalidArgument", err)
	}
	if _, err := s.RevokeSPIFFEID(ctx, id("spiffe://example.org/nobody")); !errkind.Is(err, errkind.NotFound) {
		t.Errorf("RevokeSPIFFEID(unknown) = %v, want NotFound", err)
	}
	list, err := s.ListRevocations(ctx, time.Now())
	must(t, "ListRevocations", err)
	if len(list) != 0 {
		t.Fatalf("ListRevocations = %+v after refused revocations, want none", list)
	}
}

func testRevokePrune(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	exp := time.Now().Add(time.Hour)
	issue(t, s, "a", "0c", "spiffe://example.org/web", exp)
	_, err := s.RevokeSerial(ctx, "0c")
	must(t, "RevokeSerial", err)
	if n, err := s.PruneRevocations(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("PruneRevocations(now) = %d, %v, want 0", n, err)
	}
	if n, err := s.PruneRevocations(ctx, exp.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("PruneRevocations(after expiry) = %d, %v, want 1", n, err)
	}
	list, err := s.ListRevocations(ctx, time.Now())
	must(t, "ListRevocations", err)
	if len(list) != 0 {
		t.Fatalf("ListRevocations after prune = %+v", list)
	}
}

func testFeedEvents(t *testing.T, s *store.Store) {
	ctx := ctxFor(t)
	head, err := s.AuditHead(ctx)
	must(t, "AuditHead", err)
	n1, n2 := node("n1"), node("n2")
	n2.SerialNumber = "0b"
	for _, n := range []store.Node{n1, n2} {
		_, err := s.CreateNode(ctx, n)
		must(t, "CreateNode", err)
	}
	_, err = s.SetNodeBanned(ctx, n1.SPIFFEID, true)
	must(t, "SetNodeBanned", err)
	issue(t, s, "a", "0d", "spiffe://example.org/web", time.Now().Add(time.Hour))
	_, err = s.RevokeSerial(ctx, "0d")
	must(t, "RevokeSerial", err)
	must(t, "DeleteNode", s.DeleteNode(ctx, n2.SPIFFEID))
	evs, next, err := s.FeedEvents(ctx, head)
	must(t, "FeedEvents", err)
	var got []string
	for _, e := range evs {
		got = append(got, e.Action+" "+e.Object)
	}
	want := []string{"node.ban " + n1.SPIFFEID.String(), "svid.revoke 0d", "node.evict " + n2.SPIFFEID.String()}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("FeedEvents = %q, want %q", got, want)
	}
	if evs, again, err := s.FeedEvents(ctx, next); err != nil || len(evs) != 0 || again != next {
		t.Fatalf("FeedEvents(next) = %v, %d, %v; want nothing new at %d", evs, again, err, next)
	}
}
