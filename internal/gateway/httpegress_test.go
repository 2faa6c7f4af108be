package gateway_test

import (
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/gateway"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

// TestHTTPEgress: an http egress route in front of a real TLS server adds
// the brokered credential as the configured header (replacing the
// application's own), refreshes it before the lease expires, and answers
// 500 naming the field when the template needs one the credential lacks.
func TestHTTPEgress(t *testing.T) {
	env, src := brokerEnv(t)
	ctx := t.Context()
	if _, err := env.Server.Broker().PutSecret(ctx, "partner-api", []byte("tok-1")); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []string
	)
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprintf(w, "%s %s", r.Host, r.URL.Path)
	}))
	defer up.Close()
	ca := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(time.Now())
	g := runGateway(t, fmt.Sprintf(`broker_url: %[1]s
egress:
  - listen: 127.0.0.1:0
    protocol: http
    upstream: %[2]s
    credential: partner-api
    context: {ticket: CHG-9}
    inject: {header: Authorization, format: "Bearer {{.value}}"}
    upstream_tls: {ca_file: %[3]s}
  - listen: 127.0.0.1:0
    protocol: http
    upstream: %[2]s
    credential: partner-api
    context: {ticket: CHG-9}
    inject: {header: Authorization, format: "Bearer {{.access_token}}"}
    upstream_tls: {ca_file: %[3]s}
`, env.URL(""), up.URL, ca), src, gateway.Options{Clock: clock})
	get := func(route string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.Addr(route).String()+"/v1/orders", nil)
		req.Header.Set("Authorization", "Basic app-own")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET through %s: %v", route, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}
	if code, body := get("egress[0]"); code != 200 || body != strings.TrimPrefix(up.URL, "https://")+" /v1/orders" || last() != "Bearer tok-1" {
		t.Fatalf("GET: %d %q, upstream saw Authorization %q; want 200 from the upstream with Bearer tok-1", code, body, last())
	}

	t.Run("refreshed before expiry", func(t *testing.T) {
		if _, _, err := env.Server.Broker().RotateSecret(ctx, "partner-api", []byte("tok-2")); err != nil {
			t.Fatal(err)
		}
		if !clock.WaitForWaiters(2, 10*time.Second) {
			t.Fatal("the leases are not waiting to renew")
		}
		clock.Add(11 * time.Minute) // past two thirds of 15m
		testenv.WaitFor(t, 10*time.Second, "the rotated secret injected", func() error {
			if code, _ := get("egress[0]"); code != 200 || last() != "Bearer tok-2" {
				return fmt.Errorf("%d, upstream saw %q", code, last())
			}
			return nil
		})
	})

	t.Run("missing field", func(t *testing.T) {
		n := count()
		code, body := get("egress[1]")
		if code != 500 || !strings.Contains(body, `no field "access_token"`) || !strings.Contains(body, "value") {
			t.Errorf("template with a missing field: %d %q; want 500 naming access_token and the fields there are", code, body)
		}
		if count() != n {
			t.Error("the request reached the upstream without its credential")
		}
	})
}
