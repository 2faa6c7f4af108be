package agentapi

import (
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/entrycache"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// BenchmarkSyncPages100k pages through a full sync of a node with 100,000
// entries in pages of the agent's size (1,000): one op is the whole sync,
// 100 pages. "cache" is syncPage, which reads each page from the entry
// cache; "reference" is how it was done before (every entry of the node
// built and scanned on every page: referenceSyncPage).
func BenchmarkSyncPages100k(b *testing.B) {
	const n, size = 100_000, 1000
	node := model.Node{SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/node/big")}
	c := entrycache.New(spiffeid.RequireFromString("spiffe://example.org/signet/server"))
	entries := make([]model.Entry, n)
	for i := range entries {
		entries[i] = model.Entry{ID: fmt.Sprintf("%08x-0000-4000-8000-%012d", uint32(i)*2654435761, i),
			SPIFFEID: spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/w/big/svc/%05d", i)), ParentID: node.SPIFFEID,
			Selectors: []model.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 100000+i)}}, Revision: 1}
	}
	c.Apply(store.EntryChangeSet{Revision: 1, Full: true, Changed: entries})
	now := time.Unix(1_800_000_000, 0)
	s := &Service{cfg: Config{Entries: c}}
	for _, impl := range []string{"cache", "reference"} {
		b.Run(impl, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				token, got := "", 0
				for {
					req := &agentv1.SyncRequest{PageSize: size, PageToken: token}
					resp := &agentv1.SyncResponse{Revision: 1}
					var err error
					if impl == "cache" {
						err = s.syncPage(req, resp, s.viewOf(node, now), 1)
					} else {
						err = referenceSyncPage(req, resp, c.NodeEntries(node.SPIFFEID, nil, now), 1, now)
					}
					if err != nil {
						b.Fatal(err)
					}
					got += len(resp.GetEntries())
					if token = resp.GetNextPageToken(); token == "" {
						break
					}
				}
				if got != n {
					b.Fatalf("paged %d entries, want %d", got, n)
				}
			}
		})
	}
}
