// Package citest runs fake OIDC issuers for tests: an HTTPS server (on
// 127.0.0.1:0, its own test CA) that serves a real discovery document and
// JWKS, mints tokens with GitHub Actions' or GitLab CI's claim sets signed
// by keys made at start, serves GitHub's ID token request endpoint
// (ACTIONS_ID_TOKEN_REQUEST_URL / ACTIONS_ID_TOKEN_REQUEST_TOKEN), and,
// for a person's sign-in, the authorization code flow with PKCE
// (Issuer.Login).
package citest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
)

// Issuer is a running fake issuer.
type Issuer struct {
	URL string // the issuer URL (https://127.0.0.1:port)
	// CAFile is a PEM file of the server's certificate, for ca_bundle_path.
	CAFile string
	// RequestToken is the bearer token the ID token request endpoint wants.
	RequestToken string
	// Audience the request endpoint mints for when the caller names none.
	Audience string

	// Login, when set, is the person the authorization endpoint signs in
	// (it asks nothing): the claims of the ID token the token endpoint
	// returns (iss, aud, iat, exp and nonce are filled in).
	Login func() map[string]any
	// ClientID and ClientSecret are the one client the token endpoint
	// accepts (Basic or form authentication).
	ClientID, ClientSecret string

	srv        *httptest.Server
	codes      map[string]authCode
	mu         sync.Mutex
	keys       []*rsa.PrivateKey // keys[len-1] signs
	kids       []string
	JWKSHits   atomic.Int64
	claimsNext func(aud string) map[string]any // claims the request endpoint mints
}

// New starts a fake issuer; claims builds the claim set of the tokens its
// ID token request endpoint mints (iss, aud, iat, nbf, exp and jti are
// filled in).
func New(t testing.TB, claims func() map[string]any) *Issuer {
	t.Helper()
	is := &Issuer{RequestToken: "req-" + uuid.NewString()}
	is.claimsNext = func(string) map[string]any { return claims() }
	is.Rotate(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/.well-known/jwks",
			"authorization_endpoint": is.URL + "/authorize", "token_endpoint": is.URL + "/token",
			"code_challenge_methods_supported": []string{"S256"},
			"subject_types_supported":          []string{"public"}, "response_types_supported": []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "claims_supported": []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf"}})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.JWKSHits.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for i, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: is.kids[i], Algorithm: "RS256", Use: "sig"})
		}
		is.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=3600")
		writeJSON(w, set)
	})
	// GitHub Actions' ID token request endpoint.
	mux.HandleFunc("GET /_apis/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+is.RequestToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		aud := r.URL.Query().Get("audience")
		if aud == "" {
			aud = is.Audience
		}
		writeJSON(w, map[string]string{"value": is.Mint(t, aud, time.Now(), 10*time.Minute, is.claimsNext(aud))})
	})
	mux.HandleFunc("GET /authorize", is.authorize)
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) { is.token(t, w, r) })
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.CAFile = filepath.Join(t.TempDir(), "issuer-ca.pem")
	if err := os.WriteFile(is.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return is
}

// RequestURL is ACTIONS_ID_TOKEN_REQUEST_URL.
func (is *Issuer) RequestURL() string { return is.URL + "/_apis/token?api-version=2.0" }

// Rotate adds a new signing key (the JWKS keeps the old ones).
func (is *Issuer) Rotate(t testing.TB) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, k)
	is.kids = append(is.kids, fmt.Sprintf("key-%d", len(is.keys)))
}

// Mint signs a token for aud with claims, issued at iat, living ttl; claims
// override the standard ones, and a nil value removes one.
func (is *Issuer) Mint(t testing.TB, aud string, iat time.Time, ttl time.Duration, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": is.URL, "aud": aud, "iat": iat.Unix(), "nbf": iat.Unix(), "exp": iat.Add(ttl).Unix(), "jti": uuid.NewString()}
	for k, v := range claims {
		if v == nil {
			delete(c, k) // a nil value removes a standard claim
		} else {
			c[k] = v
		}
	}
	is.mu.Lock()
	key, kid := is.keys[len(is.keys)-1], is.kids[len(is.kids)-1]
	is.mu.Unlock()
	return Sign(t, jose.RS256, key, kid, c)
}

