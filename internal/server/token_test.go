package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

// jobVerifier stands in for an OIDC verifier: "job:<repo>" is a job of
// that repository, valid for ttl.
type jobVerifier struct{ ttl time.Duration }

func (v jobVerifier) VerifySubject(_ context.Context, typ, tok string) (*tokenapi.Subject, error) {
	repo, ok := strings.CutPrefix(tok, "job:")
	if !ok {
		return nil, tokenapi.ErrNotMine
	}
	return &tokenapi.Subject{Kind: tokenapi.SubjectOIDC, Issuer: "test",
		Parent:    spiffeid.RequireFromString("spiffe://example.org/signet/ci/test"),
		Claims:    map[string]any{"sub": "repo:" + repo},
		Selectors: []model.Selector{{Type: "test", Value: "repository:" + repo}, {Type: "test", Value: "ref:main"}},
		ExpiresAt: time.Now().Add(v.ttl), Via: typ, Detail: map[string]string{"repository": repo}}, nil
}

func tokenEnv(t *testing.T) *testenv.Env {
	return testenv.New(t, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.TokenVerifiers = []tokenapi.SubjectVerifier{jobVerifier{ttl: 10 * time.Minute}}
	})
}

func exchange(t *testing.T, c *http.Client, env *testenv.Env, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", tokenapi.GrantTokenExchange)
	resp, err := c.Post(env.URL(tokenapi.Path), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestTokenEndpointIssuesSVIDs(t *testing.T) {
	env := tokenEnv(t)
	entry := env.CreateEntry(&commonv1.Entry{SpiffeId: "spiffe://example.org/ci/app/deploy", ParentId: "spiffe://example.org/signet/ci/test",
		Selectors: []*commonv1.Selector{{Type: "test", Value: "repository:acme/app"}, {Type: "test", Value: "ref:main"}}})
	c := env.HTTPClient(nil)
	job := url.Values{"subject_token": {"job:acme/app"}, "subject_token_type": {tokenapi.TokenTypeIDToken}}

	t.Run("jwt-svid", func(t *testing.T) {
		f := url.Values{"requested_token_type": {tokenapi.TokenTypeJWT}, "audience": {"spiffe://example.org/api"}}
		for k, v := range job {
			f[k] = v
		}
		status, body := exchange(t, c, env, f)
		if status != 200 {
			t.Fatalf("status %d: %v", status, body)
		}
		tok, _ := body["access_token"].(string)
		svid, err := jwtsvid.ParseAndValidate(tok, env.Server.Bundle(), []string{"spiffe://example.org/api"})
		if err != nil {
			t.Fatalf("JWT-SVID does not verify against the bundle: %v", err)
		}
		if svid.ID.String() != entry.GetSpiffeId() || body["spiffe_id"] != entry.GetSpiffeId() {
			t.Errorf("JWT-SVID for %s (%v), want %s", svid.ID, body["spiffe_id"], entry.GetSpiffeId())
		}
		if left := time.Until(svid.Expiry); left > 5*time.Minute+time.Second {
			t.Errorf("JWT-SVID lives %s, want the default 5m at most", left)
		}
	})
	t.Run("x509-svid", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		f := url.Values{"requested_token_type": {tokenapi.TokenTypeX509SVID}, "csr": {base64.RawURLEncoding.EncodeToString(csr)}}
		for k, v := range job {
			f[k] = v
		}
		status, body := exchange(t, c, env, f)
		if status != 200 {
			t.Fatalf("status %d: %v", status, body)
		}
		certs := pemCerts(t, body["access_token"].(string))
		bundle := pemCerts(t, body["trust_bundle"].(string))
		if len(bundle) == 0 {
			t.Fatal("no trust bundle in the response")
		}
		id, _, err := x509svid.Verify(certs, env.Server.Bundle().X509Bundle())
		if err != nil || id.String() != entry.GetSpiffeId() {
			t.Fatalf("X509-SVID %s does not verify for %s: %v", id, entry.GetSpiffeId(), err)
		}
		// The CI token's remaining validity (10 minutes) caps the 1h default.
		if left := time.Until(certs[0].NotAfter); left > 10*time.Minute+time.Second {
			t.Errorf("X509-SVID lives %s, want at most the subject token's 10m", left)
		}
		if !certs[0].PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
			t.Error("X509-SVID is not for the CSR's key")
		}
	})
	t.Run("other repository refused and audited", func(t *testing.T) {
		status, body := exchange(t, c, env, url.Values{"subject_token": {"job:evil/fork"}, "subject_token_type": {tokenapi.TokenTypeIDToken},
			"requested_token_type": {tokenapi.TokenTypeJWT}, "audience": {"a"}})
		if status != 400 || body["error"] != tokenapi.ErrUnauthorizedClient {
			t.Fatalf("status %d body %v, want 400 unauthorized_client", status, body)
		}
		recs := auditRecords(t, env, "token.exchange.deny")
		if len(recs) == 0 || !strings.Contains(recs[len(recs)-1].GetDetail()["selectors"], "test:repository:evil/fork") {
			t.Errorf("deny audit records %v, want one naming the selectors checked", recs)
		}
	})
	t.Run("issuances audited", func(t *testing.T) {
		for _, action := range []string{"token.exchange.jwt", "token.exchange.x509"} {
			recs := auditRecords(t, env, action)
			if len(recs) != 1 || recs[0].GetDetail()["repository"] != "acme/app" || recs[0].GetObject() != entry.GetId() {
				t.Errorf("%s records = %v, want one with the repository and entry", action, recs)
			}
		}
		if r := auditRecords(t, env, "token.exchange.x509"); len(r) == 1 && r[0].GetDetail()["serial"] == "" {
			t.Errorf("x509 record has no serial: %v", r[0])
		}
	})
	t.Run("svid holder cannot mint by exchange", func(t *testing.T) {
		agent := env.Attest("spiffe://example.org/node/a")
		mc := env.HTTPClient(agent.SVID)
		status, body := exchange(t, mc, env, url.Values{"requested_token_type": {tokenapi.TokenTypeJWT}, "audience": {"a"}})
		if status != 400 || body["error"] != tokenapi.ErrUnauthorizedClient {
			t.Errorf("status %d body %v, want unauthorized_client", status, body)
		}
	})
	t.Run("bad csr names the parameter", func(t *testing.T) {
		f := url.Values{"requested_token_type": {tokenapi.TokenTypeX509SVID}, "csr": {"!!"}}
		for k, v := range job {
			f[k] = v
		}
		status, body := exchange(t, c, env, f)
		if desc, _ := body["error_description"].(string); status != 400 || body["error"] != tokenapi.ErrInvalidRequest || !strings.Contains(desc, "csr") {
			t.Errorf("status %d body %v, want invalid_request naming csr", status, body)
		}
	})
}

func pemCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := []byte(s); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func auditRecords(t *testing.T, env *testenv.Env, action string) []*inventoryv1.AuditRecord {
	t.Helper()
	resp, err := inventoryv1.NewAuditClient(env.AdminConn()).ListAudit(env.Ctx(), &inventoryv1.ListAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*inventoryv1.AuditRecord
	for _, r := range resp.GetRecords() {
		if r.GetAction() == action {
			out = append(out, r)
		}
	}
	return out
}

// TestHTTPTLSCertFile: with http_tls set, the HTTPS listener presents that
// certificate (a web-PKI one, for clients without the trust bundle); half
// a setting or a key of another certificate is refused at start.
func TestHTTPTLSCertFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, key *ecdsa.PrivateKey) (certFile, keyFile string) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"signet.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
		if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certFile, keyFile := write("web", key)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCert, _ := write("other", other)

	env := testenv.New(t, func(c *server.Config) {
		c.HTTPAddress, c.HTTPTLSCertFile, c.HTTPTLSKeyFile = "127.0.0.1:0", certFile, keyFile
	})
	pool := x509.NewCertPool()
	raw, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(raw)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	status, body := exchange(t, c, env, url.Values{"requested_token_type": {tokenapi.TokenTypeJWT}})
	if status != 400 || body["error"] != tokenapi.ErrInvalidRequest {
		t.Errorf("over the web-PKI certificate: status %d body %v, want the endpoint's invalid_request", status, body)
	}

	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"half", certFile, "", "set both cert_file and key_file"},
		{"mismatch", otherCert, keyFile, "is not the key of cert_file"},
	} {
		cfg := server.Config{TrustDomain: env.TrustDomain, DataDir: filepath.Join(dir, tc.name), BindAddress: "127.0.0.1:0",
			HTTPAddress: "127.0.0.1:0", HTTPTLSCertFile: tc.cert, HTTPTLSKeyFile: tc.key}
		_, err := server.New(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: server.New = %v, want an error with %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(cfg.DataDir); err == nil {
			t.Errorf("%s: refused start left the data dir behind", tc.name)
		}
	}
}
