package azuremsi_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/azuremsi"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func newVerifier(t testing.TB, vm cloudtest.AzureVM, nodes azuremsi.NodeLookup) *azuremsi.Verifier {
	t.Helper()
	v, err := azuremsi.NewVerifier(td, azuremsi.Config{
		Tenants: []string{vm.TenantID}, JWKSURLs: map[string]string{vm.TenantID: cloudtest.AzureJWKS(t).URL},
	}, nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAttestAdmitsOnceUntilEvicted(t *testing.T) {
	vm := cloudtest.NewAzureVM(t)
	a, err := azuremsi.New(azuremsi.AgentConfig{MetadataURL: cloudtest.AzureIMDS(t, vm).URL})
	if err != nil {
		t.Fatal(err)
	}
	nodes := &cloudtest.Nodes{}
	v := newVerifier(t, vm, nodes)
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Attest(t.Context(), p, nil)
	if err != nil {
		t.Fatalf("Attest = %v", err)
	}
	want := spiffeid.RequireFromString("spiffe://example.org/signet/agent/azure_msi/" + vm.TenantID + "/" + vm.PrincipalID)
	if res.AgentID != want || res.CanReattest {
		t.Errorf("Attest = %v (CanReattest %v), want %v, false", res.AgentID, res.CanReattest, want)
	}
	wantSels := []model.Selector{
		{Type: "azure_msi", Value: "resource-group:signet-rg"},
		{Type: "azure_msi", Value: "subscription:" + vm.Subscription},
		{Type: "azure_msi", Value: "tenant:" + vm.TenantID},
		{Type: "azure_msi", Value: "vm-name:" + vm.Name},
	}
	if d := cmp.Diff(wantSels, res.Selectors); d != "" {
		t.Errorf("Selectors (-want +got):\n%s", d)
	}
	nodes.Admit(res.AgentID, res.Selectors)
	if _, err := v.Attest(t.Context(), p, nil); !errkind.Is(err, errkind.PermissionDenied) || !strings.Contains(err.Error(), "already attested") {
		t.Fatalf("second Attest = %v, want PermissionDenied: already attested", err)
	}
	nodes.Evict(res.AgentID)
	if _, err := v.Attest(t.Context(), p, nil); err != nil {
		t.Fatalf("Attest after eviction = %v", err)
	}
}

func TestAttestRefusals(t *testing.T) {
	vm := cloudtest.NewAzureVM(t)
	now := time.Now()
	sign := func(mutate func(c map[string]any)) []byte {
		c := cloudtest.AzureClaims(vm, azuremsi.DefaultResource, now)
		mutate(c)
		return []byte(cloudtest.SignJWT(t, cloudtest.Key(t, "azure"), cloudtest.AzureKeyID, c))
	}
	other := "11111111-2222-3333-4444-555555555555"
	for _, tc := range []struct {
		name    string
		payload []byte
		kind    errkind.Kind
		msg     string
	}{
		{"wrong tenant", sign(func(c map[string]any) { c["tid"] = other; c["iss"] = azuremsi.Issuer(other) }),
			errkind.PermissionDenied, "tenant " + other + " is not allowed"},
		{"issuer of another tenant", sign(func(c map[string]any) { c["iss"] = azuremsi.Issuer(other) }),
			errkind.PermissionDenied, "different provider"},
		{"another key", []byte(cloudtest.SignJWT(t, cloudtest.Key(t, "attacker"), cloudtest.AzureKeyID,
			cloudtest.AzureClaims(vm, azuremsi.DefaultResource, now))), errkind.PermissionDenied, "signature"},
		{"expired", sign(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), errkind.PermissionDenied, "expired"},
		{"wrong audience", sign(func(c map[string]any) { c["aud"] = "https://vault.azure.net" }), errkind.PermissionDenied, "audience"},
		{"user-assigned identity", sign(func(c map[string]any) {
			c["xms_mirid"] = "/subscriptions/" + vm.Subscription + "/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared"
		}), errkind.InvalidArgument, "does not name a virtual machine"},
		{"scale set identity", sign(func(c map[string]any) {
			c["xms_mirid"] = "/subscriptions/" + vm.Subscription + "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/ss"
		}), errkind.InvalidArgument, "does not name a virtual machine"},
		{"no subject", sign(func(c map[string]any) { delete(c, "sub") }), errkind.InvalidArgument, "sub is missing"},
		{"not a JWT", []byte("hello"), errkind.InvalidArgument, "not an RS256 JWT"},
		{"alg none", []byte("eyJhbGciOiJub25lIn0.eyJ0aWQiOiIxIn0."), errkind.InvalidArgument, "not an RS256 JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t, vm, &cloudtest.Nodes{}).Attest(t.Context(), tc.payload, nil)
			if errkind.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Attest = %v (%v), want %v containing %q", err, errkind.Of(err), tc.kind, tc.msg)
			}
			if strings.Contains(err.Error(), "eyJ") {
				t.Errorf("Attest error %q holds the token", err)
			}
		})
	}
}

func TestNodeLookupFailureIsNotARefusal(t *testing.T) {
	vm := cloudtest.NewAzureVM(t)
	tok := cloudtest.SignJWT(t, cloudtest.Key(t, "azure"), cloudtest.AzureKeyID, cloudtest.AzureClaims(vm, azuremsi.DefaultResource, time.Now()))
	_, err := newVerifier(t, vm, failingNodes{}).Attest(t.Context(), []byte(tok), nil)
	if err == nil || errkind.Of(err) != errkind.Internal {
		t.Fatalf("Attest with the store down = %v, want an internal error", err)
	}
}

type failingNodes struct{}

func (failingNodes) GetNode(context.Context, spiffeid.ID) (model.Node, error) {
	return model.Node{}, errors.New("database is down")
}

func TestConfigValidate(t *testing.T) {
	err := azuremsi.Config{Tenants: []string{"A-B"}, JWKSURLs: map[string]string{"A-B": "http://example.com/keys"}}.Validate()
	for _, w := range []string{"tenants[0]:", "jwks_urls.A-B: \"http://example.com/keys\": want an https URL"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want %q", err, w)
		}
	}
}
