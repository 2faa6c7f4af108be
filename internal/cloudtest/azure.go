package cloudtest

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// AzureKeyID is the key ID of the fake Entra ID signing key.
const AzureKeyID = "azure-test-key"

// AzureVM is an Azure virtual machine with a system-assigned managed
// identity, as its tokens describe it.
type AzureVM struct {
	TenantID, PrincipalID, Subscription, ResourceGroup, Name string
}

// NewAzureVM returns a VM of a fixed tenant and subscription with a fresh
// random principal ID and name.
func NewAzureVM(t testing.TB) AzureVM {
	return AzureVM{
		TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", PrincipalID: guid(t),
		Subscription: "0b1f6471-1bf0-4dda-aec3-cb9272f09590", ResourceGroup: "signet-rg", Name: "vm-" + RandomHex(t, 3),
	}
}

func guid(t testing.TB) string {
	h := RandomHex(t, 16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// MIRID returns the VM's xms_mirid claim.
func (vm AzureVM) MIRID() string {
	return "/subscriptions/" + vm.Subscription + "/resourcegroups/" + vm.ResourceGroup +
		"/providers/Microsoft.Compute/virtualMachines/" + vm.Name
}

// AzureClaims returns the claims of a managed identity access token of vm
// for resource, issued at now (a v1 token, as IMDS issues).
func AzureClaims(vm AzureVM, resource string, now time.Time) map[string]any {
	iss := "https://sts.windows.net/" + vm.TenantID + "/"
	return map[string]any{
		"aud": resource, "iss": iss, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"aio": "E2RgYPh", "appid": "5e1b5b0e-1111-2222-3333-444455556666", "appidacr": "2", "idp": iss,
		"idtyp": "app", "oid": vm.PrincipalID, "rh": "0.AAAA", "sub": vm.PrincipalID, "tid": vm.TenantID,
		"uti": "ZEoN5ZzYBUm", "ver": "1.0", "xms_mirid": vm.MIRID(), "xms_tcdt": 1289241547,
	}
}

// AzureJWKS starts the fake of the tenant's key set, publishing
// Key(t, "azure") as AzureKeyID.
func AzureJWKS(t testing.TB) *httptest.Server {
	return JWKS(t, map[string]*rsa.PrivateKey{AzureKeyID: Key(t, "azure")})
}

// AzureIMDS starts a fake Azure instance metadata service on 127.0.0.1 for
// vm: GET /metadata/identity/oauth2/token?api-version=…&resource=… with
// Metadata: true answers the token response JSON, its access token signed
// by Key(t, "azure"). It is closed when t ends.
func AzureIMDS(t testing.TB, vm AzureVM) *httptest.Server {
	t.Helper()
	key := Key(t, "azure")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata/identity/oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" {
			http.Error(w, `{"error":"invalid_request","error_description":"Required metadata header not specified"}`, http.StatusBadRequest)
			return
		}
		q := r.URL.Query()
		res := q.Get("resource")
		if q.Get("api-version") == "" || res == "" {
			http.Error(w, `{"error":"invalid_request","error_description":"Required query variable 'resource' is missing"}`, http.StatusBadRequest)
			return
		}
		now := time.Now()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(map[string]string{
			"access_token": SignJWT(t, key, AzureKeyID, AzureClaims(vm, res, now)),
			"client_id":    "5e1b5b0e-1111-2222-3333-444455556666",
			"expires_in":   "3599", "expires_on": strconv.FormatInt(now.Add(time.Hour).Unix(), 10),
			"ext_expires_in": "3599", "not_before": strconv.FormatInt(now.Unix(), 10),
			"resource": res, "token_type": "Bearer",
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
