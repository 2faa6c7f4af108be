//go:build linux

package workload_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// BenchmarkFetchX509SVID measures one FetchX509SVID call of the go-spiffe
// client (open the stream, attest the caller with the unix attestor, build
// and send the response, parse it) over the real socket, from 1 and 16
// concurrent clients, each with its own connection.
func BenchmarkFetchX509SVID(b *testing.B) {
	benchClients(b, func(ctx context.Context, c *workloadapi.Client) error {
		_, err := c.FetchX509SVID(ctx)
		return err
	})
}

// BenchmarkFetchJWTSVID measures one FetchJWTSVID call, which includes
// minting an ES256 token in the in-memory source.
func BenchmarkFetchJWTSVID(b *testing.B) {
	benchClients(b, func(ctx context.Context, c *workloadapi.Client) error {
		_, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "bench"})
		return err
	})
}

func benchClients(b *testing.B, call func(context.Context, *workloadapi.Client) error) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			e := start(b)
			e.src.SetEntries(e.entry(b, webID, "", mine))
			ctx := context.Background()
			clients := make([]*workloadapi.Client, n)
			for i := range clients {
				c, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+e.path))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { c.Close() })
				if err := call(ctx, c); err != nil { // connect and warm caches
					b.Fatal(err)
				}
				clients[i] = c
			}
			durs := make([][]time.Duration, n)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cputime.Now()
			begin := time.Now()
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						if err := call(ctx, c); err != nil {
							b.Error(err)
							return
						}
						durs[i] = append(durs[i], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(begin)
			cpu := cputime.Now() - cpu0
			b.StopTimer()
			all := slices.Concat(durs...)
			if len(all) == 0 {
				return
			}
			slices.Sort(all)
			pct := func(p float64) float64 {
				return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1e3
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "calls/s")
			// CPU time of client and server together: unlike latency, it
			// does not depend on what else the machine is running.
			b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-µs/op")
		})
	}
}
