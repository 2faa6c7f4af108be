package server_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	brokerexchange "github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/cputime"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

// brokerClients is the number of concurrent keep-alive mTLS clients of
// BenchmarkBrokerTokenEndpointConcurrent, each with its own connection.
const brokerClients = 16

// BenchmarkBrokerTokenEndpointConcurrent measures token-endpoint
// requests/s for a static credential and for a Txn-Token with 16
// concurrent clients, each holding its own keep-alive mTLS connection
// (HTTP/2) with the workload's X509-SVID, on SQLite and on PostgreSQL
// (storetest.PostgresDSN; skipped when PostgreSQL is unreachable). The
// per-address rate limit is raised: every client shares 127.0.0.1. Each
// static request is a policy decision, a lease (recorded, activated), the
// unsealed secret and the decision's audit record; a Txn-Token request
// is a decision, a signed JWT and the audit record.
//
//	go test -run '^$' -bench BrokerTokenEndpointConcurrent -benchtime 4000x ./internal/server/
func BenchmarkBrokerTokenEndpointConcurrent(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, bc := range []struct{ name, typ string }{
			{"static", brokerexchange.TokenTypeCredential},
			{"txn-token", brokerexchange.TokenTypeTxnToken},
		} {
			b.Run(db+"/"+bc.name, func(b *testing.B) {
				opt := func(c *server.Config) {
					c.Logger = slog.New(slog.DiscardHandler)
					c.TokenRatePerSecond = 1e6 // every client has the address 127.0.0.1
				}
				if db == "postgres" {
					dsn := storetest.PostgresDSN(b)
					opt = func(c *server.Config) {
						c.Logger = slog.New(slog.DiscardHandler)
						c.TokenRatePerSecond = 1e6
						c.StoreDriver, c.StoreDSN = "postgres", dsn
					}
				}
				benchBrokerConcurrent(b, brokerEnv(b, opt), bc.typ)
			})
		}
	}
}

func benchBrokerConcurrent(b *testing.B, env *testenv.Env, typ string) {
	if _, err := env.Server.Broker().PutSecret(env.Ctx(), "stripe", []byte("sk_live_abc")); err != nil {
		b.Fatal(err)
	}
	svid := workloadSVID(b, env, "spiffe://example.org/billing", "acme/billing")
	form := url.Values{"requested_token_type": {typ}, "resource": {"stripe"}, "request_context": {`{"ticket":"CHG-7"}`},
		"grant_type": {tokenapi.GrantTokenExchange}}
	if typ == brokerexchange.TokenTypeTxnToken {
		form.Del("resource")
	}
	body := form.Encode()
	clients := make([]*http.Client, brokerClients)
	for i := range clients {
		clients[i] = env.HTTPClient(svid) // its own transport: its own connection
		if status, body := postForm(b, clients[i], env, form); status != 200 {
			b.Fatalf("warm-up: status %d: %v", status, body)
		}
	}
	lat, elapsed, cpu := concurrentLoad(b, len(clients), func(w, _ int) error { return postEncoded(clients[w], env, body) })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	// The process's CPU (server and clients) per request.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// postEncoded posts the encoded form body to the token endpoint and
// checks for 200 with a token; safe for concurrent use (no testing.TB
// call: it runs on the benchmark's client goroutines).
func postEncoded(c *http.Client, env *testenv.Env, body string) error {
	resp, err := c.Post(env.URL(tokenapi.Path), "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("token endpoint: status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || out.AccessToken == "" {
		return fmt.Errorf("token endpoint: status %d, access_token %q", resp.StatusCode, out.AccessToken)
	}
	return nil
}

// concurrentLoad runs b.N calls of call on workers goroutines (call gets
// its worker's number and the call's index), timing the run from after
// the caller's set-up, and returns each call's latency (sorted), the
// wall time and the process's CPU time over the run. A failed call fails
// the benchmark and stops its worker.
func concurrentLoad(b *testing.B, workers int, call func(worker, i int) error) (lat []time.Duration, elapsed, cpu time.Duration) {
	lat = make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Now()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := call(w, i); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	cpu = cputime.Now() - cpu0
	b.StopTimer()
	slices.Sort(lat)
	return lat, elapsed, cpu
}