// Sign signs claims as a compact JWS with alg and key (any key go-jose
// accepts, an HMAC secret included).
func Sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Unsigned is an alg "none" token with claims.
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return b64(h) + "." + b64(p) + "."
}

// GitHubClaims is the claim set of a GitHub Actions job of repo on ref.
func GitHubClaims(repo, ref string) map[string]any {
	owner := repo
	for i := range repo {
		if repo[i] == '/' {
			owner = repo[:i]
			break
		}
	}
	return map[string]any{
		"sub": "repo:" + repo + ":ref:" + ref, "ref": ref, "ref_type": "branch", "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
		"repository": repo, "repository_owner": owner, "repository_owner_id": "100", "repository_id": "4242",
		"repository_visibility": "private", "run_id": "9001", "run_number": "7", "run_attempt": "1",
		"actor": "octocat", "actor_id": "1", "workflow": "deploy", "event_name": "push", "environment": "production",
		"workflow_ref": repo + "/.github/workflows/deploy.yml@" + ref, "workflow_sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
		"job_workflow_ref": repo + "/.github/workflows/deploy.yml@" + ref, "runner_environment": "github-hosted",
		"head_ref": "", "base_ref": "",
	}
}

// GitLabClaims is the claim set of a GitLab CI job of project on ref.
func GitLabClaims(project, ref string) map[string]any {
	ns := project
	for i := len(project) - 1; i >= 0; i-- {
		if project[i] == '/' {
			ns = project[:i]
			break
		}
	}
	return map[string]any{
		"sub": "project_path:" + project + ":ref_type:branch:ref:" + ref, "namespace_id": "72", "namespace_path": ns,
		"project_id": "20", "project_path": project, "user_id": "5", "user_login": "alice", "user_email": "alice@example.com",
		"pipeline_id": "1212", "pipeline_source": "push", "job_id": "3434", "ref": ref, "ref_type": "branch", "ref_path": "refs/heads/" + ref,
		"ref_protected": "true", "environment": "production", "environment_protected": "true", "runner_id": 1, "runner_environment": "gitlab-hosted",
		"sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
	}
}

// authCode is an authorization code the authorization endpoint handed out.
type authCode struct {
	clientID, redirectURI, nonce, challenge string
	claims                                  map[string]any
}

// authorize is the authorization endpoint: it checks the request as a
// provider does (client, redirect URI, response type, openid scope, S256
// challenge) and redirects back at once with a code for is.Login.
func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	switch {
	case is.Login == nil:
		http.Error(w, "no sign-in configured", http.StatusNotFound)
		return
	case q.Get("client_id") != is.ClientID || is.ClientID == "":
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case redirect == "" || q.Get("response_type") != "code" || !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		http.Error(w, "want response_type code, scope openid and a redirect_uri", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE with S256 is required", http.StatusBadRequest)
		return
	}
	code := "code-" + uuid.NewString()
	is.mu.Lock()
	if is.codes == nil {
		is.codes = map[string]authCode{}
	}
	is.codes[code] = authCode{clientID: is.ClientID, redirectURI: redirect, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), claims: is.Login()}
	is.mu.Unlock()
	u, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := u.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token is the token endpoint of the authorization code grant: one use per
// code, the client's secret, the same redirect URI and the PKCE verifier.
func (is *Issuer) token(t testing.TB, w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	oauthErr := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if id != is.ClientID || secret != is.ClientSecret {
		oauthErr("invalid_client")
		return
	}
	is.mu.Lock()
	c, found := is.codes[r.PostForm.Get("code")]
	delete(is.codes, r.PostForm.Get("code"))
	is.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case r.PostForm.Get("grant_type") != "authorization_code":
		oauthErr("unsupported_grant_type")
		return
	case !found || c.redirectURI != r.PostForm.Get("redirect_uri") || b64(sum[:]) != c.challenge:
		oauthErr("invalid_grant")
		return
	}
	claims := map[string]any{"nonce": c.nonce, "jti": nil, "nbf": nil}
	for k, v := range c.claims {
		claims[k] = v
	}
	writeJSON(w, map[string]any{"access_token": "at-" + uuid.NewString(), "token_type": "Bearer", "expires_in": 300,
		"id_token": is.Mint(t, c.clientID, time.Now(), 5*time.Minute, claims)})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
