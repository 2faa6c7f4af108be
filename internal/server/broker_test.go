package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"gopkg.in/yaml.v3"

	brokerexchange "github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/config"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const brokerPolicy = `
rules:
  - name: billing-gets-stripe
    credentials: [stripe]
    when: subject.id == "spiffe://example.org/billing" && context.ticket.startsWith("CHG-")
    ttl: 10m
`

func writeFile(t testing.TB, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func kek(t testing.TB, dir string) string {
	k := make([]byte, 32)
	rand.Read(k)
	return writeFile(t, dir, "broker.kek", string(k), 0o600)
}

func creds(t testing.TB, y string) config.Plugins {
	t.Helper()
	var p config.Plugins
	if err := yaml.Unmarshal([]byte(y), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// brokerEnv starts a server with the broker (brokerPolicy, a static
// credential "stripe"); opts then change its configuration further.
func brokerEnv(t testing.TB, opts ...testenv.Option) *testenv.Env {
	dir := t.TempDir()
	return testenv.New(t, append([]testenv.Option{func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.TokenVerifiers = []tokenapi.SubjectVerifier{jobVerifier{ttl: 10 * time.Minute}}
		c.Broker = server.BrokerConfig{
			KEKFile:     kek(t, dir),
			PolicyFile:  writeFile(t, dir, "policy.yaml", brokerPolicy, 0o600),
			Credentials: creds(t, "stripe: {provider: static, max_ttl: 30m}"),
		}
	}}, opts...)...)
}

// workloadSVID gets an X509-SVID for spiffeID through a CI job (the
// quickest way to a workload SVID in a server test).
func workloadSVID(t testing.TB, env *testenv.Env, spiffeID, repo string) *x509svid.SVID {
	t.Helper()
	env.CreateEntry(&commonv1.Entry{SpiffeId: spiffeID, ParentId: "spiffe://example.org/signet/ci/test",
		Selectors: []*commonv1.Selector{{Type: "test", Value: "repository:" + repo}}})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	var body map[string]any
	var status int
	for range 50 { // the entry cache follows the store within its refresh
		status, body = postForm(t, env.HTTPClient(nil), env, url.Values{"subject_token": {"job:" + repo}, "subject_token_type": {tokenapi.TokenTypeIDToken},
			"requested_token_type": {tokenapi.TokenTypeX509SVID}, "csr": {base64.RawURLEncoding.EncodeToString(csr)}})
		if status == 200 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status != 200 {
		t.Fatalf("x509-svid for %s: %d %v", spiffeID, status, body)
	}
	var chain [][]byte
	for rest := []byte(body["access_token"].(string)); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		chain = append(chain, blk.Bytes)
	}
	return testenv.SVIDFromChain(t, chain, key)
}

func TestBrokerAtTheTokenEndpoint(t *testing.T) {
	env := brokerEnv(t)
	if _, err := env.Server.Broker().PutSecret(env.Ctx(), "stripe", []byte("sk_live_abc")); err != nil {
		t.Fatal(err)
	}
	billing := env.HTTPClient(workloadSVID(t, env, "spiffe://example.org/billing", "acme/billing"))
	other := env.HTTPClient(workloadSVID(t, env, "spiffe://example.org/other", "acme/other"))
	cred := func(extra url.Values) url.Values {
		f := url.Values{"requested_token_type": {brokerexchange.TokenTypeCredential}, "resource": {"stripe"},
			"request_context": {`{"ticket":"CHG-7"}`}}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}

	t.Run("allowed over mTLS", func(t *testing.T) {
		status, body := exchange(t, billing, env, cred(nil))
		if status != 200 {
			t.Fatalf("status %d: %v", status, body)
		}
		data, _ := body["data"].(map[string]any)
		if data["value"] != "sk_live_abc" || body["credential"] != "stripe" || body["lease_id"] != body["access_token"] {
			t.Fatalf("body = %v", body)
		}
		exp, err := time.Parse(time.RFC3339, body["expires_at"].(string))
		if err != nil || time.Until(exp) > 10*time.Minute+time.Second {
			t.Errorf("expires_at %v (%v): want the rule's 10m at most", body["expires_at"], err)
		}
	})
	t.Run("allowed with a JWT-SVID subject_token", func(t *testing.T) {
		status, body := exchange(t, env.HTTPClient(nil), env, url.Values{"subject_token": {"job:acme/billing"}, "subject_token_type": {tokenapi.TokenTypeIDToken},
			"requested_token_type": {tokenapi.TokenTypeJWT}, "audience": {server.ServerID(env.TrustDomain).String()}})
		if status != 200 {
			t.Fatalf("jwt-svid: %d %v", status, body)
		}
		status, body = exchange(t, env.HTTPClient(nil), env, cred(url.Values{"subject_token": {body["access_token"].(string)}, "subject_token_type": {tokenapi.TokenTypeJWT}}))
		if status != 200 {
			t.Fatalf("status %d: %v", status, body)
		}
	})
	forged := forgeJWT(t, server.ServerID(env.TrustDomain).String())
	clients := map[string]*http.Client{"billing": billing, "other": other, "none": env.HTTPClient(nil)}
	cases := map[string]struct {
		form   url.Values
		client string
		code   string
		desc   string
	}{
		"other id":         {cred(nil), "other", tokenapi.ErrUnauthorizedClient, "policy denies credential stripe"},
		"missing context":  {cred(url.Values{"request_context": nil}), "billing", tokenapi.ErrUnauthorizedClient, "policy denies"},
		"context not json": {cred(url.Values{"request_context": {`["x"]`}}), "billing", tokenapi.ErrInvalidRequest, "request_context"},
		"unknown":          {cred(url.Values{"resource": {"nope"}}), "billing", tokenapi.ErrInvalidTarget, `credential "nope" is not configured`},
		"ttl over max":     {cred(url.Values{"ttl": {"2h"}}), "billing", tokenapi.ErrInvalidRequest, "max_ttl"},
		"bad ttl":          {cred(url.Values{"ttl": {"soon"}}), "billing", tokenapi.ErrInvalidRequest, "parameter ttl"},
		"two credentials":  {cred(url.Values{"audience": {"x"}}), "billing", tokenapi.ErrInvalidRequest, "exactly one credential"},
		"no svid":          {cred(nil), "none", tokenapi.ErrInvalidRequest, "subject_token is required"},
		"forged jwt-svid": {cred(url.Values{"subject_token": {forged}, "subject_token_type": {tokenapi.TokenTypeJWT}}), "none",
			tokenapi.ErrInvalidGrant, "not a valid JWT-SVID"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range c.form {
				if v != nil {
					f[k] = v
				}
			}
			status, body := exchange(t, clients[c.client], env, f)
			desc, _ := body["error_description"].(string)
			if status == 200 || body["error"] != c.code || !strings.Contains(desc, c.desc) {
				t.Errorf("status %d body %v, want %s containing %q", status, body, c.code, c.desc)
			}
		})
	}
	t.Run("transaction token", func(t *testing.T) {
		status, body := exchange(t, billing, env, url.Values{"requested_token_type": {brokerexchange.TokenTypeTxnToken},
			"request_context": {`{"ticket":"CHG-7","order":42}`}})
		if status != 200 {
			t.Fatalf("status %d: %v", status, body)
		}
		tok, err := jwt.ParseSigned(body["access_token"].(string), []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		h := tok.Headers[0]
		if h.ExtraHeaders["typ"] != "txntoken+jwt" {
			t.Errorf("typ = %v, want txntoken+jwt", h.ExtraHeaders["typ"])
		}
		key, ok := env.Server.Bundle().JWTBundle().FindJWTAuthority(h.KeyID)
		if !ok {
			t.Fatalf("kid %q is not in the trust domain's JWT keys", h.KeyID)
		}
		var claims struct {
			jwt.Claims
			Txn  string         `json:"txn"`
			Rctx map[string]any `json:"rctx"`
			Tctx map[string]any `json:"tctx"`
		}
		if err := tok.Claims(key, &claims); err != nil {
			t.Fatalf("txn-token does not verify with the trust domain's JWT key: %v", err)
		}
		if claims.Subject != "spiffe://example.org/billing" || claims.Txn == "" || claims.Txn != body["txn"] ||
			claims.Tctx["ticket"] != "CHG-7" || claims.Rctx["authn"] != "mtls" || !slices.Contains(claims.Audience, "example.org") {
			t.Errorf("claims = %+v", claims)
		}
		if time.Until(claims.Expiry.Time()) > 5*time.Minute+time.Second {
			t.Errorf("txn-token lives until %v, want the 5m default", claims.Expiry.Time())
		}
		if status, body := exchange(t, billing, env, url.Values{"requested_token_type": {brokerexchange.TokenTypeTxnToken},
			"request_context": {`"x"`}}); status != 400 || body["error"] != tokenapi.ErrInvalidRequest {
			t.Errorf("bad request_context: %d %v", status, body)
		}
	})
	t.Run("inventory lists brokered credentials", func(t *testing.T) {
		resp, err := inventoryv1.NewInventoryClient(env.AdminConn()).ListInventory(env.Ctx(), &inventoryv1.ListInventoryRequest{Kind: "credential"})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetItems()) == 0 || !strings.Contains(resp.GetItems()[0].GetName(), "stripe for spiffe://example.org/billing") {
			t.Errorf("inventory credential items = %v", resp.GetItems())
		}
	})
	t.Run("denials audited", func(t *testing.T) {
		recs := auditRecords(t, env, "broker.deny")
		var subjects []string
		for _, r := range recs {
			subjects = append(subjects, r.GetDetail()["subject"])
		}
		if !slices.Contains(subjects, "spiffe://example.org/other") || !slices.Contains(subjects, "spiffe://example.org/billing") {
			t.Errorf("broker.deny records for %v, want other (wrong id) and billing (missing context)", subjects)
		}
	})
}

// forgeJWT signs a JWT-SVID-shaped token with a key the trust domain does
// not have.
func forgeJWT(t *testing.T, aud string) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "forged"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Subject: "spiffe://example.org/billing", Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestBrokerConfigRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "policy.yaml", brokerPolicy, 0o600)
	bad := writeFile(t, dir, "bad.yaml", "rules:\n  - name: broken\n    credentials: [stripe]\n    when: subject.id == 1\n", 0o600)
	openKEK := writeFile(t, dir, "open.kek", strings.Repeat("k", 32), 0o644)
	cases := map[string]struct {
		b    server.BrokerConfig
		want []string
	}{
		"no kek":       {server.BrokerConfig{PolicyFile: good}, []string{"broker.kek_file: required"}},
		"kek mode":     {server.BrokerConfig{KEKFile: openKEK, PolicyFile: good}, []string{"chmod 600"}},
		"policy type":  {server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: bad}, []string{"broker.policy_file", "broken"}},
		"no provider":  {server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: good, Credentials: creds(t, "x: {max_ttl: 1h}")}, []string{"broker.credentials.x.provider: required"}},
		"bad provider": {server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: good, Credentials: creds(t, "x: {provider: vault}")}, []string{"unknown credential provider"}},
		"bad template": {server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: good, Credentials: creds(t,
			"db: {provider: postgres, dsn_file: /nonexistent, creation_statements: [\"CREATE ROLE {{name}} PASSWORD '{{password}}'\"]}")},
			[]string{"broker.credentials.db.creation_statements[0]", "quoted"}},
		"unknown key": {server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: good, Credentials: creds(t, "s: {provider: static, ttl: 1h}")}, []string{"broker.credentials.s.ttl"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := devServerConfig(t)
			cfg.Broker = c.b
			_, err := server.New(t.Context(), cfg)
			if err == nil {
				t.Fatal("server.New succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
	t.Run("wrong kek on restart", func(t *testing.T) {
		cfg := devServerConfig(t)
		cfg.Broker = server.BrokerConfig{KEKFile: kek(t, dir), PolicyFile: good}
		srv, err := server.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		srvClose(srv)
		cfg.Broker.KEKFile = kek(t, t.TempDir())
		_, err = server.New(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), "not the key-encryption key") {
			t.Fatalf("restart with another KEK = %v", err)
		}
	})
}

func devServerConfig(t *testing.T) server.Config {
	return server.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), DataDir: filepath.Join(t.TempDir(), "server"), BindAddress: "127.0.0.1:0"}
}

