package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/gateway"
	"github.com/signet-id/signet/internal/store/storetest"
)

// benchConns is how many client connections run queries at once.
const benchConns = 8

// benchAccounts is the row count of the accounts table of the
// select-only mix (pgbench -S's query on a table of our own).
const benchAccounts = 100_000

// BenchmarkPostgresEgress compares simple queries through a postgres
// egress route with the same queries straight to PostgreSQL, for two
// mixes: select1 (SELECT 1) and accounts (pgbench -S's select-only
// query, SELECT abalance ... WHERE aid = random, on a 100,000-row table
// gwbench.accounts that the benchmark creates once). Loads: pgx clients
// on benchConns connections (queries/s), and, when pgbench is installed,
// pgbench with the same script (its tps). Besides throughput it reports
// CPU per query, which the machine's other load does not skew:
// pg-cpu-us/q is PostgreSQL's (every process named postgres), and in the
// pgbench runs gw-cpu-us/q is this process's, which is the gateway's
// alone (pgbench is another process; the in-process server and agent are
// idle), client-cpu-us/q pgbench's; in the pgx runs proc-cpu-us/q is this
// process's, client plus gateway. Run with
//
//	go test -run '^$' -bench BenchmarkPostgresEgress -benchtime 5s ./internal/gateway
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
	createAccounts(b, direct.String())
	targets := []struct{ name, dsn string }{{"direct", direct.String()}, {"gateway", gw}}
	mixes := []struct {
		name   string
		query  string
		args   func() []any
		script string
	}{
		{"select1", "SELECT 1", func() []any { return nil }, "SELECT 1;\n"},
		{"accounts", "SELECT abalance FROM gwbench.accounts WHERE aid = $1",
			func() []any { return []any{rand.IntN(benchAccounts) + 1} },
			fmt.Sprintf("\\set aid random(1, %d)\nSELECT abalance FROM gwbench.accounts WHERE aid = :aid;\n", benchAccounts)},
	}
	for _, mix := range mixes {
		for _, tg := range targets {
			b.Run("pgx/"+mix.name+"/"+tg.name, func(b *testing.B) {
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
				pg0, cpu0 := postgresCPU(b), cputime.Now()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c := <-conns
					defer func() { conns <- c }()
					var n int
					for pb.Next() {
						if err := c.QueryRow(ctx, mix.query, mix.args()...).Scan(&n); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
				b.ReportMetric(perQuery(cputime.Now()-cpu0, b.N), "proc-cpu-us/q")
				b.ReportMetric(perQuery(postgresCPU(b)-pg0, b.N), "pg-cpu-us/q")
			})
		}
	}
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		return
	}
	tps := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	xacts := regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
	for _, mix := range mixes {
		script := filepath.Join(b.TempDir(), mix.name+".sql")
		if err := os.WriteFile(script, []byte(mix.script), 0o600); err != nil {
			b.Fatal(err)
		}
		for _, tg := range targets {
			b.Run("pgbench/"+mix.name+"/"+tg.name, func(b *testing.B) {
				// pgbench runs for a fixed time; b.N only repeats the run.
				var sum float64
				var n int
				var gwCPU, pgCPU, clientCPU time.Duration
				for range b.N {
					pg0, cpu0 := postgresCPU(b), cputime.Now()
					cmd := exec.Command(pgbench, "-n", "-f", script, "-c", strconv.Itoa(benchConns), "-j", "2", "-T", "5", tg.dsn)
					var out bytes.Buffer
					cmd.Stdout, cmd.Stderr = &out, &out
					err := cmd.Run()
					gwCPU += cputime.Now() - cpu0
					pgCPU += postgresCPU(b) - pg0
					m, x := tps.FindSubmatch(out.Bytes()), xacts.FindSubmatch(out.Bytes())
					if err != nil || m == nil || x == nil {
						b.Fatalf("pgbench: %v\n%s", err, out.Bytes())
					}
					clientCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
					v, _ := strconv.ParseFloat(string(m[1]), 64)
					k, _ := strconv.Atoi(string(x[1]))
					sum += v
					n += k
				}
				b.ReportMetric(sum/float64(b.N), "tps")
				b.ReportMetric(perQuery(gwCPU, n), "gw-cpu-us/q")
				b.ReportMetric(perQuery(pgCPU, n), "pg-cpu-us/q")
				b.ReportMetric(perQuery(clientCPU, n), "client-cpu-us/q")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

func perQuery(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

// createAccounts makes gwbench.accounts (pgbench_accounts' shape,
// benchAccounts rows) readable by every role, the leased ones included,
// unless it is there already.
func createAccounts(b *testing.B, dsn string) {
	b.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	for _, stmt := range []string{
		`CREATE SCHEMA IF NOT EXISTS gwbench`,
		`CREATE TABLE IF NOT EXISTS gwbench.accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))`,
		fmt.Sprintf(`INSERT INTO gwbench.accounts SELECT i, 1, 0, '' FROM generate_series(1, %d) i ON CONFLICT DO NOTHING`, benchAccounts),
		`GRANT USAGE ON SCHEMA gwbench TO PUBLIC`,
		`GRANT SELECT ON gwbench.accounts TO PUBLIC`,
		`ANALYZE gwbench.accounts`,
	} {
		if _, err := c.Exec(ctx, stmt); err != nil {
			b.Fatalf("%s: %v", stmt, err)
		}
	}
}

// postgresCPU sums the user and system CPU time of every process named
// postgres (the server's backends and helpers), from /proc/PID/stat,
// with that of the ones that ended (their parent's cutime and cstime:
// the postmaster reaps its backends, pgbench's included); 0 where there
// is no /proc.
func postgresCPU(b *testing.B) time.Duration {
	b.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range dirs {
		st, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile
		}
		open, end := bytes.IndexByte(st, '('), bytes.LastIndexByte(st, ')')
		if open < 0 || end < open || string(st[open+1:end]) != "postgres" {
			continue
		}
		// After "(comm) ": state is field 3; utime and stime are 14 and 15.
		f := bytes.Fields(st[end+2:])
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(string(f[i]), 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}
