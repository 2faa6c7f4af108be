// Package disk is the upstream authority that signs Signet's X.509 CA
// certificates with an existing enterprise CA whose certificate and key
// are PEM files on the server, so Signet runs as an intermediate under the
// corporate root and relying parties trust SVIDs through that root.
//
// Configured as
//
//	upstream_authority:
//	  disk:
//	    cert_file: /etc/signet/upstream.crt   # the signing CA, then any intermediates above it
//	    key_file: /etc/signet/upstream.key    # its private key (PKCS#8, SEC 1 or PKCS#1 PEM)
//	    bundle_file: /etc/signet/roots.crt    # the upstream roots; optional when cert_file is self-signed
//
// The files are read again on every MintX509CA, so a renewed upstream
// certificate is used from the next CA rotation on, without a restart.
//
// Authority implements ca.UpstreamAuthority. This package does not import
// package ca (its tests check the interface), so ca's tests can run on it.
package disk

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/keyfile"
)

// Name is the upstream authority's name in the plugin registry and in
// configuration files.
const Name = "disk"

// field is the configuration path of this plugin's fields in error
// messages.
const field = "upstream_authority.disk."

// clockSkew is how far NotBefore is backdated on the CA certificates it
// signs, as the CA does on its own.
const clockSkew = 10 * time.Second

// Config configures an Authority.
type Config struct {
	// CertFile holds the upstream signing CA's certificate (PEM), optionally
	// followed by the intermediates between it and a root. Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile holds the signing CA's private key (PEM). Required.
	KeyFile string `yaml:"key_file"`
	// BundleFile holds the upstream roots (PEM) that the trust bundle
	// publishes. Optional when CertFile's certificate is self-signed: it is
	// then the only root.
	BundleFile string `yaml:"bundle_file"`
	// Now is the clock (default time.Now).
	Now func() time.Time `yaml:"-"`
}

// Authority signs CA certificates with the upstream CA of its Config. It is
// safe for concurrent use.
type Authority struct {
	cfg Config
}

// upstream is the validated content of the files.
type upstream struct {
	cert  *x509.Certificate   // the signing CA
	key   crypto.Signer       // its key
	chain []*x509.Certificate // intermediates above cert, roots excluded
	roots []*x509.Certificate
	end   time.Time // the earliest NotAfter of cert, chain and its root
}

// New reads and checks the files of cfg: the key must match the
// certificate, which must be a CA allowed to sign certificates and other
// CAs, valid now, and chain to the roots. Every problem is reported at
// once, each prefixed with its field path; the error is InvalidArgument.
func New(cfg Config) (*Authority, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authority{cfg: cfg}
	if _, err := a.load(); err != nil {
		return nil, err
	}
	return a, nil
}

