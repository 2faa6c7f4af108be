package remotetest

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// AS is a fake OAuth 2.0 authorization server's token endpoint: the
// client-credentials grant authenticated by an RFC 7523 JWT client
// assertion, and RFC 8693 token exchange of a JWT subject token. Entra ID's
// v2.0 token endpoint is one (with Path /TENANT/oauth2/v2.0/token and
// audience api://AzureADTokenExchange). Assertions are JWT-SVIDs verified
// through the issuer's discovery document. Errors are RFC 6749 section 5.2
// JSON (with Entra's error_codes).
type AS struct {
	URL string // the token endpoint
	cfg ASConfig
	v   *verifier

	mu     sync.Mutex
	tokens map[string]ASToken
}

// ASConfig says what an AS accepts.
type ASConfig struct {
	// Path of the token endpoint, default /oauth2/token.
	Path string
	// Audience the assertions must carry; default the token endpoint URL.
	Audience string
	// ClientID the client-credentials grant must name.
	ClientID string
	// ExpiresIn of issued tokens, seconds; default 3600.
	ExpiresIn int64
}

// ASToken is one issued access token.
type ASToken struct {
	Subject, Scope, Grant, ClientID string
	Expires                         time.Time
}

// NewAS starts a fake AS trusting iss, stopped when the test ends.
func NewAS(t testing.TB, iss *Issuer, cfg ASConfig) *AS {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = "/oauth2/token"
	}
	if cfg.ExpiresIn == 0 {
		cfg.ExpiresIn = 3600
	}
	a := &AS{cfg: cfg, tokens: map[string]ASToken{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cfg.Path, a.serve)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	a.URL = srv.URL + cfg.Path
	if a.cfg.Audience == "" {
		a.cfg.Audience = a.URL
	}
	a.v = iss.verifier(t, a.cfg.Audience)
	return a
}

// Token returns what access token tok was issued for.
func (a *AS) Token(tok string) (ASToken, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.tokens[tok]
	return v, ok
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": code, "error_description": desc, "error_codes": []int{700024}})
}

func (a *AS) serve(w http.ResponseWriter, r *http.Request) {
	if r.ParseForm() != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	f := r.PostForm
	if f.Get("client_secret") != "" {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client secrets are not accepted for this client")
		return
	}
	var tok, grant string
	switch grant = f.Get("grant_type"); grant {
	case "client_credentials":
		if f.Get("client_id") != a.cfg.ClientID {
			oauthError(w, http.StatusBadRequest, "unauthorized_client", "client_id "+f.Get("client_id")+" is not registered")
			return
		}
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			oauthError(w, http.StatusUnauthorized, "invalid_client", "client_assertion_type must be jwt-bearer")
			return
		}
		tok = f.Get("client_assertion")
	case "urn:ietf:params:oauth:grant-type:token-exchange":
		if f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt" {
			oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be urn:ietf:params:oauth:token-type:jwt")
			return
		}
		tok = f.Get("subject_token")
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type "+grant+" is not supported")
		return
	}
	sub, err := a.v.verify(r.Context(), tok)
	if err != nil {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "AADSTS700024: client assertion is not valid: "+err.Error())
		return
	}
	access := "at-" + rand.Text() + rand.Text()
	a.mu.Lock()
	a.tokens[access] = ASToken{Subject: sub, Scope: f.Get("scope"), Grant: grant, ClientID: f.Get("client_id"),
		Expires: time.Now().Add(time.Duration(a.cfg.ExpiresIn) * time.Second)}
	a.mu.Unlock()
	resp := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": a.cfg.ExpiresIn}
	if s := f.Get("scope"); s != "" {
		resp["scope"] = s
	}
	if strings.HasSuffix(grant, "token-exchange") {
		resp["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}
