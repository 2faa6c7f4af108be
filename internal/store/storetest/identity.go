package storetest

import (
	"testing"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// identityTests check that an entry never carries a node's identity and a
// node never an entry's (internal/store/identity.go), inside the write
// transaction.
var identityTests = map[string]func(t *testing.T, s *store.Store){
	"EntryNotANode":         testEntryNotANode,
	"EntryNotAPendingToken": testEntryNotAPendingToken,
	"TokenNotAnEntry":       testTokenNotAnEntry,
	"NewNodeNotAnEntry":     testNewNodeNotAnEntry,
}

func testEntryNotANode(t *testing.T, s *store.Store) {
	n := node("n1")
	_, err := s.AdmitNode(ctxFor(t), n)
	must(t, "AdmitNode", err)
	e := entry("web", "n1")
	e.SPIFFEID = n.SPIFFEID
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{entry("ok", "n1"), e}, false)
	must(t, "CreateEntries", err)
	if res[0].Err != nil {
		t.Errorf("CreateEntries[0] = %v, want it created", res[0].Err)
	}
	wantKind(t, "CreateEntries(node's id)", res[1].Err, errkind.AlreadyExists)
	_, err = s.CreateEntries(ctxFor(t), []store.Entry{entry("ok2", "n1"), e}, true)
	wantKind(t, "CreateEntries(atomic, node's id)", err, errkind.FailedPrecondition)

	created, err := s.CreateEntries(ctxFor(t), []store.Entry{entry("movable", "n1")}, false)
	must(t, "CreateEntries", err)
	moved := created[0].Entry
	moved.SPIFFEID = n.SPIFFEID
	_, err = s.UpdateEntry(ctxFor(t), moved)
	wantKind(t, "UpdateEntry(to a node's id)", err, errkind.AlreadyExists)
}

func testEntryNotAPendingToken(t *testing.T, s *store.Store) {
	tokID := id("spiffe://example.org/node/pending")
	expired := id("spiffe://example.org/node/expired")
	now := time.Now()
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash("p"), SPIFFEID: tokID, ExpiresAt: now.Add(time.Hour)}))
	must(t, "CreateJoinToken", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash("x"), SPIFFEID: expired, ExpiresAt: now.Add(-time.Minute)}))
	e := entry("web", "n1")
	e.SPIFFEID = tokID
	res, err := s.CreateEntries(ctxFor(t), []store.Entry{e}, false)
	must(t, "CreateEntries", err)
	wantKind(t, "CreateEntries(pending token's id)", res[0].Err, errkind.AlreadyExists)
	e.SPIFFEID = expired
	res, err = s.CreateEntries(ctxFor(t), []store.Entry{e}, false)
	must(t, "CreateEntries", err)
	if res[0].Err != nil {
		t.Errorf("CreateEntries(expired token's id) = %v, want it created: the token can no longer be used", res[0].Err)
	}
}

func testTokenNotAnEntry(t *testing.T, s *store.Store) {
	_, err := s.CreateEntries(ctxFor(t), []store.Entry{entry("web", "n1")}, false)
	must(t, "CreateEntries", err)
	err = s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash("t"), SPIFFEID: id("spiffe://example.org/web"), ExpiresAt: time.Now().Add(time.Hour)})
	wantKind(t, "CreateJoinToken(an entry's id)", err, errkind.AlreadyExists)
	// A node's own ID may be granted again: that is re-attestation.
	n := node("n1")
	_, err = s.AdmitNode(ctxFor(t), n)
	must(t, "AdmitNode", err)
	must(t, "CreateJoinToken(a node's id)", s.CreateJoinToken(ctxFor(t), store.JoinToken{Hash: tokenHash("n"), SPIFFEID: n.SPIFFEID, ExpiresAt: time.Now().Add(time.Hour)}))
}

func testNewNodeNotAnEntry(t *testing.T, s *store.Store) {
	e := entry("web", "n1")
	_, err := s.CreateEntries(ctxFor(t), []store.Entry{e}, false)
	must(t, "CreateEntries", err)
	n := node("n1")
	n.SPIFFEID = e.SPIFFEID
	_, err = s.AdmitNode(ctxFor(t), n)
	wantKind(t, "AdmitNode(an entry's id)", err, errkind.PermissionDenied)
}
