package entrycache

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// benchEntries makes n entries shaped like BenchmarkEntryCreate100k's
// (test/e2e): two k8s selectors, 500 parents, a label, UUID IDs.
func benchEntries(n int) []model.Entry {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	out := make([]model.Entry, n)
	now := time.Now()
	for i := range out {
		out[i] = model.Entry{
			ID:        uuid.NewString(),
			SPIFFEID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/team-%03d/sa/svc-%06d", i%1000, i)),
			ParentID:  spiffeid.RequireFromPath(td, fmt.Sprintf("/node/agent-%03d", i%500)),
			Selectors: []model.Selector{{Type: "k8s", Value: fmt.Sprintf("ns:team-%03d", i%1000)}, {Type: "k8s", Value: "sa:svc-" + strconv.Itoa(i)}},
			Labels:    map[string]string{"team": fmt.Sprintf("team-%03d", i%1000)},
			Revision:  1, CreatedAt: now, UpdatedAt: now,
		}
	}
	return out
}

func liveHeap() uint64 {
	bytes, _ := liveHeapObjects()
	return bytes
}

// liveHeapObjects collects twice and returns the live heap's bytes and
// objects.
func liveHeapObjects() (bytes, objects uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.HeapObjects
}

// gcTime is the mean wall time of a full collection of what is live now.
func gcTime() time.Duration {
	const n = 5
	start := time.Now()
	for range n {
		runtime.GC()
	}
	return time.Since(start) / n
}

// BenchmarkCacheMemoryPerEntry reports the live heap the cache holds per
// entry (heap after the load, minus before, with the input gone), for 100k
// and 1M entries, and what a collection pays for it: the heap objects per
// entry (each one the collector marks; exact for a given build) and the
// wall time of a full collection with only the cache live (gc-ms; noisy,
// it follows the machine). Run with -benchtime 1x.
func BenchmarkCacheMemoryPerEntry(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				es := benchEntries(n)
				base := liveHeap() // the input only
				_, objBase := liveHeapObjects()
				gcBase := gcTime()
				c := New(spiffeid.RequireFromString("spiffe://example.org/signet/server"))
				// In batches of 2,000, as the admin API applies them.
				for i := 0; i < n; i += 2000 {
					c.ApplyCreated(int64(i/2000+1), setRev(es[i:min(i+2000, n)], int64(i/2000+1)))
				}
				es = nil
				after, objAfter := liveHeapObjects()
				gcCache := gcTime()
				runtime.KeepAlive(c)
				in, inObjects := inputSize(n)
				b.ReportMetric(float64(int64(after)-int64(base)+int64(in))/float64(n), "B/entry")
				b.ReportMetric(float64(int64(objAfter)-int64(objBase)+int64(inObjects))/float64(n), "objects/entry")
				b.ReportMetric(float64(gcCache-gcBase)/1e6, "gc-ms")
				if c.Len() != n {
					b.Fatalf("Len = %d", c.Len())
				}
			}
		})
	}
}

// inputSize measures what n benchEntries take on the heap, so the cache's
// own share can be separated from the input it was built from.
func inputSize(n int) (bytes, objects uint64) {
	before, beforeObjects := liveHeapObjects()
	es := benchEntries(n)
	after, afterObjects := liveHeapObjects()
	runtime.KeepAlive(es)
	return after - before, afterObjects - beforeObjects
}

func setRev(es []model.Entry, rev int64) []model.Entry {
	for i := range es {
		es[i].Revision = rev
	}
	return es
}

// BenchmarkNodeEntries1M is the cache's part of an agent's sync at 1M
// entries: one node's 2,000 entries (1,000,000 over 500 parents), read in
// ID order, whole and in pages of 500.
func BenchmarkNodeEntries1M(b *testing.B) {
	const n = 1_000_000
	c := New(spiffeid.RequireFromString("spiffe://example.org/signet/server"))
	es := benchEntries(n)
	c.Apply(store.EntryChangeSet{Revision: 1, Full: true, Changed: es})
	es = nil
	node := spiffeid.RequireFromString("spiffe://example.org/node/agent-007")
	now := time.Now()
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if got := c.NodeEntries(node, nil, now); len(got) != 2000 {
				b.Fatalf("%d entries", len(got))
			}
		}
	})
	b.Run("pages-of-500", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			after, total := "", 0
			for {
				page, more := c.NodeEntriesAfter(node, nil, now, after, 500)
				total += len(page)
				if !more {
					break
				}
				after = page[len(page)-1].ID
			}
			if total != 2000 {
				b.Fatalf("%d entries", total)
			}
		}
	})
}
