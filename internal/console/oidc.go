package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/signet-id/signet/internal/logsafe"
)

// OIDCConfig turns on OIDC login: a person signs in at the operator's
// OpenID provider (authorization code flow with PKCE, state and nonce) and
// is admitted when the ID token's subject, verified email or a group is on
// an allow list. The session is a signed cookie; nothing is stored.
type OIDCConfig struct {
	Issuer       string // the provider's issuer URL (discovery at ISSUER/.well-known/openid-configuration)
	ClientID     string
	ClientSecret string // empty for a public client (PKCE only)
	// RedirectURL is the console's callback as the provider knows it:
	// https://HOST:PORT/auth/callback.
	RedirectURL string
	Scopes      []string // besides openid; default email, profile (and groups when AllowedGroups is set)
	// Admitted people: any match admits. At least one list is required.
	AllowedSubjects []string // the ID token's sub, exactly
	AllowedEmails   []string // email, case-insensitive, only with email_verified true
	AllowedGroups   []string // any of the GroupsClaim values
	GroupsClaim     string   // default "groups"
	SessionTTL      time.Duration
	// HTTPClient reaches the provider (discovery, JWKS, token endpoint);
	// default http.DefaultClient.
	HTTPClient *http.Client
}

// Login paths and cookies.
const (
	pathLogin    = "/auth/login"
	pathCallback = "/auth/callback"
	pathLogout   = "/auth/logout"
	// __Host- cookies are only accepted over HTTPS, for the whole site and
	// this host alone.
	cookieSession = "__Host-signet-console"
	cookieLogin   = "__Host-signet-console-login"
	// DefaultSessionTTL is how long a sign-in lasts; MaxSessionTTL bounds it.
	DefaultSessionTTL = 8 * time.Hour
	MaxSessionTTL     = 24 * time.Hour
	loginTTL          = 10 * time.Minute
	maxCookie         = 4096
)

// Check fills defaults and refuses an incomplete configuration, naming the
// field (under ui_oidc).
func (o *OIDCConfig) Check() error {
	u, err := url.Parse(o.Issuer)
	switch {
	case o.Issuer == "" || err != nil || u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("ui_oidc.issuer %q: want the provider's https:// issuer URL", o.Issuer)
	case o.ClientID == "":
		return errors.New("ui_oidc.client_id is required: the console's client ID at the provider")
	}
	r, err := url.Parse(o.RedirectURL)
	if o.RedirectURL == "" || err != nil || r.Scheme != "https" || r.Host == "" || r.Path != pathCallback {
		return fmt.Errorf("ui_oidc.redirect_url %q: want https://HOST:PORT%s, the console's callback as registered at the provider", o.RedirectURL, pathCallback)
	}
	if len(o.AllowedSubjects)+len(o.AllowedEmails)+len(o.AllowedGroups) == 0 {
		return errors.New("ui_oidc: set allowed_subjects, allowed_emails or allowed_groups: nobody is admitted by default")
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = "groups"
	}
	switch {
	case o.SessionTTL == 0:
		o.SessionTTL = DefaultSessionTTL
	case o.SessionTTL < time.Minute || o.SessionTTL > MaxSessionTTL:
		return fmt.Errorf("ui_oidc.session_ttl %s: use 1m to %s", o.SessionTTL, MaxSessionTTL)
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{"email", "profile"}
		if len(o.AllowedGroups) > 0 {
			o.Scopes = append(o.Scopes, o.GroupsClaim)
		}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	return nil
}

// oidcLogin is the console's OIDC login: provider discovery (on first use,
// retried until it succeeds), the signing key of its cookies (made at
// start: a restart signs everyone out) and the handlers.
type oidcLogin struct {
	cfg OIDCConfig
	key [32]byte
	now func() time.Time
	log func(msg string, args ...any)

	mu       sync.Mutex
	provider *oidc.Provider
}

func newOIDCLogin(cfg OIDCConfig, now func() time.Time, log func(string, ...any)) (*oidcLogin, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	l := &oidcLogin{cfg: cfg, now: now, log: log}
	if _, err := rand.Read(l.key[:]); err != nil {
		return nil, err
	}
	return l, nil
}

// discover returns the provider, fetching its discovery document once.
func (l *oidcLogin) discover(ctx context.Context) (*oidc.Provider, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.provider != nil {
		return l.provider, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, l.cfg.HTTPClient), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, l.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OIDC provider %s: %w", l.cfg.Issuer, err)
	}
	l.provider = p
	return p, nil
}

