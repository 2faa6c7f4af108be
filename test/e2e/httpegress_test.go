package e2e

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestGatewayHTTPEgress drives `signet gateway run` with an http egress
// route and no broker_url: the application sends a plain request with no
// credential (and a header of its own to be replaced); the upstream, an
// HTTPS server of this test, sees the static credential from the broker
// as Authorization: Bearer …; after the secret is rotated the route's
// 3 s lease is renewed and the next request carries the new value; the
// application never holds either.
func TestGatewayHTTPEgress(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	d := deployBroker(t, brokerSetup{Node: "httpegress", Policy: `
rules:
  - name: gateway-calls-partner
    credentials: [partner-api]
    when: subject.id == "spiffe://example.org/app" && context.purpose == "sync"
`, Credentials: "partner-api: {provider: static, default_ttl: 3s, max_ttl: 1m}"})
	first, second := secretValue(t), secretValue(t)
	d.putSecret(t, "put", "partner-api", first)

	var mu sync.Mutex
	var seen []string
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprintf(w, "orders for %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)
	ca := filepath.Join(d.dir, "upstream-ca.pem")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw})))
	cfg := filepath.Join(d.dir, "gateway.yaml")
	writeFile(t, cfg, fmt.Sprintf(`agent_socket: %s
egress:
  - listen: 127.0.0.1:0
    protocol: http
    upstream: %s
    credential: partner-api
    context: {purpose: sync}
    inject: {header: Authorization, format: "Bearer {{.value}}"}
    upstream_tls: {ca_file: %s}
`, d.socket, up.URL, ca))
	gw := start(t, "gateway", "gateway", "run", "--config", cfg, "--log-format", "json")
	route := "http://" + routeAddrs(t, gw, 1)["egress[0]"]

	get := func() (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, route+"/v1/orders", nil)
		req.Header.Set("Authorization", "Basic the-apps-own")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	lastSeen := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}
	eventually(t, 30*time.Second, "a request through the route", func() error {
		code, body, err := get()
		if err != nil || code != 200 || body != "orders for /v1/orders" {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	if got := lastSeen(); got != "Bearer "+first {
		t.Fatalf("upstream saw Authorization %q, want the brokered credential", got)
	}
	d.putSecret(t, "rotate", "partner-api", second)
	eventually(t, 30*time.Second, "the renewed lease's value upstream", func() error {
		if code, body, err := get(); err != nil || code != 200 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		if got := lastSeen(); got != "Bearer "+second {
			return fmt.Errorf("upstream saw %q", got)
		}
		return nil
	})
	for _, root := range []string{filepath.Join(d.dir, "agent")} {
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			if b, _ := os.ReadFile(p); containsAny(b, first, second) {
				t.Errorf("%s holds the credential", p)
			}
			return nil
		})
	}
	if containsAny([]byte(gw.out.String()), first, second) {
		t.Error("the gateway logged the credential")
	}
}

func containsAny(b []byte, values ...string) bool {
	for _, v := range values {
		if v != "" && bytes.Contains(b, []byte(v)) {
			return true
		}
	}
	return false
}
