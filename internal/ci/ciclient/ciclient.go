// Package ciclient is the runner side of agentless CI identity: it finds
// the job's OIDC token (GitHub Actions' ID token request, GitLab's
// SIGNET_ID_TOKEN, or a file), exchanges it at the server's token endpoint
// for an X509-SVID whose key it generates and keeps, and trades that SVID,
// over mTLS, for JWT-SVIDs. signet ci exchange and signet ci run use it.
package ciclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/tokenapi"
)

// Environment variables read for the job's token.
const (
	EnvGitHubURL   = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvGitHubToken = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
	EnvGitLab      = "SIGNET_ID_TOKEN"
)

// TokenSource returns a CI token for audience. Fresh reports whether each
// call can return a new token (GitHub's request endpoint can; a file or
// GitLab's variable holds one).
type TokenSource struct {
	Describe string
	Fresh    bool
	Get      func(ctx context.Context, audience string) (string, error)
}

// FindToken picks the token source: file when set, else GitHub's request
// endpoint when its variables are set, else SIGNET_ID_TOKEN.
func FindToken(file string, getenv func(string) string, hc *http.Client) (TokenSource, error) {
	if file != "" {
		return TokenSource{Describe: "--token-file " + file, Get: func(context.Context, string) (string, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return "", fmt.Errorf("--token-file: %w", err)
			}
			if tok := strings.TrimSpace(string(b)); tok != "" {
				return tok, nil
			}
			return "", fmt.Errorf("--token-file %s is empty", file)
		}}, nil
	}
	if u, t := getenv(EnvGitHubURL), getenv(EnvGitHubToken); u != "" && t != "" {
		return TokenSource{Describe: "GitHub Actions ID token", Fresh: true, Get: func(ctx context.Context, aud string) (string, error) {
			return gitHubToken(ctx, hc, u, t, aud)
		}}, nil
	}
	if tok := strings.TrimSpace(getenv(EnvGitLab)); tok != "" {
		return TokenSource{Describe: "$" + EnvGitLab, Get: func(context.Context, string) (string, error) { return tok, nil }}, nil
	}
	return TokenSource{}, fmt.Errorf("no CI token: give --token-file, run in GitHub Actions with permissions id-token: write (%s), or in GitLab with an id_tokens entry named %s", EnvGitHubURL, EnvGitLab)
}

// gitHubToken asks GitHub Actions' ID token request endpoint for a token.
func gitHubToken(ctx context.Context, hc *http.Client, reqURL, reqToken, aud string) (string, error) {
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("%s is not a URL", EnvGitHubURL)
	}
	q := u.Query()
	q.Set("audience", aud)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+reqToken)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("request GitHub ID token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("request GitHub ID token: %s", resp.Status)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", errors.New("request GitHub ID token: the response has no value")
	}
	return v.Value, nil
}

// Client talks to one server's token endpoint.
type Client struct {
	// BaseURL is https://host:port.
	BaseURL string
	roots   *x509.CertPool
	bundle  []*x509.Certificate
	http    *http.Client
}

// New returns a client of server (host:port or an https URL). trustBundle
// holds the PEM roots the server is verified with (its SVID against the
// trust bundle, or a web-PKI certificate); nil: the system's roots.
func New(server string, trustBundle []*x509.Certificate) (*Client, error) {
	base := server
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want host:port or an https URL", server)
	}
	c := &Client{BaseURL: strings.TrimSuffix(u.String(), "/"), bundle: trustBundle}
	if len(trustBundle) > 0 {
		c.roots = x509.NewCertPool()
		for _, b := range trustBundle {
			c.roots.AddCert(b)
		}
	}
	c.http = c.httpClient(nil)
	return c, nil
}

// httpClient presents cert when not nil.
func (c *Client) httpClient(cert *tls.Certificate) *http.Client {
	host, _, _ := net.SplitHostPort(strings.TrimPrefix(c.BaseURL, "https://"))
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.roots}
	if c.roots != nil {
		// The server may present its SVID (no DNS name) or a web-PKI
		// certificate; both are verified here against the bundle.
		cfg.InsecureSkipVerify = true //nolint:gosec // verified in VerifyPeerCertificate
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error { return c.verifyServer(raw, host) }
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
}

