package gcpwif_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/gcpwif"
	"github.com/signet-id/signet/internal/broker/provider/remotetest"
)

const aud = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/signet/providers/signet"

func TestRemoteErrors(t *testing.T) {
	iss := remotetest.NewIssuer(t)
	g := remotetest.NewGoogle(t, iss, aud, "deploy@acme-prod.iam.gserviceaccount.com")
	req := provider.Request{LeaseID: "l", Subject: spiffeid.RequireFromString("spiffe://example.org/etl"), ExpiresAt: time.Now().Add(time.Hour)}
	for name, tc := range map[string]struct {
		cfg  gcpwif.Config
		want []string
	}{
		"service account denied": {gcpwif.Config{Audience: aud, ServiceAccount: "others@acme-prod.iam.gserviceaccount.com"},
			[]string{"gcp_wif credential gcp-deploy", "generateAccessToken for others@acme-prod.iam.gserviceaccount.com", "HTTP 403: PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied"}},
		"token audience refused": {gcpwif.Config{Audience: aud, TokenAudience: "https://elsewhere"},
			[]string{"gcp_wif credential gcp-deploy", "token exchange", "HTTP 400: invalid_grant"}},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.STSEndpoint, tc.cfg.IAMEndpoint = g.URL+"/v1/token", g.URL
			p, err := gcpwif.New("gcp-deploy", tc.cfg, iss.SignJWTSVID, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Issue(t.Context(), req)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Issue error = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	// Without a service account: the federated token itself.
	p, err := gcpwif.New("gcp-deploy", gcpwif.Config{Audience: aud, STSEndpoint: g.URL + "/v1/token"}, iss.SignJWTSVID, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Issue(t.Context(), req)
	if err != nil || !strings.HasPrefix(c.Data["access_token"], "fed-") {
		t.Errorf("Issue(no service account) = %v, %v; want the federated token", c.Data, err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := gcpwif.Config{Audience: "projects/x", ServiceAccount: "me@gmail.com", STSEndpoint: "x"}
	err := c.Validate()
	for _, w := range []string{"audience", "service_account", "sts_endpoint"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to name %s", err, w)
		}
	}
}
