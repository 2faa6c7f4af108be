package disk_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/ca/upstream/disk"
	"github.com/signet-id/signet/internal/ca/upstream/upstreamtest"
	"github.com/signet-id/signet/internal/errkind"
)

var _ ca.UpstreamAuthority = (*disk.Authority)(nil)

// csrFor returns a CSR for a new P-256 key naming uris.
func csrFor(t *testing.T, uris ...string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"Signet"}, SerialNumber: "abc"}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func newAuthority(t *testing.T, f upstreamtest.Files) *disk.Authority {
	t.Helper()
	a, err := disk.New(disk.Config{CertFile: f.CertFile, KeyFile: f.KeyFile, BundleFile: f.BundleFile})
	if err != nil {
		t.Fatalf("disk.New() = %v", err)
	}
	return a
}

func TestMintX509CA(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Root")
	policy := root.NewIntermediate(t, "Policy CA")
	issuing := policy.NewIntermediate(t, "Issuing CA", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(48 * time.Hour) })
	// cert_file: the issuing CA followed by the policy CA above it.
	f := upstreamtest.WriteFiles(t, t.TempDir(), issuing, []*x509.Certificate{policy.Cert}, []*x509.Certificate{root.Cert})
	a := newAuthority(t, f)

	csr, key := csrFor(t, "spiffe://example.org")
	chain, roots, err := a.MintX509CA(context.Background(), csr, 24*time.Hour)
	if err != nil {
		t.Fatalf("MintX509CA() = %v", err)
	}
	if len(chain) != 3 || !chain[1].Equal(issuing.Cert) || !chain[2].Equal(policy.Cert) {
		t.Fatalf("chain = %d certificates, want [new CA, issuing, policy]", len(chain))
	}
	if len(roots) != 1 || !roots[0].Equal(root.Cert) {
		t.Fatalf("roots = %d certificates, want the root", len(roots))
	}
	c := chain[0]
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("minted CA: IsCA %t, path length %d (zero %t), key usage %v; want a path-length-0 CA with certSign|cRLSign",
			c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://example.org" || c.Subject.SerialNumber != "abc" {
		t.Errorf("minted CA: URIs %v, subject %v; want the request's", c.URIs, c.Subject)
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		t.Error("minted CA is not for the request's key")
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != 24*time.Hour+10*time.Second && got != 24*time.Hour+11*time.Second {
		t.Errorf("minted CA lifetime = %s, want 24h plus the 10s backdating", got)
	}
	inter := x509.NewCertPool()
	inter.AddCert(chain[1])
	inter.AddCert(chain[2])
	rp := x509.NewCertPool()
	rp.AddCert(root.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: rp, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("minted CA does not verify to the root: %v", err)
	}

	// The lifetime is capped at the end of the upstream chain.
	chain, _, err = a.MintX509CA(context.Background(), csr, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].NotAfter.Equal(issuing.Cert.NotAfter) {
		t.Errorf("NotAfter with a long ttl = %s, want capped at the issuing CA's %s", chain[0].NotAfter, issuing.Cert.NotAfter)
	}
}

func TestMintX509CARefusesBadRequests(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Root")
	a := newAuthority(t, upstreamtest.WriteFiles(t, t.TempDir(), root, nil, nil))
	good, _ := csrFor(t, "spiffe://example.org")
	tests := map[string]struct {
		csr []byte
		ttl time.Duration
	}{
		"garbage":     {[]byte("junk"), time.Hour},
		"no uri":      {must(csrFor(t)), time.Hour},
		"two uris":    {must(csrFor(t, "spiffe://example.org", "spiffe://other.org")), time.Hour},
		"workload id": {must(csrFor(t, "spiffe://example.org/web")), time.Hour},
		"https uri":   {must(csrFor(t, "https://example.org")), time.Hour},
		"zero ttl":    {good, 0},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := a.MintX509CA(context.Background(), tt.csr, tt.ttl)
			if errkind.Of(err) != errkind.InvalidArgument {
				t.Errorf("MintX509CA(%s) = %v, want InvalidArgument", name, err)
			}
		})
	}
}

