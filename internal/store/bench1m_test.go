package store_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// BenchmarkCreateEntries1M fills a fresh store with 1,000,000 entries
// (shaped as benchEntries') in calls of 2,000, each its own transaction (the
// batches of CreateEntries; stream-sqlite and stream-postgres: as the
// server writes `signet entry create --file`, committed every 20,000), and
// reports entries/s and CPU per 100,000-entry slice
// (slice-01 … slice-10), so a store that slows as it grows shows. Then, at
// 1M, what an agent's sync costs the store: one node's 2,000 entries read
// by parent (ListEntries, in pages of 1,000) and the change feed's
// incremental read after one more batch (EntryChanges). Run with
// -benchtime 1x; it takes a few minutes per backend on a quiet machine.
//
// Per slice it also reports why a slice cost what it did: on SQLite, the
// process's read calls and bytes (SQLite's page-cache misses) and bytes
// written; on PostgreSQL, the schema's buffer reads and hits, the WAL
// written and, for a server on this machine, the CPU of the benchmark's
// backends and of the whole server. SIGNET_BENCH1M_SLICES=N runs N slices
// instead of 10 (the reads at the end then see N*100,000 entries).
//
//	go test -run '^$' -bench CreateEntries1M -benchtime 1x -timeout 40m ./internal/store/
func BenchmarkCreateEntries1M(b *testing.B) {
	nSlices := 10
	if v := os.Getenv("SIGNET_BENCH1M_SLICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			b.Fatalf("SIGNET_BENCH1M_SLICES=%q: want a whole number of 100,000-entry slices from 1 to 100", v)
		}
		nSlices = n
	}
	openSQLiteProbed := func(b *testing.B) (*store.Store, benchProbe) {
		return openSQLite(b, filepath.Join(b.TempDir(), "signet.db")), fileIOProbe{}
	}
	openPostgresProbed := func(b *testing.B) (*store.Store, benchProbe) {
		const app = "signet-bench1m"
		s := openPostgres(b, withAppName(storetest.PostgresDSN(b), app))
		return s, &pgProbe{db: s.DB(), app: app, seen: make(map[int]float64)}
	}
	b.Run("sqlite", func(b *testing.B) { bench1M(b, nSlices, false, openSQLiteProbed) })
	b.Run("postgres", func(b *testing.B) { bench1M(b, nSlices, false, openPostgresProbed) })
	// stream-*: the same entries as the server's writer creates them from
	// `signet entry create --file` (adminapi.CreateEntryBatches): chunks of
	// 2,000, each prepared (PrepareEntries; here on the same goroutine, so
	// its checks count as CreateEntries' do) and added to one
	// store.EntryBatch, committed every 20,000 (adminapi.MaxGroupEntries).
	b.Run("stream-sqlite", func(b *testing.B) { bench1M(b, nSlices, true, openSQLiteProbed) })
	b.Run("stream-postgres", func(b *testing.B) { bench1M(b, nSlices, true, openPostgresProbed) })
}

// streamGroup is adminapi.MaxGroupEntries, which this package cannot import;
// a slice (100,000) is a whole number of groups, so each slice's time
// includes its commits.
const streamGroup = 20_000

func bench1M(b *testing.B, nSlices int, stream bool, open func(b *testing.B) (*store.Store, benchProbe)) {
	const (
		slice = 100_000
		batch = 2_000
	)
	total := nSlices * slice
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
		s, probe := open(b)
		ctx := store.WithActor(b.Context(), "bench")
		var first, last float64
		var group *store.EntryBatch // stream: the open transaction
		for sl := 0; sl < total/slice; sl++ {
			var wall time.Duration
			var cpu time.Duration
			p0, err := probe.read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < slice; off += batch {
				es := make([]store.Entry, batch)
				for j := range es {
					es[j] = make1(sl*slice + off + j)
				}
				t0, c0 := time.Now(), cputime.Now()
				var res []store.EntryResult
				if stream {
					res, err = streamAdd(ctx, s, &group, es, (off+batch)%streamGroup == 0)
				} else {
					res, err = s.CreateEntries(ctx, es, false)
				}
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
			p1, err := probe.read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			suffix := fmt.Sprintf("-slice-%02d", sl+1)
			b.ReportMetric(rate, "entries/s"+suffix)
			b.ReportMetric(cpu.Seconds(), "cpu-s"+suffix)
			line := fmt.Sprintf("slice %2d: %7.0f entries/s, client %5.1f CPU-s", sl+1, rate, cpu.Seconds())
			for _, k := range slices.Sorted(maps.Keys(p1)) {
				d := p1[k] - p0[k]
				b.ReportMetric(d, k+suffix)
				line += fmt.Sprintf(", %s %.1f", k, d)
			}
			b.Log(line)
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

// streamAdd adds es to the open group transaction, beginning one when none
// is open, and commits it when commit is set.
func streamAdd(ctx context.Context, s *store.Store, group **store.EntryBatch, es []store.Entry, commit bool) ([]store.EntryResult, error) {
	if *group == nil {
		g, err := s.BeginEntryBatchEach(ctx)
		if err != nil {
			return nil, err
		}
		*group = g
	}
	res, err := (*group).AddPrepared(ctx, s.PrepareEntries(es, nil))
	if err != nil {
		*group = nil // rolled back
		return nil, err
	}
	if commit {
		g := *group
		*group = nil
		if _, err := g.Commit(ctx); err != nil {
			return nil, err
		}
	}
	return res, nil
}
