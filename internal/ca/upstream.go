package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
)

// UpstreamAuthority signs this server's X.509 CA certificates, making
// Signet an intermediate CA under an existing (enterprise) PKI. With one
// configured, every new X.509 authority's certificate is signed by it
// instead of self-signed, the SVIDs it mints carry the chain up to (not
// including) the upstream root, and the trust bundle publishes the
// upstream roots instead of Signet's CA certificates, as the SPIFFE
// specifications describe. The disk upstream authority (package
// upstream/disk) signs with a CA certificate and key in files.
type UpstreamAuthority interface {
	// MintX509CA signs a CA certificate for the PKCS#10 request csr (DER),
	// with the request's subject and URI SAN (the trust domain's SPIFFE ID),
	// CA=true and keyCertSign, valid for at most ttl: less when the
	// upstream's own certificate ends sooner. It returns the chain
	// [the new certificate, upstream intermediates…], roots excluded, and
	// the upstream roots that chain verifies to.
	MintX509CA(ctx context.Context, csr []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error)
}

// upstreamCertificate has the upstream authority sign the CA certificate
// of new X.509 authority a, whose key is key, and records the result on a:
// the certificate, the upstream chain and roots, and the validity the
// upstream granted (which may end sooner than asked).
func (m *Manager) upstreamCertificate(ctx context.Context, a *model.Authority, key crypto.Signer, now time.Time) error {
	subject := m.subject
	subject.SerialNumber = a.ID
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: subject,
		URIs:    []*url.URL{m.td.ID().URL()},
	}, key)
	if err != nil {
		return fmt.Errorf("create ca certificate request: %w", err)
	}
	// Ask for the end a self-signed CA would get; upstreams start at their
	// own "now", so the ttl counts from ours.
	chain, roots, err := m.upstream.MintX509CA(ctx, csr, a.NotAfter.Sub(now))
	if err != nil {
		return fmt.Errorf("upstream authority: %w", err)
	}
	if err := m.checkUpstreamChain(chain, roots, key, now); err != nil {
		return errkind.Wrap(errkind.Internal, err, "upstream authority returned an unusable ca certificate")
	}
	a.Certificate = chain[0].Raw
	a.UpstreamChain = concatDER(chain[1:])
	a.UpstreamRoots = concatDER(roots)
	if want := a.NotAfter; want.Sub(chain[0].NotAfter) > time.Minute {
		m.log.Warn("upstream authority cut the x509 authority's lifetime short: renew the upstream ca certificate",
			logID, a.ID, logNotAfter, chain[0].NotAfter, "requested_not_after", want)
	}
	a.NotBefore, a.NotAfter = chain[0].NotBefore, chain[0].NotAfter
	return nil
}

// checkUpstreamChain checks what the CA relies on in an upstream-signed
// chain: a CA certificate for key, naming the trust domain, valid now and
// verifying through the intermediates to one of the roots.
func (m *Manager) checkUpstreamChain(chain, roots []*x509.Certificate, key crypto.Signer, now time.Time) error {
	if len(chain) == 0 || len(roots) == 0 {
		return fmt.Errorf("empty chain (%d certificates) or no roots (%d)", len(chain), len(roots))
	}
	c := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	switch {
	case !ok || !pub.Equal(c.PublicKey):
		return fmt.Errorf("certificate is not for the authority's key")
	case !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("certificate is not a CA with keyCertSign")
	case len(c.URIs) != 1 || c.URIs[0].String() != m.td.IDString():
		return fmt.Errorf("certificate URI SANs %v, want exactly %s", c.URIs, m.td.IDString())
	case !now.Before(c.NotAfter):
		return fmt.Errorf("certificate expired at %s", c.NotAfter)
	}
	inter, rootPool := x509.NewCertPool(), x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	for _, r := range roots {
		if !r.IsCA {
			return fmt.Errorf("root %q is not a CA", r.Subject)
		}
		rootPool.AddCert(r)
	}
	if _, err := c.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("certificate does not verify to the upstream roots: %w", err)
	}
	return nil
}

// concatDER concatenates the DER of certs (nil for none), as
// x509.ParseCertificates reads it back.
func concatDER(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(c.Raw)
	}
	if b.Len() == 0 {
		return nil
	}
	return b.Bytes()
}
