package server_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/ca/upstream/upstreamtest"
	"github.com/signet-id/signet/internal/config"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/testenv"
)

// TestUpstreamAuthority runs a real server as an intermediate under a
// corporate root and issuing CA made for the test: agents attest over TLS
// trusting only the root, and every SVID, before and after a CA rotation,
// verifies against a bundle holding nothing but the corporate root.
func TestUpstreamAuthority(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Example Corp Root")
	issuing := root.NewIntermediate(t, "Example Corp Issuing CA")
	files := upstreamtest.WriteFiles(t, t.TempDir(), issuing, nil, []*x509.Certificate{root.Cert})
	env := testenv.New(t, func(c *server.Config) {
		c.UpstreamAuthority = plugins(t, fmt.Sprintf("disk: {cert_file: %q, key_file: %q, bundle_file: %q}", files.CertFile, files.KeyFile, files.BundleFile))
	})
	corpOnly := x509bundle.FromX509Authorities(env.TrustDomain, []*x509.Certificate{root.Cert})

	// The trust bundle is the corporate root, not Signet's intermediate.
	if got := env.Server.Bundle().X509Authorities(); len(got) != 1 || !got[0].Equal(root.Cert) {
		t.Fatalf("bundle X.509 authorities = %d, want exactly the corporate root", len(got))
	}

	// Attestation itself needs the server's TLS chain to verify to the root.
	a := env.Attest(nodeA)
	if _, _, err := x509svid.Verify(a.SVID.Certificates, corpOnly); err != nil {
		t.Fatalf("agent SVID: Verify(corporate root only) = %v", err)
	}
	e := createEntry(t, env, entry("spiffe://example.org/web", nodeA, false))
	signed := func() []*x509.Certificate {
		t.Helper()
		res, _ := sign(t, env, a, e.GetId())
		if codes.Code(res.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("SignX509SVIDs: %s", res.GetStatus().GetMessage())
		}
		svid := testenv.SVIDFromChain(t, res.GetCertChain(), nil)
		return svid.Certificates
	}
	before := signed()
	if len(before) != 3 || !before[2].Equal(issuing.Cert) {
		t.Fatalf("SVID chain has %d certificates, want leaf, Signet CA and the issuing CA", len(before))
	}
	if id, _, err := x509svid.Verify(before, corpOnly); err != nil || id.String() != "spiffe://example.org/web" {
		t.Fatalf("workload SVID: Verify(corporate root only) = %v, %v", id, err)
	}

	// Rotate: the next CA is signed by the upstream again.
	for _, step := range []func(context.Context, *adminv1.AuthorityRequest) (*adminv1.Authority, error){
		func(ctx context.Context, r *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
			return env.Admin.PrepareAuthority(ctx, r)
		},
		func(ctx context.Context, r *adminv1.AuthorityRequest) (*adminv1.Authority, error) {
			return env.Admin.ActivateAuthority(ctx, r)
		},
	} {
		if _, err := step(env.Ctx(), &adminv1.AuthorityRequest{Kind: "x509"}); err != nil {
			t.Fatalf("rotate x509 authority: %v", err)
		}
	}
	after := signed()
	if after[1].Equal(before[1]) {
		t.Fatal("SVID after the rotation is signed by the old CA")
	}
	if after[1].CheckSignatureFrom(issuing.Cert) != nil {
		t.Fatal("the rotated CA is not signed by the corporate issuing CA")
	}
	for name, chain := range map[string][]*x509.Certificate{"before rotation": before, "after rotation": after} {
		if _, _, err := x509svid.Verify(chain, corpOnly); err != nil {
			t.Errorf("SVID %s: Verify(corporate root only) = %v", name, err)
		}
	}
	// Agents already connected keep working, and the bundle still is the root.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(env.Server.Bundle().X509Authorities()) != 1 {
		time.Sleep(20 * time.Millisecond)
	}
	if got := env.Server.Bundle().X509Authorities(); len(got) != 1 || !got[0].Equal(root.Cert) {
		t.Errorf("bundle after rotation = %d X.509 authorities, want the corporate root", len(got))
	}
}

// TestUpstreamAuthorityMisconfigured: the server refuses to start and names
// each bad field.
func TestUpstreamAuthorityMisconfigured(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Example Corp Root")
	issuing := root.NewIntermediate(t, "Example Corp Issuing CA")
	other := upstreamtest.NewRoot(t, "Other")
	dir := t.TempDir()
	files := upstreamtest.WriteFiles(t, dir, issuing, nil, nil)
	upstreamtest.WriteKey(t, files.KeyFile, other.Key)
	_, err := server.New(context.Background(), server.Config{
		TrustDomain:       spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir:           filepath.Join(dir, "server"),
		BindAddress:       "127.0.0.1:0",
		UpstreamAuthority: plugins(t, fmt.Sprintf("disk: {cert_file: %q, key_file: %q}", files.CertFile, files.KeyFile)),
	})
	if err == nil {
		t.Fatal("server.New(bad upstream) = nil error")
	}
	for _, want := range []string{"invalid server configuration", "upstream_authority.disk.key_file: the key does not match",
		"upstream_authority.disk.bundle_file: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("server.New(bad upstream) = %q, want it to contain %q", err, want)
		}
	}
}

// plugins parses a plugin section written in YAML, as a config file has it.
func plugins(t *testing.T, src string) config.Plugins {
	t.Helper()
	var p config.Plugins
	if err := yaml.Unmarshal([]byte(src), &p); err != nil {
		t.Fatalf("plugin section %q: %v", src, err)
	}
	return p
}