func must(der []byte, _ *ecdsa.PrivateKey) []byte { return der }

func TestNewChecksEverythingAtOnce(t *testing.T) {
	_, err := disk.New(disk.Config{})
	wantProblems(t, err, "upstream_authority.disk.cert_file: required", "upstream_authority.disk.key_file: required")

	// Not a CA, no keyCertSign, expired, a key of another certificate and
	// roots that are no CA: all reported together.
	dir := t.TempDir()
	leafish := upstreamtest.NewRoot(t, "Not A CA", func(c *x509.Certificate) {
		c.IsCA = false
		c.KeyUsage = x509.KeyUsageDigitalSignature
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	})
	other := upstreamtest.NewRoot(t, "Other")
	f := upstreamtest.WriteFiles(t, dir, leafish, nil, []*x509.Certificate{leafish.Cert})
	upstreamtest.WriteKey(t, f.KeyFile, other.Key)
	_, err = disk.New(disk.Config{CertFile: f.CertFile, KeyFile: f.KeyFile, BundleFile: f.BundleFile})
	wantProblems(t, err,
		`upstream_authority.disk.cert_file: certificate "CN=Not A CA,O=Example Corp" is not a CA`,
		"upstream_authority.disk.cert_file: certificate \"CN=Not A CA,O=Example Corp\" lacks key usage keyCertSign",
		"upstream_authority.disk.cert_file: certificate \"CN=Not A CA,O=Example Corp\" expired at",
		"upstream_authority.disk.key_file: the key does not match the certificate",
		"upstream_authority.disk.bundle_file: certificate \"CN=Not A CA,O=Example Corp\" is not a CA",
	)
}

func TestNewRefusesBadUpstreams(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Root")
	issuing := root.NewIntermediate(t, "Issuing")
	otherRoot := upstreamtest.NewRoot(t, "Other Root")
	tests := []struct {
		name  string
		files func(t *testing.T, dir string) upstreamtest.Files
		want  string
	}{
		{"intermediate without bundle_file", func(t *testing.T, dir string) upstreamtest.Files {
			return upstreamtest.WriteFiles(t, dir, issuing, nil, nil)
		}, `upstream_authority.disk.bundle_file: required: cert_file's certificate is issued by "CN=Root,O=Example Corp"`},
		{"roots of another pki", func(t *testing.T, dir string) upstreamtest.Files {
			return upstreamtest.WriteFiles(t, dir, issuing, nil, []*x509.Certificate{otherRoot.Cert})
		}, "upstream_authority.disk.cert_file: certificate \"CN=Issuing,O=Example Corp\" does not chain to the roots in bundle_file"},
		{"not yet valid", func(t *testing.T, dir string) upstreamtest.Files {
			future := root.NewIntermediate(t, "Future", func(c *x509.Certificate) { c.NotBefore = time.Now().Add(time.Hour) })
			return upstreamtest.WriteFiles(t, dir, future, nil, []*x509.Certificate{root.Cert})
		}, "is not valid before"},
		{"path length 0", func(t *testing.T, dir string) upstreamtest.Files {
			p0 := root.NewIntermediate(t, "Leaf Issuer", func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
			return upstreamtest.WriteFiles(t, dir, p0, nil, []*x509.Certificate{root.Cert})
		}, "has path length 0"},
		{"parent path length 0", func(t *testing.T, dir string) upstreamtest.Files {
			p0 := root.NewIntermediate(t, "Policy", func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 1, false })
			below := p0.NewIntermediate(t, "Issuing")
			return upstreamtest.WriteFiles(t, dir, below, []*x509.Certificate{p0.Cert}, []*x509.Certificate{root.Cert})
		}, `certificate "CN=Policy,O=Example Corp" has path length 1`},
		{"missing files", func(t *testing.T, dir string) upstreamtest.Files {
			return upstreamtest.Files{CertFile: filepath.Join(dir, "no.crt"), KeyFile: filepath.Join(dir, "no.key"), BundleFile: filepath.Join(dir, "no-roots.crt")}
		}, "upstream_authority.disk.key_file: open "},
		{"no pem", func(t *testing.T, dir string) upstreamtest.Files {
			f := upstreamtest.WriteFiles(t, dir, issuing, nil, []*x509.Certificate{root.Cert})
			if err := os.WriteFile(f.CertFile, []byte("hello"), 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}, "upstream_authority.disk.cert_file: " + "%DIR%/upstream.crt holds no PEM CERTIFICATE block"},
		{"cert as key", func(t *testing.T, dir string) upstreamtest.Files {
			f := upstreamtest.WriteFiles(t, dir, issuing, nil, []*x509.Certificate{root.Cert})
			upstreamtest.WriteCerts(t, f.KeyFile, issuing.Cert)
			return f
		}, "upstream_authority.disk.key_file: %DIR%/upstream.key holds no PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := tt.files(t, dir)
			_, err := disk.New(disk.Config{CertFile: f.CertFile, KeyFile: f.KeyFile, BundleFile: f.BundleFile})
			wantProblems(t, err, strings.ReplaceAll(tt.want, "%DIR%", dir))
		})
	}
}

