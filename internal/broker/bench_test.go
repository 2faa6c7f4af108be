package broker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/broker"
)

// BenchmarkStaticRequest is one allowed request for a static credential
// through the broker (policy decision, two audit records, lease create and
// activate, secret opened) on SQLite.
func BenchmarkStaticRequest(b *testing.B) {
	e := newEnvTB(b, false)
	if _, err := e.b.PutSecret(b.Context(), "stripe", []byte("sk_live_x")); err != nil {
		b.Fatal(err)
	}
	r := broker.Request{Credential: "stripe", Subject: billing}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.b.Request(b.Context(), r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostgresIssue issues (and revokes, outside the timed section's
// figures) PostgreSQL users through the broker against the machine's
// PostgreSQL, reporting issuance latency p50 and p99.
func BenchmarkPostgresIssue(b *testing.B) {
	e := newEnvTB(b, true)
	var lat []time.Duration
	var leases []string
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		g, err := e.b.Request(b.Context(), etlRequest())
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		leases = append(leases, g.Lease.ID)
	}
	b.StopTimer()
	for _, id := range leases {
		if _, err := e.b.Revoke(b.Context(), id, "benchmark"); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
