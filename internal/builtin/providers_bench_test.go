package builtin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gossh "golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/mysql/mysqltest"
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
			reportIssueLatency(b, total, own)
		})
	}
}

// timedConn adds the time its reads wait (the database's share: network
// and the server's own work) to remote.
type timedConn struct {
	net.Conn
	remote *atomic.Int64
}

func (c timedConn) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := c.Conn.Read(p)
	c.remote.Add(int64(time.Since(start)))
	return n, err
}

// BenchmarkLocalCredentialIssue measures Issue for the providers whose
// remote runs on this machine — mysql against the real MariaDB (a user
// per lease: CREATE USER and its grants), ssh (a certificate signed by
// Signet alone) — with each lease revoked outside the timing. Signet's
// share is the issuance minus the time spent waiting for the database's
// replies (a timing dialer registered with the MySQL driver).
func BenchmarkLocalCredentialIssue(b *testing.B) {
	dsn := mysqltest.DSN(b)
	var remote atomic.Int64
	mysqldrv.RegisterDialContext("signet-bench", func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return timedConn{Conn: c, remote: &remote}, nil
	})
	db := "signet_bench_" + strings.ToLower(rand.Text()[:8])
	admin := mysqltest.Open(b, dsn)
	if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + db) })
	dir := b.TempDir()
	dsnFile := filepath.Join(dir, "admin.dsn")
	if err := os.WriteFile(dsnFile, []byte(strings.Replace(dsn, "@tcp(", "@signet-bench(", 1)), 0o600); err != nil {
		b.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshKey, _ := gossh.NewSignerFromKey(priv)
	cases := []struct{ name, section string }{
		{"mysql", fmt.Sprintf("dsn_file: %s\ngrants: [\"SELECT ON %s.*\"]", dsnFile, db)},
		{"ssh", fmt.Sprintf("ca_key_file: %s\nprincipals: [deploy]\nextensions: [permit-pty]", filepath.Join(dir, "ssh-user-ca"))},
	}
	reg, err := builtin.CredentialProviders()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(c.section), &n); err != nil {
				b.Fatal(err)
			}
			p, err := reg.BuildAt(provider.Deps{Credential: c.name}, c.name, "bench", n.Content[0])
			if err != nil {
				b.Fatal(err)
			}
			if cl, ok := p.(interface{ Close() error }); ok {
				b.Cleanup(func() { _ = cl.Close() })
			}
			var total, own []time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				req := provider.Request{LeaseID: fmt.Sprintf("lease-bench-%d-%s", i, rand.Text()[:6]), Credential: c.name,
					Subject: spiffeid.RequireFromString("spiffe://example.org/etl"), ExpiresAt: time.Now().Add(time.Hour),
					PublicKey: string(gossh.MarshalAuthorizedKey(sshKey.PublicKey()))}
				remote.Store(0)
				start := time.Now()
				cred, err := p.Issue(b.Context(), req)
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				total = append(total, d)
				own = append(own, d-time.Duration(remote.Load()))
				b.StopTimer()
				if err := p.Revoke(b.Context(), provider.Ref{LeaseID: req.LeaseID, RevokeData: cred.RevokeData}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportIssueLatency(b, total, own)
		})
	}
}

// reportIssueLatency reports p50 and p99 of whole issuances and of
// Signet's own share of them, in µs.
func reportIssueLatency(b *testing.B, total, own []time.Duration) {
	slices.Sort(total)
	slices.Sort(own)
	q := func(s []time.Duration, f float64) float64 { return float64(s[int(f*float64(len(s)-1))].Microseconds()) }
	b.ReportMetric(q(total, .5), "p50-µs")
	b.ReportMetric(q(total, .99), "p99-µs")
	b.ReportMetric(q(own, .5), "signet-p50-µs")
	b.ReportMetric(q(own, .99), "signet-p99-µs")
}
