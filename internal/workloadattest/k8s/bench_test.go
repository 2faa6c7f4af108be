//go:build linux

package k8s_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/workloadattest/k8s"
	"github.com/signet-id/signet/internal/workloadattest/workloadattesttest"
)

// BenchmarkAttestWarm is the attestation of a k8s caller with a warm
// kubelet cache: reading its cgroup, the pidfd check and the index look-up.
// It reports the p50 and p99 latency of single calls.
func BenchmarkAttestWarm(b *testing.B) {
	e := newBenchEnv(b)
	p := workloadattesttest.SelfPeer(b)
	ctx := context.Background()
	if _, err := e.a.Attest(ctx, p); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := e.a.Attest(ctx, p); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(float64(lat[len(lat)*999/1000].Nanoseconds())/1e3, "p99.9-µs")
}

// BenchmarkKubeletCalls1000Callers has 1,000 distinct callers (one
// container each, all in the kubelet's answer) attest over and over and
// reports how many requests reached the kubelet per second.
func BenchmarkKubeletCalls1000Callers(b *testing.B) {
	body, ids, uids := podList(1000)
	e := newBenchEnvBody(b, body)
	ctx := context.Background()
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() {
				if _, err := k8s.LookupContainer(ctx, e.a, uids[i], ids[i]); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	elapsed := time.Since(start).Seconds()
	b.ReportMetric(float64(e.k.calls.Load())/elapsed, "kubelet-calls/s")
	b.ReportMetric(float64(b.N*len(ids))/elapsed, "attestations/s")
}

func newBenchEnv(b *testing.B) *env { return newBenchEnvBody(b, fixture(b)) }

func newBenchEnvBody(b *testing.B, body []byte) *env {
	return newEnv(b, body, checkoutID, nil)
}