// srvClose stops a server that was made but not run: Run on a cancelled
// context releases everything.
func srvClose(srv *server.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = srv.Run(ctx)
}

// postForm is exchange for benchmarks and helpers shared with them.
func postForm(tb testing.TB, c *http.Client, env *testenv.Env, form url.Values) (int, map[string]any) {
	tb.Helper()
	form.Set("grant_type", tokenapi.GrantTokenExchange)
	resp, err := c.Post(env.URL(tokenapi.Path), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, body
}

// BenchmarkBrokerTokenEndpoint measures token-endpoint requests over mTLS
// (one connection reused) for a static credential and for a Txn-Token. The
// endpoint limits each client address to 200 requests/s with a burst of
// 400, so run it with -benchtime 350x: it measures the server's own rate
// inside the burst. Each case gets a fresh server.
func BenchmarkBrokerTokenEndpoint(b *testing.B) {
	for _, bc := range []struct{ name, typ string }{
		{"static", brokerexchange.TokenTypeCredential},
		{"txn-token", brokerexchange.TokenTypeTxnToken},
	} {
		b.Run(bc.name, func(b *testing.B) {
			env := brokerEnv(b)
			if _, err := env.Server.Broker().PutSecret(env.Ctx(), "stripe", []byte("sk_live_abc")); err != nil {
				b.Fatal(err)
			}
			c := env.HTTPClient(workloadSVID(b, env, "spiffe://example.org/billing", "acme/billing"))
			form := url.Values{"requested_token_type": {bc.typ}, "resource": {"stripe"}, "request_context": {`{"ticket":"CHG-7"}`}}
			if bc.typ == brokerexchange.TokenTypeTxnToken {
				form.Del("resource")
			}
			b.ReportAllocs()
			for b.Loop() {
				if status, body := postForm(b, c, env, form); status != 200 {
					b.Fatalf("status %d: %v", status, body)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
