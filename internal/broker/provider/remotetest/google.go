package remotetest

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Google is a fake of Google's Security Token Service (POST /v1/token, an
// RFC 8693 exchange for a workload identity pool provider) and IAM
// Credentials (POST /v1/projects/-/serviceAccounts/SA:generateAccessToken),
// with their JSON requests, responses and error shapes. The pool provider
// trusts one issuer with the default allowed audience ("https:" and the
// provider's resource name); one service account may be impersonated.
type Google struct {
	URL string // serves both APIs

	audience, serviceAccount string
	v                        *verifier

	mu        sync.Mutex
	federated map[string]string // federated token → subject
	tokens    map[string]GoogleToken
}

// GoogleToken is an access token generateAccessToken issued.
type GoogleToken struct {
	Subject, ServiceAccount string
	Scopes                  []string
	Expires                 time.Time
}

// NewGoogle starts the fake for pool provider audience, trusting iss,
// letting its principals impersonate serviceAccount.
func NewGoogle(t testing.TB, iss *Issuer, audience, serviceAccount string) *Google {
	t.Helper()
	g := &Google{audience: audience, serviceAccount: serviceAccount, v: iss.verifier(t, "https:"+audience),
		federated: map[string]string{}, tokens: map[string]GoogleToken{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/token", g.sts)
	mux.HandleFunc("POST /v1/projects/-/serviceAccounts/{name}", g.generate)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// Token returns what generateAccessToken issued as tok.
func (g *Google) Token(tok string) (GoogleToken, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.tokens[tok]
	return v, ok
}

func (g *Google) sts(w http.ResponseWriter, r *http.Request) {
	if r.ParseForm() != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid form body")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid value for \"grant_type\"")
		return
	case f.Get("audience") != g.audience:
		oauthError(w, http.StatusBadRequest, "invalid_target", "The target service indicated by the \"audience\" parameters is invalid.")
		return
	case f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
		oauthError(w, http.StatusBadRequest, "invalid_request", "Invalid value for \"subject_token_type\"")
		return
	}
	sub, err := g.v.verify(r.Context(), f.Get("subject_token"))
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "The audience in ID Token does not match the expected audience or the token is invalid: "+err.Error())
		return
	}
	fed := "fed-" + rand.Text()
	g.mu.Lock()
	g.federated[fed] = sub
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fed, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"token_type": "Bearer", "expires_in": 3600})
}

func googleError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func (g *Google) generate(w http.ResponseWriter, r *http.Request) {
	sa, ok := strings.CutSuffix(r.PathValue("name"), ":generateAccessToken")
	if !ok {
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Method not found.")
		return
	}
	g.mu.Lock()
	sub, known := g.federated[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	g.mu.Unlock()
	if !known {
		googleError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	if sa != g.serviceAccount {
		googleError(w, http.StatusForbidden, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).")
		return
	}
	var req struct {
		Scope    []string `json:"scope"`
		Lifetime string   `json:"lifetime"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || len(req.Scope) == 0 {
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Request contains an invalid argument.")
		return
	}
	secs, err := strconv.Atoi(strings.TrimSuffix(req.Lifetime, "s"))
	if err != nil || secs < 1 || secs > 3600 || !strings.HasSuffix(req.Lifetime, "s") {
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "The lifetime must be between 1s and 3600s.")
		return
	}
	tok := "ya29." + rand.Text() + rand.Text()
	exp := time.Now().Add(time.Duration(secs) * time.Second).UTC().Truncate(time.Second)
	g.mu.Lock()
	g.tokens[tok] = GoogleToken{Subject: sub, ServiceAccount: sa, Scopes: req.Scope, Expires: exp}
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"accessToken": tok, "expireTime": exp.Format(time.RFC3339)})
}
