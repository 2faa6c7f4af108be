package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/ci/citest"
)

// consoleCert writes a self-signed certificate for 127.0.0.1 and its key
// (0600) into dir, and returns the files and a pool that trusts it.
func consoleCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "console"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "console.pem"), filepath.Join(dir, "console.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestConsoleOIDCFromTheBinary: `signet server run` with ui_oidc on a
// non-loopback address sends an anonymous browser to sign in at the
// provider, admits a person on the allow list and refuses one who is not.
func TestConsoleOIDCFromTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs processes")
	}
	t.Parallel()
	dir := t.TempDir()
	person := map[string]any{"sub": "u-alice", "email": "alice@example.com", "email_verified": true}
	is := citest.New(t, func() map[string]any { return nil })
	is.ClientID, is.ClientSecret = "signet-console", "s3cret-e2e"
	is.Login = func() map[string]any { return person }
	certFile, keyFile, pool := consoleCert(t, dir)
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(is.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(uiAddress, redirect string) string {
		path := filepath.Join(dir, "server.yaml")
		writeFile(t, path, fmt.Sprintf(`trust_domain: example.org
data_dir: %s
bind_address: 127.0.0.1:0
ui_address: %s
ui_tls: {cert_file: %s, key_file: %s}
ui_oidc:
  issuer: %s
  client_id: %s
  client_secret_file: %s
  redirect_url: %s
  allowed_emails: [alice@example.com]
  ca_bundle_path: %s
log: {level: info}
`, filepath.Join(dir, "data"), uiAddress, certFile, keyFile, is.URL, is.ClientID, secretFile, redirect, is.CAFile))
		return path
	}

	// Without ui_tls the server refuses to start, naming it.
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "trust_domain: example.org\ndata_dir: "+filepath.Join(dir, "bad")+"\nbind_address: 127.0.0.1:0\nui_address: 0.0.0.0:0\n"+
		"ui_oidc: {issuer: "+is.URL+", client_id: c, redirect_url: https://127.0.0.1:1/auth/callback, allowed_emails: [a@example.com]}\n")
	if out, errOut, err := signetRun("server", "run", "--config", bad); err == nil || !strings.Contains(out+errOut, "ui_tls") {
		t.Fatalf("ui_oidc without ui_tls: %v %q, want a refusal naming ui_tls", err, errOut)
	}

	// The redirect URL names the console's port: bind one, then restart on it.
	p := start(t, "server", "server", "run", "--config", config("0.0.0.0:0", "https://127.0.0.1:1/auth/callback"))
	_, port, err := net.SplitHostPort(consoleAddr(t, p))
	if err != nil {
		t.Fatal(err)
	}
	p.stop()
	base := "https://127.0.0.1:" + port
	p = start(t, "server", "server", "run", "--config", config("0.0.0.0:"+port, base+"/auth/callback"))
	if _, again, _ := net.SplitHostPort(consoleAddr(t, p)); again != port {
		t.Fatalf("restarted console bound port %s, want %s", again, port)
	}

	// The browser trusts the console's certificate and the provider's.
	providerCA, err := os.ReadFile(is.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(providerCA)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(c *http.Client, path string) (*http.Response, string) {
		t.Helper()
		var resp *http.Response
		eventually(t, 30*time.Second, "GET "+path, func() error {
			var err error
			resp, err = c.Get(base + path)
			return err
		})
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	anon := &http.Client{Transport: browser.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, _ := get(anon, "/agents"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/auth/login") {
		t.Fatalf("anonymous /agents: %d to %q, want a redirect to sign in", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := get(browser, "/agents")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/agents" || !strings.Contains(body, "Agents") {
		t.Fatalf("after sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if resp, body := get(browser, "/?format=json"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "example.org") {
		t.Fatalf("JSON twin after sign-in: %d %.200s", resp.StatusCode, body)
	}

	// Someone not on the allow list is refused at the callback.
	person = map[string]any{"sub": "u-mallory", "email": "mallory@example.com", "email_verified": true}
	jar2, _ := cookiejar.New(nil)
	other := &http.Client{Jar: jar2, Transport: browser.Transport}
	if resp, body := get(other, "/"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not allowed") {
		t.Fatalf("mallory: %d %q, want 403", resp.StatusCode, body)
	}
}
