package console_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/ci/citest"
	"github.com/signet-id/signet/internal/console"
)

// oidcConsole serves a console in OIDC login mode over HTTPS against a
// fake provider whose sign-in is person(); now is its clock.
func oidcConsole(t *testing.T, person func() map[string]any, now *atomic.Int64, edit func(*console.OIDCConfig)) (*httptest.Server, *citest.Issuer) {
	t.Helper()
	is := citest.New(t, func() map[string]any { return nil })
	is.ClientID, is.ClientSecret, is.Login = "signet-console", "s3cret-"+t.Name(), person
	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := console.OIDCConfig{Issuer: is.URL, ClientID: is.ClientID, ClientSecret: is.ClientSecret,
		RedirectURL: srv.URL + "/auth/callback", AllowedEmails: []string{"Alice@Example.com"}, AllowedGroups: []string{"signet-admins"},
		HTTPClient: &http.Client{Transport: srv.Client().Transport}} // httptest's TLS servers share one certificate
	if edit != nil {
		edit(&cfg)
	}
	c, err := console.New(console.Config{Store: openStore(t), TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		OIDC: &cfg, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Unix(now.Load(), 0) }})
	if err != nil {
		t.Fatal(err)
	}
	h = c
	return srv, is
}

// browser is an HTTPS client with a cookie jar that follows redirects
// across the console and the provider.
func browser(t *testing.T, srv *httptest.Server) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: srv.Client().Transport, Jar: jar}
}

func fetch(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestOIDCLogin(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().Unix())
	alice := func() map[string]any {
		return map[string]any{"sub": "u-alice", "email": "alice@example.com", "email_verified": true}
	}
	srv, _ := oidcConsole(t, alice, &now, nil)

	// Without a session: the page sends the browser to sign in, its JSON
	// twin answers 401.
	noRedirect := &http.Client{Transport: srv.Client().Transport}
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := fetch(t, noRedirect, srv.URL+"/agents?limit=5")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/auth/login?next=%2Fagents%3Flimit%3D5" {
		t.Fatalf("anonymous /agents: %d to %q, want 302 to the sign-in with next", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := fetch(t, noRedirect, srv.URL+"/agents?format=json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous JSON twin: %d, want 401", resp.StatusCode)
	}

	// Alice signs in (verified email on the allow list, case aside) and
	// lands on the page she asked for.
	b := browser(t, srv)
	resp, body := fetch(t, b, srv.URL+"/agents?limit=5")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/agents" || !strings.Contains(body, "Agents") {
		t.Fatalf("after sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if resp, _ := fetch(t, b, srv.URL+"/agents?format=json"); resp.StatusCode != http.StatusOK {
		t.Fatalf("JSON twin with a session: %d", resp.StatusCode)
	}
	// The session cookie is Secure, HttpOnly and host-only.
	u, _ := url.Parse(srv.URL)
	cookies := b.Jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != "__Host-signet-console" {
		t.Fatalf("cookies after sign-in: %v", cookies)
	}
	session := cookies[0].Value

	// A tampered session is refused.
	forged := browser(t, srv)
	forged.CheckRedirect = noRedirect.CheckRedirect
	tampered := []rune(session)
	tampered[3] ^= 1
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-signet-console", Value: string(tampered), Path: "/"}})
	if resp, _ := fetch(t, forged, srv.URL+"/"); resp.StatusCode != http.StatusFound {
		t.Errorf("tampered session: %d, want a redirect to sign in", resp.StatusCode)
	}

	// Sessions end: past the TTL the page asks to sign in again.
	now.Add(int64((console.DefaultSessionTTL + time.Minute) / time.Second))
	stale := browser(t, srv)
	stale.CheckRedirect = noRedirect.CheckRedirect
	stale.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-signet-console", Value: session, Path: "/"}})
	if resp, _ := fetch(t, stale, srv.URL+"/"); resp.StatusCode != http.StatusFound {
		t.Errorf("expired session: %d, want a redirect to sign in", resp.StatusCode)
	}

	// Logout clears the cookie.
	now.Store(time.Now().Unix())
	out := &http.Client{Transport: srv.Client().Transport, Jar: b.Jar, CheckRedirect: noRedirect.CheckRedirect}
	if resp, _ := fetch(t, out, srv.URL+"/auth/logout"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/auth/login" {
		t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if cs := b.Jar.Cookies(u); len(cs) != 0 {
		t.Fatalf("cookies after logout: %v", cs)
	}
	if resp, _ := fetch(t, out, srv.URL+"/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after logout: %d, want a redirect to sign in", resp.StatusCode)
	}
}

