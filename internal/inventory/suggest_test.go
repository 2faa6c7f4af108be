package inventory

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/store"
)

func TestSuggest(t *testing.T) {
	configured := map[string]string{"orders-db": "postgres", "archive-db": "postgres", "deploy": "ssh", "shop": "mysql", "vault": "static"}
	loc := func(p string) []store.FindingLocation { return []store.FindingLocation{{Path: p}} }
	tests := map[string]struct {
		f            store.Finding
		provider     string
		credentials  string
		textContains string
	}{
		"pgpass":        {store.Finding{RuleID: "pgpass-password", Kind: "password", Locations: loc("/home/u/.pgpass")}, "postgres", "archive-db,orders-db", "brokered postgres credential archive-db (provider postgres; also orders-db)"},
		"jdbc mysql":    {store.Finding{RuleID: "generic-api-key", Kind: "password", Description: "jdbc:mysql://db/shop"}, "mysql", "shop", "shop (provider mysql)"},
		"generic dsn":   {store.Finding{RuleID: "env-secret", Kind: "password", Details: map[string]string{"variable": "DATABASE_URL"}}, "postgres", "archive-db,orders-db", "provider postgres"},
		"aws key":       {store.Finding{RuleID: "aws-access-key-id", Kind: "cloud-credential"}, "aws_sts", "", "(provider aws_sts): none is configured"},
		"gcp key":       {store.Finding{RuleID: "gcp-service-account-key", Kind: "cloud-credential"}, "gcp_wif", "", "provider gcp_wif"},
		"azure":         {store.Finding{RuleID: "azure-sp-secret", Kind: "cloud-credential"}, "azure_wif", "", "provider azure_wif"},
		"github pat":    {store.Finding{RuleID: "github-pat", Kind: "token"}, "github_app", "", "signet ci exchange"},
		"gitlab pat":    {store.Finding{RuleID: "gitlab-pat", Kind: "token"}, "", "", "signet ci exchange"},
		"ssh key":       {store.Finding{RuleID: "openssh-private-key", Kind: "private-key"}, "ssh", "deploy", "deploy (provider ssh)"},
		"encrypted ssh": {store.Finding{RuleID: "encrypted-private-key", Kind: "encrypted-private-key", Locations: loc("/home/u/.ssh/id_ed25519")}, "ssh", "deploy", "provider ssh"},
		"kubeconfig":    {store.Finding{RuleID: "kubeconfig-token", Kind: "token"}, "", "", "k8s_psat"},
		"tls key":       {store.Finding{RuleID: "pem-private-key", Kind: "private-key", Details: map[string]string{"cert_long_lived": "true"}}, "", "", "X.509-SVIDs"},
		"long jwt":      {store.Finding{RuleID: "jwt-long-lived", Kind: "jwt"}, "", "", "JWT-SVIDs"},
		"saas api key":  {store.Finding{RuleID: "stripe-access-token", Kind: "api-key"}, "static", "vault", "sealed static secret with rotation vault"},
		"unknown kind":  {store.Finding{RuleID: "x", Kind: "mystery"}, "static", "vault", "static"},
		"ci literal":    {store.Finding{RuleID: "ci-literal-secret", Kind: "generic-secret"}, "", "", "signet ci exchange"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := Suggest(&tc.f, configured)
			if s.Provider != tc.provider || strings.Join(s.Credentials, ",") != tc.credentials || !strings.Contains(s.Text, tc.textContains) {
				t.Errorf("Suggest(%s) = %+v, want provider %q, credentials %q, text containing %q", tc.f.RuleID, s, tc.provider, tc.credentials, tc.textContains)
			}
		})
	}
	if s := Suggest(&store.Finding{RuleID: "pgpass-password", Kind: "password"}, nil); s.Text != "brokered postgres credential (provider postgres): none is configured yet (broker.credentials)" {
		t.Errorf("no broker: %q", s.Text)
	}
}
