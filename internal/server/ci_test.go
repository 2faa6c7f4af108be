package server_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/signet-id/signet/internal/ci/citest"
	"github.com/signet-id/signet/internal/config"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	inventoryv1 "github.com/signet-id/signet/internal/gen/signet/inventory/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/store/storetest"
	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/tokenapi"
)

func ciEnvIssuers(gh *citest.Issuer) map[string]config.OIDCIssuer {
	return map[string]config.OIDCIssuer{"github": {Issuer: gh.URL, Kind: "github", CABundlePath: gh.CAFile}}
}

func ciEnv(t *testing.T, gh *citest.Issuer, opts ...testenv.Option) *testenv.Env {
	return testenv.New(t, append([]testenv.Option{func(c *server.Config) {
		c.HTTPAddress = "127.0.0.1:0"
		c.OIDCIssuers = ciEnvIssuers(gh)
	}}, opts...)...)
}

func jwtForm(ciToken string) url.Values {
	return url.Values{"subject_token": {ciToken}, "subject_token_type": {tokenapi.TokenTypeIDToken},
		"requested_token_type": {tokenapi.TokenTypeJWT}, "audience": {"spiffe://example.org/deployer"}}
}

var deployEntry = &commonv1.Entry{SpiffeId: "spiffe://example.org/ci/acme/app/deploy", ParentId: "spiffe://example.org/signet/ci/github",
	Selectors: []*commonv1.Selector{{Type: "github", Value: "repository:acme/app"}, {Type: "github", Value: "ref:refs/heads/main"},
		{Type: "github", Value: "environment:production"}}}

