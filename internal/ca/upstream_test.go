package ca

import (
	"context"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	upstreamdisk "github.com/signet-id/signet/internal/ca/upstream/disk"
	"github.com/signet-id/signet/internal/ca/upstream/upstreamtest"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// corp is an enterprise PKI on the fake clock: a root and an issuing
// intermediate, whose files the disk upstream authority reads.
type corp struct {
	root, issuing *upstreamtest.CA
	files         upstreamtest.Files
}

// newCorp makes a corporate root (ten years) and an issuing intermediate
// valid for issuingLife from testEpoch-1h.
func newCorp(t *testing.T, issuingLife time.Duration) *corp {
	t.Helper()
	start := testEpoch.Add(-time.Hour)
	c := &corp{root: upstreamtest.NewRoot(t, "Example Corp Root", upstreamtest.Validity(start, start.Add(10*365*24*time.Hour)))}
	c.issuing = c.root.NewIntermediate(t, "Example Corp Issuing CA", upstreamtest.Validity(start, start.Add(issuingLife)))
	c.files = upstreamtest.WriteFiles(t, t.TempDir(), c.issuing, nil, []*x509.Certificate{c.root.Cert})
	return c
}

// use configures the manager to run under the corporate PKI.
func (c *corp) use(t *testing.T) func(*Config) {
	return func(cfg *Config) {
		u, err := upstreamdisk.New(upstreamdisk.Config{
			CertFile: c.files.CertFile, KeyFile: c.files.KeyFile, BundleFile: c.files.BundleFile, Now: cfg.Now,
		})
		if err != nil {
			t.Fatalf("upstreamdisk.New() = %v", err)
		}
		cfg.UpstreamAuthority = u
	}
}

// rootOnly is an X.509 bundle holding only the corporate root, as a
// relying party that trusts nothing but the enterprise PKI has.
func (c *corp) rootOnly() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(testTD, []*x509.Certificate{c.root.Cert})
}

func TestUpstreamSignedAuthority(t *testing.T) {
	ctx := context.Background()
	c := newCorp(t, 365*24*time.Hour)
	e := newEnv(t, c.use(t))

	a := e.active(t, model.AuthorityX509)
	caCert := mustCert(t, a.Certificate)
	if caCert.CheckSignatureFrom(c.issuing.Cert) != nil {
		t.Fatalf("CA certificate issued by %q, want the corporate issuing CA", caCert.Issuer)
	}
	if !caCert.IsCA || len(caCert.URIs) != 1 || caCert.URIs[0].String() != "spiffe://example.org" {
		t.Errorf("CA certificate: IsCA %t, URIs %v; want a CA for spiffe://example.org", caCert.IsCA, caCert.URIs)
	}
	if !a.NotAfter.Equal(testEpoch.Add(24*time.Hour)) || !caCert.NotAfter.Equal(a.NotAfter) {
		t.Errorf("authority NotAfter = %s, certificate %s; want both epoch+24h", a.NotAfter, caCert.NotAfter)
	}
	if inter, _ := x509.ParseCertificates(a.UpstreamChain); len(inter) != 1 || !inter[0].Equal(c.issuing.Cert) {
		t.Errorf("upstream chain = %d certificates, want the issuing CA", len(inter))
	}

	// The bundle publishes the corporate root, not Signet's intermediate.
	b := e.bundle(t)
	if got := b.X509Authorities(); len(got) != 1 || !got[0].Equal(c.root.Cert) {
		t.Fatalf("bundle X.509 authorities = %d, want exactly the corporate root", len(got))
	}

	// SVIDs carry [leaf, Signet CA, issuing CA] and verify against the root alone.
	chain, err := e.m.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 || !chain[1].Equal(caCert) || !chain[2].Equal(c.issuing.Cert) {
		t.Fatalf("SVID chain has %d certificates, want leaf, Signet CA, issuing CA", len(chain))
	}
	if id, _, err := x509svid.Verify(chain, c.rootOnly(), x509svid.WithTime(e.clock.Now())); err != nil || id != workload {
		t.Fatalf("x509svid.Verify(root only) = %v, %v", id, err)
	}

	// After a restart the chain is rebuilt from the store.
	m2, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	chain2, err := m2.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain2) != 3 {
		t.Errorf("SVID chain after restart has %d certificates, want 3", len(chain2))
	}

	// Manual rotation: the new CA is signed by the upstream again, and old
	// and new SVIDs verify against the root alone.
	if _, err := e.m.Prepare(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	next, err := e.m.Activate(ctx, model.AuthorityX509)
	if err != nil {
		t.Fatal(err)
	}
	if next.ID == a.ID || mustCert(t, next.Certificate).CheckSignatureFrom(c.issuing.Cert) != nil {
		t.Fatal("the activated authority is not a new upstream-signed CA")
	}
	fresh, err := e.m.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string][]*x509.Certificate{"before rotation": chain, "after rotation": fresh} {
		if _, _, err := x509svid.Verify(ch, c.rootOnly(), x509svid.WithTime(e.clock.Now())); err != nil {
			t.Errorf("SVID minted %s: Verify(root only) = %v", name, err)
		}
	}
	if got := e.bundle(t).X509Authorities(); len(got) != 1 {
		t.Errorf("bundle after rotation has %d X.509 authorities, want the root once", len(got))
	}

	// The bundle holds roots, so revoking Signet's intermediate would not
	// stop its SVIDs: refused, saying why.
	err = e.m.Revoke(ctx, model.AuthorityX509, a.ID)
	wantKind(t, "Revoke(upstream-signed)", err, errkind.FailedPrecondition, "upstream")
	if err := e.m.Taint(ctx, model.AuthorityX509, a.ID); err != nil {
		t.Errorf("Taint(upstream-signed) = %v", err)
	}
}

