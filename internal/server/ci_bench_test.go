package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/ci/citest"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

// BenchmarkCIExchange measures CI token exchanges at the token endpoint
// over real HTTPS (HTTP/2, 16 concurrent clients) with a warm JWKS cache:
// go-oidc verification, the replay record in SQLite, entry matching,
// signing and the audit record. Tokens are minted before the timer starts.
func BenchmarkCIExchange(b *testing.B) {
	for _, kind := range []string{"jwt", "x509"} {
		b.Run(kind, func(b *testing.B) { benchExchange(b, kind) })
	}
}

func benchExchange(b *testing.B, kind string) {
	gh := citest.New(b, nil)
	env := testenv.New(b, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.TokenRatePerSecond = 1e6 // one client address drives it all
		c.Logger = nil
		c.OIDCIssuers = ciEnvIssuers(gh)
	})
	env.CreateEntry(deployEntry)
	client := env.HTTPClient(nil)
	claims := citest.GitHubClaims("acme/app", "refs/heads/main")
	form := func(tok string) url.Values {
		if kind == "jwt" {
			return jwtForm(tok)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		return url.Values{"subject_token": {tok}, "subject_token_type": {tokenapi.TokenTypeIDToken},
			"requested_token_type": {tokenapi.TokenTypeX509SVID}, "csr": {base64.RawURLEncoding.EncodeToString(csr)}}
	}
	// Warm the JWKS cache and the connection.
	if status, body := exchange(b, client, env, form(gh.Mint(b, "spiffe://example.org", time.Now(), 30*time.Minute, claims))); status != 200 {
		b.Fatalf("warm-up: %d %v", status, body)
	}
	forms := make([]url.Values, b.N)
	for i := range forms {
		forms[i] = form(gh.Mint(b, "spiffe://example.org", time.Now(), 30*time.Minute, claims))
	}
	lat, elapsed, cpu := concurrentLoad(b, 16, func(_, i int) error {
		if status, body := exchange(b, client, env, forms[i]); status != 200 {
			return fmt.Errorf("exchange: %d %v", status, body)
		}
		return nil
	})
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "exchanges/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	// CPU of the whole process (server and clients) per exchange: what
	// the machine's load does not change. 1000/cpu-ms is exchanges/s per
	// core.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
