package agentapi

import (
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

func testNode(name string) model.Node {
	return model.Node{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/node/" + name)}
}

func revs(n int, at time.Time) []store.Revocation {
	out := make([]store.Revocation, n)
	for i := range out {
		out[i] = store.Revocation{Serial: fmt.Sprintf("%x", i+1), SPIFFEID: "spiffe://example.org/web", RevokedAt: at, ExpiresAt: at.Add(time.Hour), Revision: int64(i + 1)}
	}
	return out
}

func TestHubOneStreamPerNode(t *testing.T) {
	h := newHub(2)
	first, err := h.add(testNode("a"), "01")
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.add(testNode("a"), "02")
	if err != nil {
		t.Fatalf("add(second stream of a node) = %v, want it to replace the first", err)
	}
	select {
	case <-first.replaced:
	default:
		t.Fatal("the first stream of the node was not told it was replaced")
	}
	h.remove(first) // the replaced stream ending must not drop its successor
	if h.Streams() != 1 {
		t.Fatalf("Streams() = %d after the replaced stream ended, want 1", h.Streams())
	}
	if _, err := h.add(testNode("b"), "03"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.add(testNode("c"), "04"); !errkind.Is(err, errkind.ResourceExhausted) {
		t.Fatalf("add(past the bound) = %v, want ResourceExhausted", err)
	}
	h.remove(second)
	if _, err := h.add(testNode("c"), "04"); err != nil {
		t.Fatalf("add after a stream ended: %v", err)
	}
}

func TestHubBoundedQueueResyncs(t *testing.T) {
	h := newHub(10)
	w, _ := h.add(testNode("a"), "ffff")
	now := time.Now()
	h.SetRevocations(revs(10, now))
	w.mu.Lock()
	got, overflow := len(w.revocations), w.overflow
	w.mu.Unlock()
	if got != 10 || overflow {
		t.Fatalf("after 10 revocations: %d queued, overflow %v; want 10 queued", got, overflow)
	}
	// The agent does not read: past the bound, the queue is dropped for
	// one resync with the full set.
	h.SetRevocations(revs(maxPendingRevocations+50, now))
	w.mu.Lock()
	got, overflow = len(w.revocations), w.overflow
	w.mu.Unlock()
	if got != 0 || !overflow {
		t.Fatalf("past the bound: %d queued, overflow %v; want an empty queue and a resync", got, overflow)
	}
	if !h.SerialRevoked("1") || h.SerialRevoked("ffffff") {
		t.Fatal("SerialRevoked does not reflect the set")
	}
}

func TestHubEndsStreamOfRevokedAgentSVID(t *testing.T) {
	h := newHub(10)
	w, _ := h.add(testNode("a"), "2")
	other, _ := h.add(testNode("b"), "999")
	h.SetRevocations(revs(3, time.Now()))
	if w.end != EndRevoked || other.end != "" {
		t.Fatalf("end = %q, %q; want the stream of the revoked agent svid ended, the other not", w.end, other.end)
	}
	h.NotifySync("entries", 7, func(node spiffeid.ID, _ []model.Selector) bool { return node == testNode("b").SPIFFEID })
	if w.sync || !other.sync || other.revision != 7 {
		t.Fatalf("NotifySync reached a=%v b=%v (rev %d); want only b at 7", w.sync, other.sync, other.revision)
	}
}

func TestGroupRevocations(t *testing.T) {
	at := time.Unix(1700000000, 0)
	rs := []store.Revocation{
		{Serial: "a1", SPIFFEID: "spiffe://example.org/web", RevokedAt: at, ExpiresAt: at.Add(time.Hour), Revision: 5},
		{Serial: "a2", SPIFFEID: "spiffe://example.org/web", RevokedAt: at, ExpiresAt: at.Add(2 * time.Hour), Revision: 5},
		{SPIFFEID: "spiffe://example.org/web", RevokedAt: at, ExpiresAt: at.Add(2 * time.Hour), Revision: 5},
		{Serial: "b1", SPIFFEID: "spiffe://example.org/db", RevokedAt: at, ExpiresAt: at.Add(time.Hour), Revision: 6},
	}
	got := groupRevocations(rs)
	if len(got) != 2 {
		t.Fatalf("groupRevocations = %v, want 2 messages (web's ID rule covering its serials, db's serial)", got)
	}
	web := got[0]
	if web.GetSerial() != "" {
		web = got[1]
	}
	if web.GetSerial() != "" || web.GetX509NotBeforeUntil() != at.Add(-10*time.Second).Unix() || web.GetRemintAfter() <= web.GetX509NotBeforeUntil() {
		t.Fatalf("web's revocation = %v, want one ID rule with NotBefore until revoked_at-10s", web)
	}
	rs = append(rs, store.Revocation{Serial: "c1", SPIFFEID: "spiffe://example.org/db", RevokedAt: at, ExpiresAt: at.Add(3 * time.Hour), Revision: 6})
	got = groupRevocations(rs[3:])
	if len(got) != 1 || got[0].GetSerial() != "b1" || len(got[0].GetSerials()) != 1 || got[0].GetExpiresAt() != at.Add(3*time.Hour).Unix() {
		t.Fatalf("groupRevocations(two serials of one transaction) = %v, want one message expiring with the later", got)
	}
}
