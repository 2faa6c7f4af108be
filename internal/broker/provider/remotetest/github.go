package remotetest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GitHub is a fake of the GitHub REST API parts a GitHub App uses for
// installation tokens: GET /repos/OWNER/REPO/installation and POST
// /app/installations/ID/access_tokens (authenticated by the app's RS256
// JWT, checked against the app's public key), DELETE /installation/token
// and GET /installation/repositories (authenticated by the installation
// token), with GitHub's JSON bodies and {"message"} errors.
type GitHub struct {
	URL string

	appID int64
	key   *rsa.PublicKey
	owner string
	// Granted is what the installation may grant; WidenTo, when set, is
	// returned instead of what was asked (a misbehaving server).
	granted map[string]string
	widenTo map[string]string

	mu     sync.Mutex
	tokens map[string]GitHubToken
}

// GitHubToken is one installation token.
type GitHubToken struct {
	Repositories []string
	Permissions  map[string]string
	Expires      time.Time
	Revoked      bool
}

// NewGitHub starts the fake with one installation (id 42) of app appID on
// owner's repositories, granting up to granted.
func NewGitHub(t testing.TB, appID int64, key *rsa.PublicKey, owner string, granted map[string]string) *GitHub {
	t.Helper()
	g := &GitHub{appID: appID, key: key, owner: owner, granted: granted, tokens: map[string]GitHubToken{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/{owner}/{repo}/installation", g.installation)
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", g.createToken)
	mux.HandleFunc("DELETE /installation/token", g.revoke)
	mux.HandleFunc("GET /installation/repositories", g.repositories)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// Widen makes token creation grant perms regardless of the request.
func (g *GitHub) Widen(perms map[string]string) { g.widenTo = perms }

// Token returns the installation token tok's record.
func (g *GitHub) Token(tok string) (GitHubToken, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.tokens[tok]
	return v, ok
}

func ghFail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest"})
}

func (g *GitHub) appAuth(w http.ResponseWriter, r *http.Request) bool {
	raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	var c jwt.Claims
	if err == nil {
		err = tok.Claims(g.key, &c)
	}
	if err == nil {
		err = c.ValidateWithLeeway(jwt.Expected{Issuer: strconv.FormatInt(g.appID, 10), Time: time.Now()}, 0)
	}
	if err != nil || c.Expiry == nil || c.IssuedAt == nil || c.Expiry.Time().Sub(c.IssuedAt.Time()) > 11*time.Minute {
		ghFail(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return false
	}
	return true
}

func (g *GitHub) installation(w http.ResponseWriter, r *http.Request) {
	if !g.appAuth(w, r) {
		return
	}
	if !strings.EqualFold(r.PathValue("owner"), g.owner) {
		ghFail(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": 42, "app_id": g.appID, "target_type": "Organization",
		"account": map[string]any{"login": g.owner, "type": "Organization"}, "permissions": g.granted, "repository_selection": "all"})
}

func (g *GitHub) createToken(w http.ResponseWriter, r *http.Request) {
	if !g.appAuth(w, r) {
		return
	}
	if r.PathValue("id") != "42" {
		ghFail(w, http.StatusNotFound, "Not Found")
		return
	}
	var req struct {
		Repositories []string          `json:"repositories"`
		Permissions  map[string]string `json:"permissions"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		ghFail(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	rank := map[string]int{"read": 1, "write": 2, "admin": 3}
	perms := map[string]string{"metadata": "read"}
	for k, v := range req.Permissions {
		if rank[v] == 0 || rank[v] > rank[g.granted[k]] {
			ghFail(w, http.StatusUnprocessableEntity, "The permissions requested are not granted to this installation.")
			return
		}
		perms[k] = v
	}
	if g.widenTo != nil {
		perms = g.widenTo
	}
	tok := "ghs_" + rand.Text()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	repos := []map[string]any{}
	var full []string
	for i, name := range req.Repositories {
		repos = append(repos, map[string]any{"id": i + 1, "name": name, "full_name": g.owner + "/" + name})
		full = append(full, g.owner+"/"+name)
	}
	g.mu.Lock()
	g.tokens[tok] = GitHubToken{Repositories: full, Permissions: perms, Expires: exp}
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_at": exp.Format(time.RFC3339), "permissions": perms,
		"repository_selection": "selected", "repositories": repos})
}

// tokenAuth returns the live installation token of the request.
func (g *GitHub) tokenAuth(w http.ResponseWriter, r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok := strings.TrimPrefix(strings.TrimPrefix(h, "Bearer "), "token ")
	g.mu.Lock()
	t, ok := g.tokens[tok]
	g.mu.Unlock()
	if !ok || t.Revoked || time.Now().After(t.Expires) {
		ghFail(w, http.StatusUnauthorized, "Bad credentials")
		return "", false
	}
	return tok, true
}

func (g *GitHub) revoke(w http.ResponseWriter, r *http.Request) {
	tok, ok := g.tokenAuth(w, r)
	if !ok {
		return
	}
	g.mu.Lock()
	t := g.tokens[tok]
	t.Revoked = true
	g.tokens[tok] = t
	g.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (g *GitHub) repositories(w http.ResponseWriter, r *http.Request) {
	tok, ok := g.tokenAuth(w, r)
	if !ok {
		return
	}
	t, _ := g.Token(tok)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{"total_count": len(t.Repositories), "repositories": t.Repositories})
}
