package cloudtest

import (
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// GCPKeyID is the key ID of the fake Google signing key.
const GCPKeyID = "gcp-test-key"

// GCPInstance is a Compute Engine instance as its identity tokens describe
// it.
type GCPInstance struct {
	ProjectID, Zone, InstanceID, InstanceName, ServiceAccount string
}

// NewGCPInstance returns an instance of project my-project in
// us-central1-a with a fresh random numeric ID.
func NewGCPInstance(t testing.TB) GCPInstance {
	id := ""
	for _, c := range RandomHex(t, 8) {
		id += string('0' + c%10)
	}
	return GCPInstance{ProjectID: "my-project", Zone: "us-central1-a", InstanceID: "1" + id[1:],
		InstanceName: "vm-" + id[:6], ServiceAccount: "123456789-compute@developer.gserviceaccount.com"}
}

// GCPClaims returns the claims of a format=full identity token of inst for
// audience aud, issued at now.
func GCPClaims(inst GCPInstance, aud string, now time.Time) map[string]any {
	return map[string]any{
		"iss": "https://accounts.google.com", "aud": aud, "azp": "1098765432101234567890",
		"sub": "1098765432101234567890", "email": inst.ServiceAccount, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"google": map[string]any{"compute_engine": map[string]any{
			"instance_creation_timestamp": now.Add(-time.Hour).Unix(), "instance_id": inst.InstanceID,
			"instance_name": inst.InstanceName, "project_id": inst.ProjectID, "project_number": 123456789,
			"zone": inst.Zone,
		}},
	}
}

// GCPJWKS starts the fake of Google's https://www.googleapis.com/oauth2/v3/certs,
// publishing Key(t, "gcp") as GCPKeyID.
func GCPJWKS(t testing.TB) *httptest.Server {
	return JWKS(t, map[string]*rsa.PrivateKey{GCPKeyID: Key(t, "gcp")})
}

// GCPMetadata starts a fake GCE metadata server on 127.0.0.1 for inst: GET
// /computeMetadata/v1/instance/service-accounts/default/identity with
// Metadata-Flavor: Google, an audience and format=full answers an identity
// token signed by Key(t, "gcp"). It is closed when t ends.
func GCPMetadata(t testing.TB, inst GCPInstance) *httptest.Server {
	t.Helper()
	key := Key(t, "gcp")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /computeMetadata/v1/instance/service-accounts/default/identity", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor: Google", http.StatusForbidden)
			return
		}
		aud := r.URL.Query().Get("audience")
		if aud == "" || r.URL.Query().Get("format") != "full" {
			http.Error(w, "non-empty audience parameter required", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Metadata-Flavor", "Google")
		w.Write([]byte(SignJWT(t, key, GCPKeyID, GCPClaims(inst, aud, time.Now()))))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
