package ciclient_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/ci/ciclient"
	"github.com/signet-id/signet/internal/ci/citest"
	"github.com/signet-id/signet/internal/config"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// TestSourceRenews: with a token source that gives fresh tokens (GitHub's
// request endpoint), the Source exchanges again before its SVID expires,
// and serves JWT-SVIDs traded for the current SVID over mTLS.
func TestSourceRenews(t *testing.T) {
	gh := citest.New(t, func() map[string]any { return citest.GitHubClaims("acme/app", "refs/heads/main") })
	env := testenv.New(t, func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.OIDCIssuers = map[string]config.OIDCIssuer{"github": {Issuer: gh.URL, Kind: "github", CABundlePath: gh.CAFile}}
	})
	env.CreateEntry(&commonv1.Entry{SpiffeId: "spiffe://example.org/ci/app", ParentId: "spiffe://example.org/signet/ci/github",
		Selectors: []*commonv1.Selector{{Type: "github", Value: "repository:acme/app"}}, X509TtlSeconds: 3})
	client, err := ciclient.New(env.Server.HTTPAddr().String(), env.Server.Bundle().X509Authorities())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsTrusting(t, gh.CAFile)}}
	env2 := map[string]string{ciclient.EnvGitHubURL: gh.RequestURL(), ciclient.EnvGitHubToken: gh.RequestToken}
	ts, err := ciclient.FindToken("", func(k string) string { return env2[k] }, hc)
	if err != nil || !ts.Fresh {
		t.Fatalf("FindToken = %+v, %v; want GitHub's fresh source", ts, err)
	}
	src := &ciclient.Source{Client: client, Tokens: ts, Audience: "spiffe://example.org", Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	first := src.SVID()
	changed := src.Changed()
	go src.Run(ctx)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the SVID was not renewed before it expired")
	}
	second := src.SVID()
	if second.Chain[0].SerialNumber.Cmp(first.Chain[0].SerialNumber) == 0 || !second.Chain[0].NotAfter.After(first.Chain[0].NotAfter) {
		t.Errorf("renewed SVID is not a newer one")
	}
	sels := []model.Selector{{Type: ciclient.SessionSelectorType, Value: sessionValue()}}
	jwts, err := src.FetchJWTSVIDs(ctx, sels, second.ID, []string{"spiffe://example.org/api"})
	if err != nil || len(jwts) != 1 || jwts[0].ID != second.ID {
		t.Fatalf("FetchJWTSVIDs = %v, %v", jwts, err)
	}
	if got := src.X509SVIDs(nil); len(got) != 0 {
		t.Errorf("a caller without the session selector got %d SVIDs", len(got))
	}
}
