package gateway_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/signet-id/signet/internal/gateway"
	"github.com/signet-id/signet/internal/store/storetest"
)

// benchConns is how many client connections run queries at once.
const benchConns = 8

// BenchmarkPostgresEgress compares simple queries (SELECT 1) through a
// postgres egress route with the same queries straight to PostgreSQL:
// pgx clients on benchConns connections (queries/s), and, when pgbench is
// installed, pgbench with the same query (its tps). Run with
//
//	go test -run '^$' -bench BenchmarkPostgresEgress -benchtime 10s ./internal/gateway
func BenchmarkPostgresEgress(b *testing.B) {
	env, src := brokerEnv(b)
	g := runGateway(b, fmt.Sprintf(`broker_url: %s
egress:
  - listen: 127.0.0.1:0
    protocol: postgres
    upstream: 127.0.0.1:5432
    credential: orders-db
    context: {ticket: CHG-bench}
    upstream_tls: {mode: disable}
`, env.URL("")), src, gateway.Options{})
	gw := "postgres://app@" + g.Addr("egress[0]").String() + "/test?sslmode=disable"
	// Direct: the same server and database as the broker's admin DSN,
	// without the test schema (pgbench takes no search_path).
	direct, err := url.Parse(storetest.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	q := direct.Query()
	q.Del("search_path")
	direct.RawQuery = q.Encode()
	targets := []struct{ name, dsn string }{{"direct", direct.String()}, {"gateway", gw}}
	for _, tg := range targets {
		b.Run("pgx/"+tg.name, func(b *testing.B) {
			ctx := context.Background()
			conns := make(chan *pgx.Conn, benchConns)
			for range benchConns {
				c, err := pgx.Connect(ctx, tg.dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close(ctx)
				conns <- c
			}
			b.SetParallelism((benchConns + 1) / 2) // GOMAXPROCS is 2 here: 8 goroutines
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := <-conns
				defer func() { conns <- c }()
				var n int
				for pb.Next() {
					if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
		})
	}
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		return
	}
	script := filepath.Join(b.TempDir(), "select1.sql")
	if err := os.WriteFile(script, []byte("SELECT 1;\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	tps := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	for _, tg := range targets {
		b.Run("pgbench/"+tg.name, func(b *testing.B) {
			// pgbench runs for a fixed time; b.N only repeats the run.
			var sum float64
			for range b.N {
				out, err := exec.Command(pgbench, "-n", "-f", script, "-c", strconv.Itoa(benchConns), "-j", "2", "-T", "5", tg.dsn).CombinedOutput()
				m := tps.FindSubmatch(out)
				if err != nil || m == nil {
					b.Fatalf("pgbench: %v\n%s", err, out)
				}
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				sum += v
			}
			b.ReportMetric(sum/float64(b.N), "tps")
			b.ReportMetric(0, "ns/op")
		})
	}
}
