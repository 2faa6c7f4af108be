package oauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/azurewif"
	"github.com/signet-id/signet/internal/broker/provider/oauth"
	"github.com/signet-id/signet/internal/broker/provider/remotetest"
)

func request() provider.Request {
	return provider.Request{LeaseID: "lease-1", Subject: spiffeid.RequireFromString("spiffe://example.org/etl"), ExpiresAt: time.Now().Add(time.Hour)}
}

// TestRemoteErrors checks that failures name the provider, the credential
// and the remote's own error text, and never the assertion.
func TestRemoteErrors(t *testing.T) {
	iss := remotetest.NewIssuer(t)
	as := remotetest.NewAS(t, iss, remotetest.ASConfig{ClientID: "signet"})
	entra := remotetest.NewAS(t, iss, remotetest.ASConfig{Path: "/t1/oauth2/v2.0/token", Audience: "api://other", ClientID: "app"})
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	var minted []string
	sign := func(ctx context.Context, sub spiffeid.ID, aud string, ttl time.Duration) (string, error) {
		tok, err := iss.SignJWTSVID(ctx, sub, aud, ttl)
		minted = append(minted, tok)
		return tok, err
	}
	mk := func(cfg oauth.Config) provider.Provider {
		p, err := oauth.New("partner-api", cfg, sign, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	az, err := azurewif.New("azure-deploy", azurewif.Config{TenantID: "t1", ClientID: "app", AuthorityHost: strings.TrimSuffix(entra.URL, "/t1/oauth2/v2.0/token")}, sign, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		p    provider.Provider
		want []string
	}{
		"unknown client": {mk(oauth.Config{TokenURL: as.URL, ClientID: "nobody"}), []string{"oauth credential partner-api", "HTTP 400: unauthorized_client: client_id nobody is not registered"}},
		"unreachable":    {mk(oauth.Config{TokenURL: down.URL, ClientID: "signet"}), []string{"oauth credential partner-api", "cannot reach the token endpoint"}},
		"azure audience": {az, []string{"azure_wif credential azure-deploy", "client app in tenant t1", "HTTP 401: invalid_client: AADSTS700024"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.p.Issue(t.Context(), request())
			if err == nil {
				t.Fatal("Issue succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Issue error = %q, want it to contain %q", err, w)
				}
			}
			for _, tok := range minted {
				if strings.Contains(err.Error(), tok) {
					t.Errorf("Issue error carries the JWT-SVID")
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := oauth.Config{TokenURL: "not a url", GrantType: "password", Scopes: []string{"a b"}}
	err := c.Validate()
	for _, w := range []string{"token_url", "client_id", "grant_type", "scopes[0]"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to name %s", err, w)
		}
	}
	a := azurewif.Config{TenantID: "../x"}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "tenant_id") || !strings.Contains(err.Error(), "client_id") {
		t.Errorf("azurewif Validate() = %v, want it to name tenant_id and client_id", err)
	}
}
