package store_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/store"
	"github.com/signet-id/signet/internal/store/storetest"
)

// benchEntries returns n entries shaped like a Kubernetes deployment: one
// workload per namespace/service account, spread over 500 nodes, each with
// two selectors.
func benchEntries(b *testing.B, n int) []store.Entry {
	nodes := make([]spiffeid.ID, 500)
	for i := range nodes {
		nodes[i] = spiffeID(b, "spiffe://prod.example.com/agent/k8s_psat/cluster-1/"+uuid.NewString())
	}
	out := make([]store.Entry, n)
	for i := range out {
		ns, sa := fmt.Sprintf("team-%03d", i%700), fmt.Sprintf("svc-%06d", i)
		out[i] = store.Entry{
			SPIFFEID:  spiffeID(b, "spiffe://prod.example.com/ns/"+ns+"/sa/"+sa),
			ParentID:  nodes[i%len(nodes)],
			Selectors: []store.Selector{{Type: "k8s", Value: "ns:" + ns}, {Type: "k8s", Value: "sa:" + sa}},
			X509TTL:   3600e9,
			Labels:    map[string]string{"owner": ns},
		}
	}
	return out
}

func benchCreate(b *testing.B, open func(b *testing.B) *store.Store) {
	const n = 100_000
	entries := benchEntries(b, n)
	b.ReportAllocs()
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := open(b)
		b.StartTimer()
		c0 := cputime.Now()
		res, err := s.CreateEntries(b.Context(), entries, true)
		if err != nil {
			b.Fatalf("CreateEntries() error = %v", err)
		}
		cpu += cputime.Now() - c0
		b.StopTimer()
		if len(res) != n {
			b.Fatalf("CreateEntries() = %d results, want %d", len(res), n)
		}
		if recs, err := s.ListAudit(b.Context(), store.AuditFilter{AfterSeq: n - 1}); err != nil || len(recs) != 1 {
			b.Fatalf("audit tail = %d records, %v; want 1", len(recs), err)
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
	// CPU time is steadier than wall time on a shared machine. With a
	// PostgreSQL backend it covers only the client side.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkCreateEntries100k creates 100,000 entries (two selectors each,
// one audit record each) in one atomic batch on a fresh store.
func BenchmarkCreateEntries100k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		benchCreate(b, func(b *testing.B) *store.Store {
			return openSQLite(b, filepath.Join(b.TempDir(), "signet.db"))
		})
	})
	b.Run("postgres", func(b *testing.B) {
		benchCreate(b, func(b *testing.B) *store.Store { return openPostgres(b, storetest.PostgresDSN(b)) })
	})
}

// BenchmarkNodeAddresses measures the read the broker adds to describing a
// workload on a node (store.NodeAddresses, four addresses) and the
// throttled write of the agent API (RecordNodeAddress, an upsert and a
// trim to four). get-node is the read describing a workload already did.
//
//	go test -run '^$' -bench NodeAddresses -benchtime 2000x ./internal/store/
func BenchmarkNodeAddresses(b *testing.B) {
	for _, bc := range []struct {
		name string
		open func(b *testing.B) *store.Store
	}{
		{"sqlite", func(b *testing.B) *store.Store { return openSQLite(b, filepath.Join(b.TempDir(), "signet.db")) }},
		{"postgres", func(b *testing.B) *store.Store { return openPostgres(b, storetest.PostgresDSN(b)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.open(b)
			ctx := store.WithActor(b.Context(), "bench")
			id := spiffeid.RequireFromString("spiffe://example.org/agent/bench")
			if _, err := s.CreateNode(ctx, store.Node{SPIFFEID: id, AttestationType: "join_token"}); err != nil {
				b.Fatal(err)
			}
			at := time.Now()
			for i := range 4 {
				if err := s.RecordNodeAddress(ctx, id, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), at); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("get-node", func(b *testing.B) { // the read Describe already did, for scale
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.GetNode(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("read", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if as, err := s.NodeAddresses(ctx, id); err != nil || len(as) != 4 {
						b.Fatalf("NodeAddresses = %v, %v", as, err)
					}
				}
			})
			b.Run("record", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := s.RecordNodeAddress(ctx, id, netip.AddrFrom4([4]byte{10, 0, 1, byte(i % 8)}), at.Add(time.Duration(i))); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
