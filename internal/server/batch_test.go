package server_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/testenv"
)

// TestAtomicBatch10kFailingInMiddle: an atomic batch of 10,000 entries whose
// entry 5,000 clashes with an entry already stored (found only inside the
// store's write transaction) creates nothing: every other item says it was
// not created, the store lists none of them, and the entry cache that agent
// sync reads holds none.
func TestAtomicBatch10kFailingInMiddle(t *testing.T) {
	env := testenv.New(t)
	existing := createEntry(t, env, entry("spiffe://example.org/existing", nodeA, false))
	mk := func(i int) *commonv1.Entry {
		return &commonv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/w/%d", i), ParentId: nodeA,
			Selectors: []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}}}
	}
	batch := make([]*commonv1.Entry, 10_000)
	for i := range batch {
		batch[i] = mk(i)
	}
	batch[5000] = entry("spiffe://example.org/existing", nodeA, false) // same ID, parent, selectors
	resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: batch, Atomic: true})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	if len(resp.GetResults()) != len(batch) {
		t.Fatalf("%d results for %d entries", len(resp.GetResults()), len(batch))
	}
	for i, r := range resp.GetResults() {
		code := codes.Code(r.GetStatus().GetCode())
		switch {
		case i == 5000 && code != codes.AlreadyExists:
			t.Errorf("item 5000: %v %q, want AlreadyExists", code, r.GetStatus().GetMessage())
		case i != 5000 && code != codes.FailedPrecondition:
			t.Fatalf("item %d: %v %q, want FailedPrecondition (not created)", i, code, r.GetStatus().GetMessage())
		}
	}
	list, err := env.Admin.ListEntries(env.Ctx(), &adminv1.ListEntriesRequest{ParentId: nodeA, PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEntries()) != 1 || list.GetEntries()[0].GetId() != existing.GetId() {
		t.Fatalf("after the rejected batch the node has %d entries, want only the one stored before", len(list.GetEntries()))
	}
	sync := syncFull(t, env)
	if len(sync.GetEntries()) != 1 {
		t.Fatalf("agent sync after the rejected batch: %d entries, want 1", len(sync.GetEntries()))
	}
}

// TestChunkedBatchesReportEachEntry: the non-atomic path the CLI takes for a
// file (calls of 2,000) reports every entry on its own: the duplicates in
// the second chunk fail alone, the rest are created and synced.
func TestChunkedBatchesReportEachEntry(t *testing.T) {
	env := testenv.New(t)
	created := 0
	for chunk := range 3 {
		batch := make([]*commonv1.Entry, 2000)
		for i := range batch {
			n := chunk*2000 + i
			if chunk == 1 && i%500 == 0 {
				n = i // an entry of the first chunk again
			}
			batch[i] = &commonv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/w/%d", n), ParentId: nodeA,
				Selectors: []*commonv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", n)}}}
		}
		resp, err := env.Admin.CreateEntries(env.Ctx(), &adminv1.CreateEntriesRequest{Entries: batch})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResults() {
			code := codes.Code(r.GetStatus().GetCode())
			dup := chunk == 1 && i%500 == 0
			if dup != (code == codes.AlreadyExists) || (!dup && (code != codes.OK || r.GetEntry().GetId() == "")) {
				t.Fatalf("chunk %d item %d: %v %q", chunk, i, code, r.GetStatus().GetMessage())
			}
			if code == codes.OK {
				created++
			}
		}
	}
	if created != 6000-4 {
		t.Fatalf("created %d, want %d", created, 6000-4)
	}
	if got := len(syncFull(t, env).GetEntries()); got != created {
		t.Fatalf("agent sync: %d entries, want %d", got, created)
	}
}

// syncFull is node A's full Sync.
func syncFull(t *testing.T, env *testenv.Env) *agentv1.SyncResponse {
	t.Helper()
	resp, err := env.Attest(nodeA).Client.Sync(env.Ctx(), &agentv1.SyncRequest{})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return resp
}
