package builtin_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/remotetest"
	"github.com/signet-id/signet/internal/builtin"
)

// timedTransport adds the time spent in round trips (the remote's share:
// network and the fake's own work) to remote.
type timedTransport struct {
	base   http.RoundTripper
	remote *atomic.Int64
}

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	t.remote.Add(int64(time.Since(start)))
	return resp, err
}

// BenchmarkCredentialIssue measures Issue per cloud/SaaS provider against
// its fake and reports p50/p99 of the whole issuance and of Signet's own
// share (everything but the HTTP round trips: JWT-SVID or app JWT signing,
// request encoding, response parsing and checks).
func BenchmarkCredentialIssue(b *testing.B) {
	iss := remotetest.NewIssuer(b)
	key := githubKey()
	keyFile := filepath.Join(b.TempDir(), "gh.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		b.Fatal(err)
	}
	sts := remotetest.NewSTS(b, iss)
	as := remotetest.NewAS(b, iss, remotetest.ASConfig{ClientID: "signet"})
	entra := remotetest.NewAS(b, iss, remotetest.ASConfig{Path: "/t1/oauth2/v2.0/token", Audience: "api://AzureADTokenExchange", ClientID: "app"})
	const aud = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/signet/providers/signet"
	g := remotetest.NewGoogle(b, iss, aud, "deploy@acme.iam.gserviceaccount.com")
	gh := remotetest.NewGitHub(b, 123, &key.PublicKey, "acme", map[string]string{"contents": "write"})
	cases := []struct{ name, section string }{
		{"aws_sts", "role_arn: arn:aws:iam::123456789012:role/deploy\nsts_endpoint: " + sts.URL},
		{"gcp_wif", fmt.Sprintf("audience: %s\nservice_account: deploy@acme.iam.gserviceaccount.com\nsts_endpoint: %s/v1/token\niam_endpoint: %s", aud, g.URL, g.URL)},
		{"azure_wif", "tenant_id: t1\nclient_id: app\nauthority_host: " + entra.URL[:len(entra.URL)-len("/t1/oauth2/v2.0/token")]},
		{"oauth", "token_url: " + as.URL + "\nclient_id: signet\nscopes: [orders:read]"},
		{"github_app", fmt.Sprintf("app_id: 123\nprivate_key_file: %s\nrepositories: [acme/app]\npermissions: {contents: write}\napi_url: %s", keyFile, gh.URL)},
	}
	reg, err := builtin.CredentialProviders()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var remote atomic.Int64
			hc := &http.Client{Transport: timedTransport{base: http.DefaultTransport, remote: &remote}}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(c.section), &n); err != nil {
				b.Fatal(err)
			}
			p, err := reg.BuildAt(provider.Deps{Credential: c.name, SignJWTSVID: iss.SignJWTSVID, HTTPClient: hc}, c.name, "bench", n.Content[0])
			if err != nil {
				b.Fatal(err)
			}
			req := provider.Request{LeaseID: "lease-bench", Credential: c.name, Subject: spiffeid.RequireFromString("spiffe://example.org/etl"),
				ExpiresAt: time.Now().Add(time.Hour)}
			var total, own []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				remote.Store(0)
				start := time.Now()
				if _, err := p.Issue(b.Context(), req); err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				total = append(total, d)
				own = append(own, d-time.Duration(remote.Load()))
			}
			slices.Sort(total)
			slices.Sort(own)
			q := func(s []time.Duration, f float64) float64 { return float64(s[int(f*float64(len(s)-1))].Microseconds()) }
			b.ReportMetric(q(total, .5), "p50-µs")
			b.ReportMetric(q(total, .99), "p99-µs")
			b.ReportMetric(q(own, .5), "signet-p50-µs")
			b.ReportMetric(q(own, .99), "signet-p99-µs")
		})
	}
}