func TestCIExchange(t *testing.T) {
	gh := citest.New(t, nil)
	env := ciEnv(t, gh)
	env.CreateEntry(deployEntry)
	c := env.HTTPClient(nil)
	aud := "spiffe://example.org"
	now := time.Now()

	tok := gh.Mint(t, aud, now, 5*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main"))
	status, body := exchange(t, c, env, jwtForm(tok))
	if status != 200 {
		t.Fatalf("exchange: %d %v", status, body)
	}
	svid, err := jwtsvid.ParseAndValidate(body["access_token"].(string), env.Server.Bundle(), []string{"spiffe://example.org/deployer"})
	if err != nil || svid.ID.String() != deployEntry.GetSpiffeId() {
		t.Fatalf("JWT-SVID %v: %v", svid, err)
	}
	if status, body := exchange(t, c, env, jwtForm(tok)); status != 400 || body["error"] != tokenapi.ErrInvalidGrant ||
		!strings.Contains(body["error_description"].(string), "already used") {
		t.Errorf("same token again: %d %v, want invalid_grant already used", status, body)
	}
	for name, claims := range map[string]map[string]any{
		"other repository": citest.GitHubClaims("acme/other", "refs/heads/main"),
		"other branch":     citest.GitHubClaims("acme/app", "refs/heads/feature"),
	} {
		status, body := exchange(t, c, env, jwtForm(gh.Mint(t, aud, now, 5*time.Minute, claims)))
		if status != 400 || body["error"] != tokenapi.ErrUnauthorizedClient {
			t.Errorf("%s: %d %v, want unauthorized_client", name, status, body)
		}
	}
	for name, tok := range map[string]string{
		"expired":        gh.Mint(t, aud, now.Add(-time.Hour), 10*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main")),
		"other audience": gh.Mint(t, "spiffe://evil.example", now, 5*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main")),
		"alg none":       citest.Unsigned(map[string]any{"iss": gh.URL, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "repository": "acme/app"}),
	} {
		status, body := exchange(t, c, env, jwtForm(tok))
		if status != 400 || body["error"] != tokenapi.ErrInvalidGrant {
			t.Errorf("%s: %d %v, want invalid_grant", name, status, body)
		}
	}
	recs := auditRecords(t, env, "token.exchange.jwt")
	if len(recs) != 1 || recs[0].GetDetail()["repository"] != "acme/app" || recs[0].GetDetail()["issuer"] != "github" ||
		!strings.HasPrefix(recs[0].GetDetail()["subject"], "github:repo:acme/app") {
		t.Errorf("exchange audit = %v", recs)
	}
	if rep := auditRecords(t, env, "token.exchange.replay"); len(rep) != 1 || rep[0].GetDetail()["repository"] != "acme/app" {
		t.Errorf("replay audit = %v, want one naming the repository", rep)
	}
	if deny := auditRecords(t, env, "token.exchange.deny"); len(deny) != 2 {
		t.Errorf("deny audit records = %d, want 2 (other repository, other branch)", len(deny))
	}

	if n := tokenRequests(t, env, tokenapi.TokenTypeJWT, "ok"); n != 1 {
		t.Errorf("signet_server_token_requests_total{jwt,ok} = %d, want 1", n)
	}
	if n := tokenRequests(t, env, tokenapi.TokenTypeJWT, tokenapi.ErrUnauthorizedClient); n != 2 {
		t.Errorf("signet_server_token_requests_total{jwt,unauthorized_client} = %d, want 2", n)
	}

	// Visible: the job is a workload of environment ci, counted as on
	// SPIFFE in coverage.
	inv := inventoryv1.NewInventoryClient(env.AdminConn())
	items, err := inv.ListInventory(env.Ctx(), &inventoryv1.ListInventoryRequest{Kind: "workload"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, it := range items.GetItems() {
		if it.GetName() == deployEntry.GetSpiffeId() {
			found = it.GetEnvironment() == "ci"
		}
	}
	if !found {
		t.Errorf("inventory workloads %v lack %s with environment ci", items.GetItems(), deployEntry.GetSpiffeId())
	}
	rep, err := inv.CreateCoverageReport(env.Ctx(), &inventoryv1.CreateCoverageReportRequest{By: "environment"})
	if err != nil {
		t.Fatal(err)
	}
	var ci *inventoryv1.CoverageGroup
	for _, g := range rep.GetGroups() {
		if g.GetKey() == "ci" {
			ci = g
		}
	}
	if ci == nil || ci.GetWorkloads() != 1 || ci.GetSpiffeActive() != 1 {
		t.Errorf("coverage group ci = %v, want 1 workload, 1 active", ci)
	}
}

// TestCIReplayAcrossReplicas: two servers on one PostgreSQL store accept a
// CI token once between them.
func TestCIReplayAcrossReplicas(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	gh := citest.New(t, nil)
	pg := func(c *server.Config) { c.StoreDriver, c.StoreDSN = "postgres", dsn }
	a := ciEnv(t, gh, pg)
	b := ciEnv(t, gh, pg)
	a.CreateEntry(deployEntry)
	tok := gh.Mint(t, "spiffe://example.org", time.Now(), 5*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main"))
	testenv.WaitFor(t, 10*time.Second, "replica b to see the entry", func() error {
		probe := gh.Mint(t, "spiffe://example.org", time.Now(), 5*time.Minute, citest.GitHubClaims("acme/app", "refs/heads/main"))
		if status, body := exchange(t, b.HTTPClient(nil), b, jwtForm(probe)); status != 200 {
			return errorf("%d %v", status, body)
		}
		return nil
	})
	if status, body := exchange(t, a.HTTPClient(nil), a, jwtForm(tok)); status != 200 {
		t.Fatalf("replica a: %d %v", status, body)
	}
	status, body := exchange(t, b.HTTPClient(nil), b, jwtForm(tok))
	if status != 400 || body["error"] != tokenapi.ErrInvalidGrant {
		t.Fatalf("replica b, same token: %d %v, want invalid_grant", status, body)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func tokenRequests(t *testing.T, env *testenv.Env, typ, code string) int {
	t.Helper()
	mfs, err := env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "signet_server_token_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["requested_token_type"] == typ && labels["code"] == code {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}