func (l *oidcLogin) oauth2(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: l.cfg.ClientID, ClientSecret: l.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: l.cfg.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, l.cfg.Scopes...)}
}

// session is what the session cookie carries.
type session struct {
	Subject string `json:"sub"`
	Email   string `json:"email,omitempty"`
	Expires int64  `json:"exp"`
}

// pending is what the login cookie carries between the redirect to the
// provider and the callback.
type pending struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// seal signs v under purpose: base64url(JSON) "." base64url(HMAC).
func (l *oidcLogin) seal(purpose string, v any) string {
	b, _ := json.Marshal(v) // plain structs of strings and integers
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(l.mac(purpose, payload))
}

func (l *oidcLogin) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, l.key[:])
	m.Write([]byte(purpose + "\x00" + payload))
	return m.Sum(nil)
}

// open verifies a sealed value of purpose into v; expired or forged
// values are refused.
func (l *oidcLogin) open(purpose, s string, v any, expires func() int64) error {
	payload, sig, ok := strings.Cut(s, ".")
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || len(s) > maxCookie || err != nil || !hmac.Equal(raw, l.mac(purpose, payload)) {
		return errors.New("not signed by this server (forged, or from before a restart)")
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(b, v) != nil {
		return errors.New("unreadable")
	}
	if !l.now().Before(time.Unix(expires(), 0)) {
		return errors.New("expired")
	}
	return nil
}

// current returns the signed-in session of r, if any.
func (l *oidcLogin) current(r *http.Request) (session, error) {
	c, err := r.Cookie(cookieSession)
	if err != nil {
		return session{}, errors.New("not signed in")
	}
	var s session
	if err := l.open(cookieSession, c.Value, &s, func() int64 { return s.Expires }); err != nil {
		return session{}, fmt.Errorf("session cookie: %w", err)
	}
	return s, nil
}

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// safeNext returns next when it is a path of this console, else "/": the
// callback never redirects elsewhere.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.HasPrefix(next, "/auth/") || len(next) > 2048 || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// login redirects to the provider.
func (l *oidcLogin) login(w http.ResponseWriter, r *http.Request) {
	p, err := l.discover(r.Context())
	if err != nil {
		l.log("console login unavailable", "error", err.Error())
		http.Error(w, "sign-in is unavailable: the console cannot reach its OpenID provider", http.StatusBadGateway)
		return
	}
	pd := pending{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Next: safeNext(r.URL.Query().Get("next")), Expires: l.now().Add(loginTTL).Unix()}
	setCookie(w, cookieLogin, l.seal(cookieLogin, pd), loginTTL)
	http.Redirect(w, r, l.oauth2(p).AuthCodeURL(pd.State, oidc.Nonce(pd.Nonce), oauth2.S256ChallengeOption(pd.Verifier)), http.StatusFound)
}

// callback completes a sign-in: the state and nonce must be this
// browser's, the code is exchanged with the PKCE verifier, the ID token is
// verified (issuer, audience, expiry, signature) and the person must be on
// an allow list.
func (l *oidcLogin) callback(w http.ResponseWriter, r *http.Request) {
	deny := func(status int, reason, shown string) {
		l.log("console sign-in refused", "remote", remoteHost(r), "reason", reason)
		http.Error(w, shown, status)
	}
	c, err := r.Cookie(cookieLogin)
	if err != nil {
		deny(http.StatusBadRequest, "no login cookie", "sign-in failed: start again at "+pathLogin)
		return
	}
	clearCookie(w, cookieLogin)
	var pd pending
	if err := l.open(cookieLogin, c.Value, &pd, func() int64 { return pd.Expires }); err != nil {
		deny(http.StatusBadRequest, "login cookie: "+err.Error(), "sign-in failed: start again at "+pathLogin)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		deny(http.StatusForbidden, "provider error "+logsafe.Truncate(e), "sign-in failed at the OpenID provider: "+logsafe.Truncate(e))
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pd.State)) != 1 {
		deny(http.StatusBadRequest, "state does not match this browser's login", "sign-in failed: start again at "+pathLogin)
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		deny(http.StatusBadRequest, "no code", "sign-in failed: the provider returned no code")
		return
	}
	p, err := l.discover(r.Context())
	if err != nil {
		deny(http.StatusBadGateway, err.Error(), "sign-in is unavailable: the console cannot reach its OpenID provider")
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), l.cfg.HTTPClient), 10*time.Second)
	defer cancel()
	tok, err := l.oauth2(p).Exchange(ctx, code, oauth2.VerifierOption(pd.Verifier))
	if err != nil {
		deny(http.StatusBadGateway, "code exchange: "+err.Error(), "sign-in failed: the provider refused the code")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		deny(http.StatusBadGateway, "no id_token in the token response", "sign-in failed: the provider returned no ID token")
		return
	}
	idt, err := p.VerifierContext(ctx, &oidc.Config{ClientID: l.cfg.ClientID, Now: l.now}).Verify(ctx, raw)
	if err != nil {
		deny(http.StatusForbidden, "ID token: "+err.Error(), "sign-in failed: the ID token did not verify")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pd.Nonce)) != 1 {
		deny(http.StatusForbidden, "ID token nonce does not match this login", "sign-in failed: start again at "+pathLogin)
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		deny(http.StatusForbidden, "ID token claims: "+err.Error(), "sign-in failed: unreadable ID token")
		return
	}
	email, _ := claims["email"].(string)
	rule, ok := l.admits(idt.Subject, claims)
	if !ok {
		l.log("console sign-in refused", "remote", remoteHost(r), "sub", logsafe.Truncate(idt.Subject), "email", logsafe.Truncate(email),
			"reason", "on no allow list")
		http.Error(w, "forbidden: "+logsafe.Truncate(cmpOr(email, idt.Subject))+" is not allowed to use this console", http.StatusForbidden)
		return
	}
	s := session{Subject: idt.Subject, Email: email, Expires: l.now().Add(l.cfg.SessionTTL).Unix()}
	setCookie(w, cookieSession, l.seal(cookieSession, s), l.cfg.SessionTTL)
	l.log("console sign-in", "remote", remoteHost(r), "sub", logsafe.Truncate(idt.Subject), "email", logsafe.Truncate(email), "rule", rule)
	http.Redirect(w, r, pd.Next, http.StatusFound)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// admits says whether the ID token's subject and claims are on an allow
// list, and which rule admitted them.
func (l *oidcLogin) admits(sub string, claims map[string]any) (string, bool) {
	if slices.Contains(l.cfg.AllowedSubjects, sub) {
		return "allowed_subjects", true
	}
	if email, _ := claims["email"].(string); email != "" && claims["email_verified"] == true &&
		slices.ContainsFunc(l.cfg.AllowedEmails, func(e string) bool { return strings.EqualFold(e, email) }) {
		return "allowed_emails", true
	}
	var groups []string
	switch g := claims[l.cfg.GroupsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	for _, g := range groups {
		if slices.Contains(l.cfg.AllowedGroups, g) {
			return "allowed_groups", true
		}
	}
	return "", false
}

// logout ends the session.
func (l *oidcLogin) logout(w http.ResponseWriter, r *http.Request) {
	clearCookie(w, cookieSession)
	http.Redirect(w, r, pathLogin, http.StatusFound)
}