func (c *Client) verifyServer(raw [][]byte, host string) error {
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		cert, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return errors.New("server presented no certificate")
	}
	if len(certs[0].URIs) == 1 && certs[0].URIs[0].Scheme == "spiffe" {
		id, err := x509svid.IDFromCert(certs[0])
		if err != nil {
			return err
		}
		if id.Path() != "/signet/server" {
			return fmt.Errorf("server presented %s, not a Signet server's SVID", id)
		}
		_, _, err = x509svid.Verify(certs, x509bundle.FromX509Authorities(id.TrustDomain(), c.bundle))
		return err
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, DNSName: host})
	return err
}

// SVID is an X509-SVID with its key and the trust domain's bundle.
type SVID struct {
	ID     spiffeid.ID
	Chain  []*x509.Certificate
	Key    crypto.Signer
	Bundle []*x509.Certificate
	// SPIFFEBundle is the full bundle (X.509 and JWT authorities), when
	// the server sent it.
	SPIFFEBundle *spiffebundle.Bundle
}

// TLSCertificate is the SVID for a TLS client.
func (s *SVID) TLSCertificate() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: s.Key, Leaf: s.Chain[0]}
	for _, x := range s.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// ExchangeX509 trades ciToken for an X509-SVID of a fresh P-256 key.
// spiffeID, when set, picks among several matching entries.
func (c *Client) ExchangeX509(ctx context.Context, ciToken, spiffeID string) (*SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	form := url.Values{"subject_token": {ciToken}, "subject_token_type": {tokenapi.TokenTypeIDToken},
		"requested_token_type": {tokenapi.TokenTypeX509SVID}, "csr": {base64.RawURLEncoding.EncodeToString(csr)}}
	if spiffeID != "" {
		form.Set("spiffe_id", spiffeID)
	}
	body, err := c.post(ctx, c.http, form)
	if err != nil {
		return nil, err
	}
	chain := parsePEM(body["access_token"])
	bundle := parsePEM(body["trust_bundle"])
	if len(chain) == 0 || len(bundle) == 0 {
		return nil, errors.New("token endpoint: the response holds no X509-SVID or no trust bundle")
	}
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(mustTD(chain[0])), bundle))
	if err != nil {
		return nil, fmt.Errorf("token endpoint: the X509-SVID does not verify against its bundle: %w", err)
	}
	svid := &SVID{ID: id, Chain: chain, Key: key, Bundle: bundle}
	if raw := body["spiffe_bundle"]; raw != "" {
		if b, err := spiffebundle.Parse(id.TrustDomain(), []byte(raw)); err == nil {
			svid.SPIFFEBundle = b
		}
	}
	if svid.SPIFFEBundle == nil {
		svid.SPIFFEBundle = spiffebundle.FromX509Authorities(id.TrustDomain(), bundle)
	}
	return svid, nil
}

func mustTD(c *x509.Certificate) string {
	if id, err := x509svid.IDFromCert(c); err == nil {
		return id.TrustDomain().Name()
	}
	return "invalid"
}

// JWT trades an X509-SVID (over mTLS) for a JWT-SVID of the same ID.
func (c *Client) JWT(ctx context.Context, svid *SVID, audience []string) (string, time.Time, error) {
	form := url.Values{"requested_token_type": {tokenapi.TokenTypeJWT}, "audience": audience}
	hc := c.httpClient(svid.TLSCertificate())
	defer hc.CloseIdleConnections()
	body, err := c.post(ctx, hc, form)
	if err != nil {
		return "", time.Time{}, err
	}
	tok := body["access_token"]
	exp := time.Now().Add(time.Minute)
	if n, err := json.Number(body["expires_in"]).Int64(); err == nil {
		exp = time.Now().Add(time.Duration(n) * time.Second)
	}
	return tok, exp, nil
}

// Error is the endpoint's OAuth error.
type Error struct{ Code, Description string }

func (e *Error) Error() string { return "token endpoint: " + e.Code + ": " + e.Description }

func (c *Client) post(ctx context.Context, hc *http.Client, form url.Values) (map[string]string, error) {
	form.Set("grant_type", tokenapi.GrantTokenExchange)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+tokenapi.Path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token endpoint %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("token endpoint: %s with a body that is not JSON", resp.Status)
	}
	out := map[string]string{}
	for k, v := range body {
		switch x := v.(type) {
		case string:
			out[k] = x
		case float64:
			out[k] = fmt.Sprint(int64(x))
		}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Code: out["error"], Description: out["error_description"]}
	}
	return out, nil
}

func parsePEM(s string) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := []byte(s); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
}

// EncodeCerts is certs as PEM.
func EncodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey is key as PKCS #8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