// MintX509CA signs a CA certificate for the PKCS#10 request csr: the
// request's subject and its one URI SAN (the trust domain's SPIFFE ID),
// CA=true with path length 0, keyCertSign and cRLSign, valid from 10s ago
// for ttl, but never past the end of the upstream chain. It returns the new
// certificate followed by the upstream intermediates above the signing CA
// (the signing CA itself included unless it is a root), and the roots.
func (a *Authority) MintX509CA(_ context.Context, csrDER []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error) {
	if ttl <= 0 {
		return nil, nil, errkind.New(errkind.InvalidArgument, "mint x509 ca: ttl %s must be positive", ttl)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, errkind.Wrap(errkind.InvalidArgument, err, "mint x509 ca: malformed certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, errkind.Wrap(errkind.InvalidArgument, err, "mint x509 ca: certificate request signature does not verify")
	}
	if len(csr.URIs) != 1 || csr.URIs[0].Scheme != "spiffe" || csr.URIs[0].Host == "" ||
		(csr.URIs[0].Path != "" && csr.URIs[0].Path != "/") {
		return nil, nil, errkind.New(errkind.InvalidArgument,
			"mint x509 ca: the request must carry exactly one URI SAN, a trust domain's SPIFFE ID such as spiffe://example.org")
	}
	u, err := a.load()
	if err != nil {
		return nil, nil, fmt.Errorf("mint x509 ca: %w", err)
	}
	now := a.cfg.Now()
	notAfter := now.Add(ttl).Truncate(time.Second)
	if notAfter.After(u.end) {
		notAfter = u.end
	}
	if !notAfter.After(now) {
		return nil, nil, errkind.New(errkind.FailedPrecondition, "mint x509 ca: the upstream chain expires at %s", u.end)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               csr.Subject,
		NotBefore:             now.Truncate(time.Second).Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  csr.URIs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, u.cert, csr.PublicKey, u.key)
	if err != nil {
		return nil, nil, fmt.Errorf("mint x509 ca: sign with %s: %w", a.cfg.CertFile, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("mint x509 ca: parse signed certificate: %w", err)
	}
	chain = []*x509.Certificate{cert}
	if !isRoot(u.cert, u.roots) {
		chain = append(chain, u.cert)
	}
	return append(chain, u.chain...), u.roots, nil
}

// load reads and checks the configured files, reporting every problem.
func (a *Authority) load() (*upstream, error) {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf(field+name+": "+format, args...))
	}
	invalid := func() error {
		return errkind.Wrap(errkind.InvalidArgument, errors.Join(errs...), "invalid upstream authority")
	}
	if a.cfg.CertFile == "" {
		bad("cert_file", "required: the PEM certificate of the upstream CA that signs Signet's CA")
	}
	if a.cfg.KeyFile == "" {
		bad("key_file", "required: the PEM private key of cert_file's certificate")
	}
	if len(errs) > 0 {
		return nil, invalid()
	}
	now := a.cfg.Now()
	u := &upstream{}

	certs, err := readCerts(a.cfg.CertFile)
	if err != nil {
		bad("cert_file", "%v", err)
	} else {
		u.cert = certs[0]
		for _, p := range checkCA(u.cert, now) {
			bad("cert_file", "certificate %q %s", u.cert.Subject, p)
		}
	}
	if key, err := readKey(a.cfg.KeyFile); err != nil {
		bad("key_file", "%v", err)
	} else if u.cert != nil {
		if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(u.cert.PublicKey) {
			bad("key_file", "the key does not match the certificate in cert_file (%s)", a.cfg.CertFile)
		}
		u.key = key
	}
	switch {
	case a.cfg.BundleFile != "":
		roots, err := readCerts(a.cfg.BundleFile)
		if err != nil {
			bad("bundle_file", "%v", err)
			break
		}
		for _, r := range roots {
			if !r.IsCA || !r.BasicConstraintsValid {
				bad("bundle_file", "certificate %q is not a CA", r.Subject)
			} else if !now.Before(r.NotAfter) {
				bad("bundle_file", "root %q expired at %s", r.Subject, r.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		u.roots = roots
	case u.cert != nil && selfSigned(u.cert):
		u.roots = []*x509.Certificate{u.cert}
	case u.cert != nil:
		bad("bundle_file", "required: cert_file's certificate is issued by %q, so the roots must be given", u.cert.Issuer)
	}
	if len(errs) > 0 {
		return nil, invalid()
	}

	chains, err := u.cert.Verify(x509.VerifyOptions{
		Roots:         pool(u.roots),
		Intermediates: pool(certs[1:]),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		bad("cert_file", "certificate %q does not chain to the roots in %s: %v", u.cert.Subject, rootsSource(a.cfg), err)
		return nil, invalid()
	}
	verified := chains[0] // [cert, intermediates…, root]
	// Signet's CA goes below cert: verified[j] then has j+1 CAs below it
	// before an SVID, which its path length constraint must allow.
	for j, c := range verified {
		if c.MaxPathLen >= 0 && (c.MaxPathLen > 0 || c.MaxPathLenZero) && c.MaxPathLen < j+1 {
			bad("cert_file", "certificate %q has path length %d: it may not have Signet's CA %d level(s) below it",
				c.Subject, c.MaxPathLen, j+1)
		}
	}
	if len(errs) > 0 {
		return nil, invalid()
	}
	if len(verified) > 2 {
		u.chain = verified[1 : len(verified)-1]
	}
	u.end = u.cert.NotAfter
	for _, c := range verified[1:] {
		if c.NotAfter.Before(u.end) {
			u.end = c.NotAfter
		}
	}
	return u, nil
}

// checkCA lists what keeps c from signing CA certificates at now.
func checkCA(c *x509.Certificate, now time.Time) []string {
	var out []string
	if !c.BasicConstraintsValid || !c.IsCA {
		out = append(out, "is not a CA (basic constraints CA:TRUE)")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		out = append(out, "lacks key usage keyCertSign")
	}
	if now.Before(c.NotBefore) {
		out = append(out, "is not valid before "+c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(c.NotAfter) {
		out = append(out, "expired at "+c.NotAfter.UTC().Format(time.RFC3339))
	}
	return out
}

func rootsSource(cfg Config) string {
	if cfg.BundleFile != "" {
		return "bundle_file (" + cfg.BundleFile + ")"
	}
	return "cert_file"
}

// selfSigned reports whether c is issued by itself.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// isRoot reports whether c is one of roots.
func isRoot(c *x509.Certificate, roots []*x509.Certificate) bool {
	for _, r := range roots {
		if c.Equal(r) {
			return true
		}
	}
	return false
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// readCerts parses every PEM CERTIFICATE block of path; there must be one.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, err
	}
	return keyfile.Certificates(path, data)
}

// readKey parses the first private key PEM block of path: PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
func readKey(path string) (crypto.Signer, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	s, err := keyfile.Signer(path, data)
	if err != nil {
		return nil, err
	}
	switch s.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return s, nil
	}
	return nil, fmt.Errorf("%s: %T cannot sign certificates", path, s)
}

// randomSerial returns a positive 128-bit random serial number.
func randomSerial() *big.Int {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	n := new(big.Int).SetBytes(b[:])
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n
}