// TestUpstreamRotationInvariants runs the rotation simulation of
// TestRotationInvariants under an upstream authority, checking also that
// the bundle only ever holds the corporate root.
func TestUpstreamRotationInvariants(t *testing.T) {
	c := newCorp(t, 365*24*time.Hour)
	e := newEnv(t, c.use(t))
	s := &simulation{duration: 5 * 24 * time.Hour, step: 10 * time.Minute, mintEvery: 3 * time.Hour,
		x509TTL: 4 * time.Hour, jwtTTL: 5 * time.Minute, upstreamRoot: c.root.Cert}
	s.run(t, e)
}

// TestUpstreamCapsLifetime: the CA never outlives the upstream chain, and
// the SVIDs never outlive the CA.
func TestUpstreamCapsLifetime(t *testing.T) {
	ctx := context.Background()
	c := newCorp(t, 7*time.Hour) // the issuing CA ends at epoch+6h
	e := newEnv(t, c.use(t))
	a := e.active(t, model.AuthorityX509)
	if !a.NotAfter.Equal(c.issuing.Cert.NotAfter) {
		t.Errorf("authority NotAfter = %s, want the issuing CA's %s", a.NotAfter, c.issuing.Cert.NotAfter)
	}
	chain, err := e.m.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(c.issuing.Cert.NotAfter) {
		t.Errorf("SVID NotAfter = %s, want capped at %s", chain[0].NotAfter, c.issuing.Cert.NotAfter)
	}

	// Once the upstream has expired, no new CA can be made: an error, not a
	// CA that nothing trusts.
	e.clock.Set(c.issuing.Cert.NotAfter.Add(time.Minute))
	_, err = e.m.Prepare(ctx, model.AuthorityX509)
	if err == nil {
		t.Fatal("Prepare() with an expired upstream = nil error")
	}

	// The operator renews the upstream files: the next CA uses them, without a restart.
	renewed := c.root.NewIntermediate(t, "Example Corp Issuing CA 2",
		upstreamtest.Validity(e.clock.Now().Add(-time.Hour), e.clock.Now().Add(365*24*time.Hour)))
	upstreamtest.WriteCerts(t, c.files.CertFile, renewed.Cert)
	upstreamtest.WriteKey(t, c.files.KeyFile, renewed.Key)
	p, err := e.m.Prepare(ctx, model.AuthorityX509)
	if err != nil {
		t.Fatalf("Prepare() after renewing the upstream files = %v", err)
	}
	if mustCert(t, p.Certificate).CheckSignatureFrom(renewed.Cert) != nil {
		t.Error("the new CA is not signed by the renewed issuing CA")
	}
}

