package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
)

// fullSync10k is a full Sync of 10,000 entries. With shared, every entry's
// first selector is the same (the worst case for the index: one bucket);
// otherwise entries spread over 1,000 UIDs and 100 namespaces, ten per UID.
func fullSync10k(shared bool) *agentv1.SyncResponse {
	resp := &agentv1.SyncResponse{Revision: 1, Full: true}
	for i := range 10000 {
		var e *commonv1.Entry
		if shared {
			e = pe(fmt.Sprintf("e%05d", i), fmt.Sprintf("/w/%d", i), "a:shared", fmt.Sprintf("unix:uid:%d", i))
		} else {
			e = pe(fmt.Sprintf("e%05d", i), fmt.Sprintf("/w/%d", i),
				fmt.Sprintf("k8s:ns:%d", i%100), fmt.Sprintf("unix:uid:%d", i%1000))
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp
}

// cache10k returns a cache holding 10,000 entries, each with an SVID.
func cache10k(b *testing.B, shared bool) *cache {
	ca := newTestCA(b, "example.org")
	clock := newFakeClock()
	c := newTestCache(b, ca, clock)
	if _, err := c.applySync(fullSync10k(shared)); err != nil {
		b.Fatal(err)
	}
	key, _, err := newKeyAndCSR()
	if err != nil {
		b.Fatal(err)
	}
	leaf := ca.sign(b, ca.td.ID(), key.Public(), clock.Now(), clock.Now().Add(time.Hour))
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	c.mu.Lock()
	for _, r := range c.entries {
		c.setSVID(r, newSVIDRec(leaf.Raw, keyDER, leaf.SerialNumber, leaf.NotAfter, leaf.NotBefore, leaf.NotAfter))
	}
	c.mu.Unlock()
	return c
}

// callerSels is what the unix attestor reports for a typical process,
// plus the pod's namespace.
func callerSels(uid int, ns int) []model.Selector {
	return model.SortSelectors(sels(
		fmt.Sprintf("unix:uid:%d", uid), "unix:gid:100", "unix:user:svc", "unix:group:svc",
		"unix:supplementary_gid:27", "unix:supplementary_gid:998", "unix:path:/usr/bin/app",
		fmt.Sprintf("k8s:ns:%d", ns),
	))
}

func BenchmarkCacheLookup10k(b *testing.B) {
	c := cache10k(b, false)
	caller := callerSels(42, 42) // matches the ten entries of uid 42 in ns 42
	if n := len(c.X509SVIDs(caller)); n != 10 {
		b.Fatalf("X509SVIDs() = %d SVIDs, want 10", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.X509SVIDs(caller)
	}
}

func BenchmarkCacheLookup10kSharedFirstSelector(b *testing.B) {
	c := cache10k(b, true)
	caller := model.SortSelectors(append(callerSels(42, 0), model.Selector{Type: "a", Value: "shared"}))
	if n := len(c.X509SVIDs(caller)); n != 1 {
		b.Fatalf("X509SVIDs() = %d SVIDs, want 1", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		c.X509SVIDs(caller)
	}
}

func BenchmarkCacheLookup10kParallel(b *testing.B) {
	c := cache10k(b, false)
	caller := callerSels(42, 42)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.X509SVIDs(caller)
		}
	})
}

func BenchmarkApplyFullSync10k(b *testing.B) {
	ca := newTestCA(b, "example.org")
	resp := fullSync10k(false)
	b.ReportAllocs()
	for b.Loop() {
		c := newTestCache(b, ca, newFakeClock())
		if _, err := c.applySync(resp); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewCSR(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := newKeyAndCSR(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheBytesPerSVID reports the heap a cached entry with its
// X509-SVID costs (B/svid): 10,000 entries of a full sync, each holding an
// SVID inserted as the signing pipeline inserts it (keep), after a GC.
func BenchmarkCacheBytesPerSVID(b *testing.B) {
	const n = 10000
	ca := newTestCA(b, "example.org")
	clock := newFakeClock()
	resp := fullSync10k(false)
	keys := make([]heldKey, n)
	leaves := make([]*x509.Certificate, n)
	for i := range n {
		key, _, err := newKeyAndCSR()
		if err != nil {
			b.Fatal(err)
		}
		if keys[i], err = holdKey(key.(*ecdsa.PrivateKey)); err != nil {
			b.Fatal(err)
		}
		leaves[i] = ca.sign(b, spiffeid.RequireFromString(resp.Entries[i].GetSpiffeId()), key.Public(), clock.Now(), clock.Now().Add(time.Hour))
	}
	var perSVID float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := newTestCache(b, ca, clock)
		if _, err := c.applySync(resp); err != nil {
			b.Fatal(err)
		}
		for _, j := range c.due(clock.Now()) {
			i, _ := strconv.Atoi(strings.TrimPrefix(j.entry.ID, "e"))
			if err := c.keep(j, j.entry.SPIFFEID, leaves[i], leaves[i].Raw, keys[i], clock.Now()); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSVID = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perSVID, "B/svid")
}

// BenchmarkWorkloadKey is the signing pipeline's work per SVID before the
// round trip: a P-256 key, its CSR and the PKCS#8 encoding the cache
// holds (newHeldKeyAndCSR).
func BenchmarkWorkloadKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := newHeldKeyAndCSR(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWorkloadKeyFloor is the crypto BenchmarkWorkloadKey cannot do
// without: one P-256 key generated and one ECDSA signature made with it,
// over a digest of the CSR's size, with no encoding at all. The difference
// between the two is what the encodings and conversions cost.
func BenchmarkWorkloadKeyFloor(b *testing.B) {
	b.ReportAllocs()
	digest := sha256.Sum256(make([]byte, csrTBSLen))
	for b.Loop() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}
