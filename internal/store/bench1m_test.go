package store_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// BenchmarkCreateEntries1M fills a fresh store with 1,000,000 entries
// (shaped as benchEntries') in calls of 2,000, the batches of `signet entry
// create --file`, and reports entries/s and CPU per 100,000-entry slice
// (slice-01 … slice-10), so a store that slows as it grows shows. Then, at
// 1M, what an agent's sync costs the store: one node's 2,000 entries read
// by parent (ListEntries, in pages of 1,000) and the change feed's
// incremental read after one more batch (EntryChanges). Run with
// -benchtime 1x; it takes about a minute per backend on a quiet machine.
//
//	go test -run '^$' -bench CreateEntries1M -benchtime 1x -timeout 30m ./internal/store/
func BenchmarkCreateEntries1M(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		bench1M(b, func(b *testing.B) *store.Store { return openSQLite(b, filepath.Join(b.TempDir(), "signet.db")) })
	})
	b.Run("postgres", func(b *testing.B) {
		bench1M(b, func(b *testing.B) *store.Store { return openPostgres(b, storetest.PostgresDSN(b)) })
	})
}

func bench1M(b *testing.B, open func(b *testing.B) *store.Store) {
	const (
		total = 1_000_000
		slice = 100_000
		batch = 2_000
	)
	nodes := make([]spiffeid.ID, 500)
	for i := range nodes {
		nodes[i] = spiffeID(b, "spiffe://prod.example.com/agent/k8s_psat/cluster-1/"+uuid.NewString())
	}
	make1 := func(i int) store.Entry {
		ns, sa := fmt.Sprintf("team-%03d", i%700), fmt.Sprintf("svc-%07d", i)
		return store.Entry{
			SPIFFEID:  spiffeID(b, "spiffe://prod.example.com/ns/"+ns+"/sa/"+sa),
			ParentID:  nodes[i%len(nodes)],
			Selectors: []store.Selector{{Type: "k8s", Value: "ns:" + ns}, {Type: "k8s", Value: "sa:" + sa}},
			X509TTL:   3600e9,
			Labels:    map[string]string{"owner": ns},
		}
	}
	for range b.N {
		s := open(b)
		ctx := store.WithActor(b.Context(), "bench")
		var first, last float64
		for sl := 0; sl < total/slice; sl++ {
			var wall time.Duration
			var cpu time.Duration
			for off := 0; off < slice; off += batch {
				es := make([]store.Entry, batch)
				for j := range es {
					es[j] = make1(sl*slice + off + j)
				}
				t0, c0 := time.Now(), cputime.Now()
				res, err := s.CreateEntries(ctx, es, false)
				wall, cpu = wall+time.Since(t0), cpu+cputime.Now()-c0
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatalf("entry %s: %v", r.Entry.SPIFFEID, r.Err)
					}
				}
			}
			rate := slice / wall.Seconds()
			if sl == 0 {
				first = rate
			}
			last = rate
			b.ReportMetric(rate, "entries/s-slice-"+fmt.Sprintf("%02d", sl+1))
			b.ReportMetric(cpu.Seconds(), "cpu-s-slice-"+fmt.Sprintf("%02d", sl+1))
		}
		b.ReportMetric(last/first, "last/first")

		// Sync at 1M: one node's entries by parent, in pages.
		t0 := time.Now()
		n, after := 0, ""
		for {
			page, err := s.ListEntries(ctx, store.EntryFilter{ParentID: nodes[7], After: after, Limit: 1000})
			if err != nil {
				b.Fatal(err)
			}
			n += len(page)
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
		if n != total/len(nodes) {
			b.Fatalf("node has %d entries, want %d", n, total/len(nodes))
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "node-read-ms")

		// The change feed after one more batch: what every replica reads.
		es := make([]store.Entry, batch)
		for j := range es {
			es[j] = make1(total + j)
		}
		res, err := s.CreateEntries(ctx, es, false)
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		cs, err := s.EntryChanges(ctx, res[0].Entry.Revision-1)
		if err != nil || len(cs.Changed) != batch {
			b.Fatalf("EntryChanges = %d changed, %v; want %d", len(cs.Changed), err, batch)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "feed-read-2000-ms")
		s.Close()
	}
}