func TestKeyFormats(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Root")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(root.Key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, pemBytes := range map[string][]byte{
		"sec1": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		"sec1 after parameters": append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...),
	} {
		t.Run(name, func(t *testing.T) {
			f := upstreamtest.WriteFiles(t, t.TempDir(), root, nil, nil)
			if err := os.WriteFile(f.KeyFile, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			a := newAuthority(t, f)
			csr, _ := csrFor(t, "spiffe://example.org")
			if _, _, err := a.MintX509CA(context.Background(), csr, time.Hour); err != nil {
				t.Errorf("MintX509CA() = %v", err)
			}
		})
	}
	t.Run("pkcs1", func(t *testing.T) {
		rsaCA := &upstreamtest.CA{Key: rsaKey}
		rsaCA.Cert = selfSign(t, rsaKey)
		f := upstreamtest.WriteFiles(t, t.TempDir(), rsaCA, nil, nil)
		if err := os.WriteFile(f.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600); err != nil {
			t.Fatal(err)
		}
		a := newAuthority(t, f)
		csr, _ := csrFor(t, "spiffe://example.org")
		chain, _, err := a.MintX509CA(context.Background(), csr, time.Hour)
		if err != nil {
			t.Fatalf("MintX509CA() = %v", err)
		}
		if chain[0].SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("signature algorithm = %v, want SHA256-RSA", chain[0].SignatureAlgorithm)
		}
	})
}

func selfSign(t *testing.T, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big1(), Subject: pkix.Name{CommonName: "RSA Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFilesReadOnEveryMint: a renewed upstream certificate is used by the
// next mint; a broken one is an error then, not a silent fallback.
func TestFilesReadOnEveryMint(t *testing.T) {
	root := upstreamtest.NewRoot(t, "Root")
	first := root.NewIntermediate(t, "Issuing 1")
	f := upstreamtest.WriteFiles(t, t.TempDir(), first, nil, []*x509.Certificate{root.Cert})
	a := newAuthority(t, f)
	second := root.NewIntermediate(t, "Issuing 2")
	upstreamtest.WriteCerts(t, f.CertFile, second.Cert)
	upstreamtest.WriteKey(t, f.KeyFile, second.Key)
	csr, _ := csrFor(t, "spiffe://example.org")
	chain, _, err := a.MintX509CA(context.Background(), csr, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[1].Equal(second.Cert) {
		t.Errorf("minted under %q, want the renewed Issuing 2", chain[1].Subject)
	}
	upstreamtest.WriteKey(t, f.KeyFile, first.Key) // mismatched now
	_, _, err = a.MintX509CA(context.Background(), csr, time.Hour)
	wantProblems(t, err, "upstream_authority.disk.key_file: the key does not match")
}

// wantProblems fails unless err is InvalidArgument and mentions every want.
func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("error = nil, want %q", want)
	}
	if errkind.Of(err) != errkind.InvalidArgument {
		t.Errorf("error kind = %s, want invalid argument: %v", errkind.Of(err), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error = %q\nwant it to contain %q", err, w)
		}
	}
}

func big1() *big.Int { return big.NewInt(1) }