func TestOIDCLoginRefuses(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().Unix())
	cases := []struct {
		name   string
		person map[string]any
	}{
		{"email not verified", map[string]any{"sub": "u-1", "email": "alice@example.com", "email_verified": false}},
		{"email not allowed", map[string]any{"sub": "u-2", "email": "mallory@example.com", "email_verified": true}},
		{"group not allowed", map[string]any{"sub": "u-3", "groups": []string{"staff"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := oidcConsole(t, func() map[string]any { return tc.person }, &now, nil)
			b := browser(t, srv)
			resp, body := fetch(t, b, srv.URL+"/")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not allowed") {
				t.Fatalf("%s: %d %q, want 403", tc.name, resp.StatusCode, body)
			}
			u, _ := url.Parse(srv.URL)
			for _, c := range b.Jar.Cookies(u) {
				if c.Name == "__Host-signet-console" {
					t.Fatalf("%s: a session cookie was set", tc.name)
				}
			}
		})
	}
	t.Run("group allowed", func(t *testing.T) {
		srv, _ := oidcConsole(t, func() map[string]any {
			return map[string]any{"sub": "u-4", "groups": []string{"staff", "signet-admins"}}
		}, &now, nil)
		if resp, _ := fetch(t, browser(t, srv), srv.URL+"/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("allowed group: %d", resp.StatusCode)
		}
	})
	t.Run("subject allowed", func(t *testing.T) {
		srv, _ := oidcConsole(t, func() map[string]any { return map[string]any{"sub": "svc-ops"} }, &now,
			func(c *console.OIDCConfig) { c.AllowedSubjects = []string{"svc-ops"} })
		if resp, _ := fetch(t, browser(t, srv), srv.URL+"/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("allowed subject: %d", resp.StatusCode)
		}
	})
	t.Run("forged callback", func(t *testing.T) {
		srv, _ := oidcConsole(t, func() map[string]any { return map[string]any{"sub": "svc-ops"} }, &now, nil)
		b := browser(t, srv)
		// No login cookie: someone else's callback URL is refused.
		if resp, _ := fetch(t, b, srv.URL+"/auth/callback?code=x&state=y"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback without a login: %d, want 400", resp.StatusCode)
		}
		// A login begun in this browser, but a state that is not its own.
		b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		fetch(t, b, srv.URL+"/auth/login")
		if resp, _ := fetch(t, b, srv.URL+"/auth/callback?code=x&state=not-mine"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback with another state: %d, want 400", resp.StatusCode)
		}
	})
	t.Run("next stays on the console", func(t *testing.T) {
		srv, _ := oidcConsole(t, func() map[string]any { return map[string]any{"sub": "u-5", "groups": "signet-admins"} }, &now, nil)
		resp, _ := fetch(t, browser(t, srv), srv.URL+"/auth/login?next=//evil.example/x")
		if resp.Request.URL.Host != strings.TrimPrefix(srv.URL, "https://") || resp.Request.URL.Path != "/" {
			t.Fatalf("next //evil.example: ended at %s", resp.Request.URL)
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		c, err := console.New(console.Config{Store: openStore(t), TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
			OIDC: &console.OIDCConfig{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://console.example/auth/callback",
				AllowedSubjects: []string{"x"}}, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		plain := httptest.NewServer(c)
		defer plain.Close()
		if resp, _ := fetch(t, plain.Client(), plain.URL+"/"); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("plain HTTP: %d, want 403", resp.StatusCode)
		}
	})
}

func TestOIDCConfigChecked(t *testing.T) {
	base := func() console.OIDCConfig {
		return console.OIDCConfig{Issuer: "https://idp.example", ClientID: "c", RedirectURL: "https://console.example:8090/auth/callback",
			AllowedEmails: []string{"a@example.com"}}
	}
	for _, tc := range []struct {
		field string
		edit  func(*console.OIDCConfig)
	}{
		{"ui_oidc.issuer", func(c *console.OIDCConfig) { c.Issuer = "http://idp.example" }},
		{"ui_oidc.client_id", func(c *console.OIDCConfig) { c.ClientID = "" }},
		{"ui_oidc.redirect_url", func(c *console.OIDCConfig) { c.RedirectURL = "https://console.example/callback" }},
		{"allowed_subjects, allowed_emails or allowed_groups", func(c *console.OIDCConfig) { c.AllowedEmails = nil }},
		{"ui_oidc.session_ttl", func(c *console.OIDCConfig) { c.SessionTTL = 48 * time.Hour }},
	} {
		cfg := base()
		tc.edit(&cfg)
		_, err := console.New(console.Config{Store: openStore(t), TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), OIDC: &cfg})
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want one naming it", tc.field, err)
		}
	}
}
