package oidcdiscovery_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/oidcdiscovery"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

const issuer = "https://signet.test/td"

// issuerClient is an HTTPS client that reaches the issuer's host at the
// test server's HTTPS listener (as DNS would), verifying its SVID.
func issuerClient(env *testenv.Env) *http.Client {
	c := env.HTTPClient(nil)
	tr := c.Transport.(*http.Transport).Clone()
	addr := env.Server.HTTPAddr().String()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	env.T.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: c.Timeout}
}

func fetchJWKS(t *testing.T, c *http.Client) (jose.JSONWebKeySet, *http.Response) {
	t.Helper()
	resp, err := c.Get(issuer + oidcdiscovery.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("decode jwks: %v", err)
	}
	return set, resp
}

// TestDiscoveryWithGoOIDC verifies a JWT-SVID from the Workload API through
// discovery alone, before and after a JWT key rotation.
func TestDiscoveryWithGoOIDC(t *testing.T) {
	env := testenv.New(t, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.JWTIssuer = issuer
	})
	env.AwaitServerSVID()
	const nodeID = "spiffe://example.org/node/a"
	env.CreateEntry(&commonv1.Entry{SpiffeId: "spiffe://example.org/web", ParentId: nodeID,
		Selectors: []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}}})
	a := env.StartAgent(nodeID)
	a.AwaitReady()
	addr := workloadapi.WithAddr("unix://" + a.SocketPath())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fetch := func(aud string) string {
		t.Helper()
		var tok string
		testenv.WaitFor(t, 10*time.Second, "a JWT-SVID for "+aud, func() error {
			s, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud}, addr)
			if err == nil {
				tok = s.Marshal()
			}
			return err
		})
		return tok
	}

	client := issuerClient(env)
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		t.Fatalf("oidc.NewProvider(%s) = %v", issuer, err)
	}
	verify := func(tok, aud string) *oidc.IDToken {
		t.Helper()
		v := provider.Verifier(&oidc.Config{ClientID: aud})
		idt, err := v.Verify(oidc.ClientContext(ctx, client), tok)
		if err != nil {
			t.Fatalf("Verify(JWT-SVID for %s) = %v", aud, err)
		}
		if idt.Subject != "spiffe://example.org/web" || idt.Issuer != issuer {
			t.Fatalf("verified token sub %q iss %q, want spiffe://example.org/web and %s", idt.Subject, idt.Issuer, issuer)
		}
		return idt
	}
	before := fetch("sts.amazonaws.com")
	verify(before, "sts.amazonaws.com")
	if _, err := provider.Verifier(&oidc.Config{ClientID: "other"}).Verify(oidc.ClientContext(ctx, client), before); err == nil {
		t.Error("Verify(wrong audience) succeeded")
	}

	set, resp := fetchJWKS(t, client)
	if len(set.Keys) != 1 {
		t.Fatalf("jwks has %d keys, want 1", len(set.Keys))
	}
	cc := resp.Header.Get("Cache-Control")
	if cc != "public, max-age=300" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("jwks headers Cache-Control %q Content-Type %q, want public, max-age=300 and application/json", cc, resp.Header.Get("Content-Type"))
	}

	// Prepare: published before it signs.
	admin := env.Admin
	if _, err := admin.PrepareAuthority(ctx, &adminv1.AuthorityRequest{Kind: "jwt"}); err != nil {
		t.Fatalf("PrepareAuthority(jwt) = %v", err)
	}
	set, _ = fetchJWKS(t, client)
	if len(set.Keys) != 2 {
		t.Fatalf("jwks after prepare has %d keys, want 2 (active and prepared)", len(set.Keys))
	}
	if _, err := admin.ActivateAuthority(ctx, &adminv1.AuthorityRequest{Kind: "jwt"}); err != nil {
		t.Fatalf("ActivateAuthority(jwt) = %v", err)
	}
	after := fetch("sts.amazonaws.com/after-rotation")
	if kid(t, after) == kid(t, before) {
		t.Fatalf("JWT-SVID after rotation signed by the old key %s", kid(t, before))
	}
	verify(after, "sts.amazonaws.com/after-rotation")
	verify(before, "sts.amazonaws.com") // the old key stays published
}

func kid(t *testing.T, tok string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

func TestDiscoveryDocument(t *testing.T) {
	env := testenv.New(t, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.JWTIssuer = issuer + "/"
		c.JWTKeyTTL = 3 * time.Minute // lead 1m: max-age 30s
	})
	env.AwaitServerSVID()
	client := issuerClient(env)
	resp, err := client.Get(issuer + oidcdiscovery.ConfigurationPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != issuer || doc["jwks_uri"] != issuer+oidcdiscovery.JWKSPath {
		t.Errorf("issuer %v jwks_uri %v, want %s and %s", doc["issuer"], doc["jwks_uri"], issuer, issuer+oidcdiscovery.JWKSPath)
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=30" {
		t.Errorf("Cache-Control = %q, want public, max-age=30 (under half the key lead)", got)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, issuer + oidcdiscovery.JWKSPath, http.StatusMethodNotAllowed},
		{http.MethodGet, "https://signet.test" + oidcdiscovery.ConfigurationPath, http.StatusNotFound},
		{http.MethodHead, issuer + oidcdiscovery.JWKSPath, http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, tc.path, strings.NewReader(""))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestParseIssuer(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"https://signet.example.com", "https://signet.example.com", ""},
		{"https://signet.example.com/", "https://signet.example.com", ""},
		{"https://signet.example.com:8443/td", "https://signet.example.com:8443/td", ""},
		{"http://signet.example.com", "", "must be an https URL"},
		{"https://", "", "has no host"},
		{"https://x/?a=b", "", "must not have a query"},
		{"https://u:p@x/", "", "must not have a query, fragment or user info"},
		{"::", "", "is not a URL"},
	} {
		u, err := oidcdiscovery.ParseIssuer(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseIssuer(%q) error = %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || u.String() != tc.want):
			t.Errorf("ParseIssuer(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}
