package gcpiit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/cloudtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest/gcpiit"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func newVerifier(t testing.TB) *gcpiit.Verifier {
	t.Helper()
	v, err := gcpiit.NewVerifier(td, gcpiit.Config{Projects: []string{"my-project"}, JWKSURL: cloudtest.GCPJWKS(t).URL + "/oauth2/v3/certs"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// forge answers the challenge with a token made by mint from the audience
// the server sent.
type forge func(aud string) string

func (f forge) Challenge(_ context.Context, c []byte) ([]byte, error) {
	return []byte(f(string(c))), nil
}

func TestAttestThroughTheMetadataServer(t *testing.T) {
	inst := cloudtest.NewGCPInstance(t)
	a, err := gcpiit.New(gcpiit.AgentConfig{MetadataURL: cloudtest.GCPMetadata(t, inst).URL})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t)
	p, err := a.Payload(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	res, err := v.Attest(t.Context(), p, forge(func(aud string) string {
		sent = append(sent, aud)
		tok, err := a.Respond(t.Context(), []byte(aud))
		if err != nil {
			t.Fatal(err)
		}
		return string(tok)
	}))
	if err != nil {
		t.Fatalf("Attest = %v", err)
	}
	want := spiffeid.RequireFromString("spiffe://example.org/signet/agent/gcp_iit/my-project/us-central1-a/" + inst.InstanceID)
	if res.AgentID != want || !res.CanReattest {
		t.Errorf("Attest = %v (CanReattest %v), want %v, true", res.AgentID, res.CanReattest, want)
	}
	wantSels := []model.Selector{
		{Type: "gcp_iit", Value: "instance-name:" + inst.InstanceName},
		{Type: "gcp_iit", Value: "project-id:my-project"},
		{Type: "gcp_iit", Value: "sa:" + inst.ServiceAccount},
		{Type: "gcp_iit", Value: "zone:us-central1-a"},
	}
	if d := cmp.Diff(wantSels, res.Selectors); d != "" {
		t.Errorf("Selectors (-want +got):\n%s", d)
	}
	if len(sent) != 1 || !strings.HasPrefix(sent[0], "signet:example.org:") {
		t.Errorf("challenges = %q, want one signet:example.org:<nonce>", sent)
	}
}

func TestAttestRefusals(t *testing.T) {
	inst := cloudtest.NewGCPInstance(t)
	key := cloudtest.Key(t, "gcp")
	now := time.Now()
	sign := func(mutate func(c map[string]any)) forge {
		return func(aud string) string {
			c := cloudtest.GCPClaims(inst, aud, now)
			mutate(c)
			return cloudtest.SignJWT(t, key, cloudtest.GCPKeyID, c)
		}
	}
	ce := func(c map[string]any) map[string]any {
		return c["google"].(map[string]any)["compute_engine"].(map[string]any)
	}
	for _, tc := range []struct {
		name string
		c    forge
		kind errkind.Kind
		msg  string
	}{
		{"wrong project", sign(func(c map[string]any) { ce(c)["project_id"] = "other-project" }), errkind.PermissionDenied, "project other-project is not allowed"},
		{"another key", func(aud string) string {
			return cloudtest.SignJWT(t, cloudtest.Key(t, "attacker"), cloudtest.GCPKeyID, cloudtest.GCPClaims(inst, aud, now))
		}, errkind.PermissionDenied, "signature"},
		{"expired", sign(func(c map[string]any) {
			c["iat"] = now.Add(-2 * time.Hour).Unix()
			c["exp"] = now.Add(-time.Hour).Unix()
		}),
			errkind.PermissionDenied, "expired"},
		{"no expiry", sign(func(c map[string]any) { delete(c, "exp") }), errkind.PermissionDenied, "expired"},
		{"issued in the future", sign(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix(); c["exp"] = now.Add(2 * time.Hour).Unix() }),
			errkind.PermissionDenied, "in the future"},
		{"replayed: an earlier nonce", sign(func(c map[string]any) { c["aud"] = "signet:example.org:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }),
			errkind.PermissionDenied, "audience"},
		{"another trust domain", sign(func(c map[string]any) {
			c["aud"] = strings.Replace(c["aud"].(string), "example.org", "other.org", 1)
		}), errkind.PermissionDenied, "audience"},
		{"two audiences", sign(func(c map[string]any) { c["aud"] = []string{c["aud"].(string), "https://other.example"} }),
			errkind.PermissionDenied, "2 audiences"},
		{"wrong issuer", sign(func(c map[string]any) { c["iss"] = "https://evil.example" }), errkind.PermissionDenied, "different provider"},
		{"not a compute engine token", sign(func(c map[string]any) { delete(c, "google") }), errkind.InvalidArgument, "project_id is missing"},
		{"path in zone", sign(func(c map[string]any) { ce(c)["zone"] = "../x" }), errkind.InvalidArgument, "zone"},
		{"HS256 with the public key", func(aud string) string {
			return "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJ4In0.c2ln"
		}, errkind.PermissionDenied, "identity token refused"},
		{"garbage", func(string) string { return "not a jwt" }, errkind.PermissionDenied, "identity token refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t).Attest(t.Context(), []byte(gcpiit.Hello), tc.c)
			if errkind.Of(err) != tc.kind || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Attest = %v (%v), want %v containing %q", err, errkind.Of(err), tc.kind, tc.msg)
			}
			if strings.Contains(err.Error(), "eyJ") {
				t.Errorf("Attest error %q holds the token", err)
			}
		})
	}
	if _, err := newVerifier(t).Attest(t.Context(), []byte("gcp_iit/v2"), nil); !errkind.Is(err, errkind.InvalidArgument) {
		t.Errorf("Attest(unknown hello) = %v, want InvalidArgument", err)
	}
}

func TestAttestorAnswersOnlySignetAudiences(t *testing.T) {
	a, err := gcpiit.New(gcpiit.AgentConfig{MetadataURL: cloudtest.GCPMetadata(t, cloudtest.NewGCPInstance(t)).URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{
		"https://vault.example.com", "signet:example.org:short", "signet::AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"signet:Example.ORG/x:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "",
	} {
		if _, err := a.Respond(t.Context(), []byte(c)); err == nil {
			t.Errorf("Respond(%q) fetched a token, want a refusal", c)
		}
	}
	if _, err := a.Respond(t.Context(), []byte("signet:example.org:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")); err != nil {
		t.Errorf("Respond(signet audience) = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  gcpiit.Config
		want []string
	}{
		{gcpiit.Config{}, []string{"projects: required"}},
		{gcpiit.Config{Projects: []string{"ok", "Not OK"}, JWKSURL: "ftp://x"}, []string{"projects[1]:", "jwks_url:"}},
	} {
		err := tc.cfg.Validate()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, w)
			}
		}
	}
	if err := (gcpiit.Config{Projects: []string{"p"}, JWKSURL: "https://www.googleapis.com/oauth2/v3/certs"}).Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}