// TestUpstreamSelfSignedRoot: cert_file may be the root itself; the chain
// then carries no upstream certificate, and the root is the bundle.
func TestUpstreamSelfSignedRoot(t *testing.T) {
	ctx := context.Background()
	start := testEpoch.Add(-time.Hour)
	root := upstreamtest.NewRoot(t, "Example Corp Root", upstreamtest.Validity(start, start.Add(365*24*time.Hour)))
	f := upstreamtest.WriteFiles(t, t.TempDir(), root, nil, nil)
	c := &corp{root: root, files: f}
	e := newEnv(t, c.use(t))
	chain, err := e.m.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 {
		t.Fatalf("SVID chain has %d certificates, want leaf and Signet CA", len(chain))
	}
	if _, _, err := x509svid.Verify(chain, c.rootOnly(), x509svid.WithTime(e.clock.Now())); err != nil {
		t.Errorf("x509svid.Verify(root only) = %v", err)
	}
	if got := e.bundle(t).X509Authorities(); len(got) != 1 || !got[0].Equal(root.Cert) {
		t.Errorf("bundle = %d X.509 authorities, want the root", len(got))
	}
}

// TestUpstreamAddedLater: a server that ran self-signed and is then put
// under an upstream keeps its self-signed CA published until it retires,
// so SVIDs it signed keep verifying while new ones chain to the root.
func TestUpstreamAddedLater(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	selfSigned := e.active(t, model.AuthorityX509)
	old, err := e.m.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := newCorp(t, 365*24*time.Hour)
	cfg := e.cfg
	c.use(t)(&cfg)
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Prepare(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Activate(ctx, model.AuthorityX509); err != nil {
		t.Fatal(err)
	}
	b := e.bundle(t)
	got := b.X509Authorities()
	if len(got) != 2 || !slices.ContainsFunc(got, c.root.Cert.Equal) || !slices.ContainsFunc(got, mustCert(t, selfSigned.Certificate).Equal) {
		t.Fatalf("bundle = %d X.509 authorities, want the old self-signed CA and the corporate root", len(got))
	}
	verifyX509(t, old, b, e.clock.Now())
	fresh, err := m2.SignX509SVID(ctx, newCSR(t, newP256(t), nil), X509Params{ID: workload, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(fresh, c.rootOnly(), x509svid.WithTime(e.clock.Now())); err != nil {
		t.Errorf("new SVID: Verify(root only) = %v", err)
	}
}

// badUpstream returns SVID chains unusable in a stated way.
type badUpstream struct {
	mint func(csr []byte) ([]*x509.Certificate, []*x509.Certificate)
}

func (b badUpstream) MintX509CA(_ context.Context, csr []byte, _ time.Duration) ([]*x509.Certificate, []*x509.Certificate, error) {
	chain, roots := b.mint(csr)
	return chain, roots, nil
}

// TestUpstreamResultChecked: the CA refuses what a faulty upstream returns
// instead of publishing an authority nothing can verify.
func TestUpstreamResultChecked(t *testing.T) {
	c := newCorp(t, 365*24*time.Hour)
	other := newCorp(t, 365*24*time.Hour)
	good, err := upstreamdisk.New(upstreamdisk.Config{CertFile: c.files.CertFile, KeyFile: c.files.KeyFile, BundleFile: c.files.BundleFile,
		Now: func() time.Time { return testEpoch }})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(csr []byte) ([]*x509.Certificate, []*x509.Certificate) {
		chain, roots, err := good.MintX509CA(context.Background(), csr, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return chain, roots
	}
	tests := map[string]func(csr []byte) ([]*x509.Certificate, []*x509.Certificate){
		"no roots": func(csr []byte) ([]*x509.Certificate, []*x509.Certificate) {
			chain, _ := mint(csr)
			return chain, nil
		},
		"wrong roots": func(csr []byte) ([]*x509.Certificate, []*x509.Certificate) {
			chain, _ := mint(csr)
			return chain, []*x509.Certificate{other.root.Cert}
		},
		"missing intermediate": func(csr []byte) ([]*x509.Certificate, []*x509.Certificate) {
			chain, roots := mint(csr)
			return chain[:1], roots
		},
		"another key": func(csr []byte) ([]*x509.Certificate, []*x509.Certificate) {
			return []*x509.Certificate{c.issuing.Cert}, []*x509.Certificate{c.root.Cert}
		},
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			keys := newMemKeys()
			m, err := New(Config{TrustDomain: testTD, ServerID: "s", Store: newMemStore(), KeyManager: keys,
				UpstreamAuthority: badUpstream{mint: f}, Now: func() time.Time { return testEpoch }})
			if err != nil {
				t.Fatal(err)
			}
			err = m.Init(context.Background())
			wantKind(t, "Init()", err, errkind.Internal, "unusable ca certificate")
			for _, id := range keys.ids() {
				if id[:4] == "x509" {
					t.Errorf("key %s of the refused authority is still stored", id)
				}
			}
		})
	}
}
