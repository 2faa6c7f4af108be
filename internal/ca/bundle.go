package ca

import (
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// BundleFromAuthorities builds trust domain td's SPIFFE bundle from the
// stored authorities of every server replica: the certificate of each
// X.509 authority as an x509-svid entry (for one signed by an upstream
// authority: the upstream roots instead, each once), the public key of each JWT
// authority as a jwt-svid entry under its id (kid). Prepared, active, old
// and tainted authorities are published; revoked ones are not. The bundle
// carries sequence number seq and a refresh hint of DefaultRefreshHint.
// Authorities of unknown kinds (written by a newer server) are skipped.
func BundleFromAuthorities(td spiffeid.TrustDomain, auths []model.Authority, seq uint64) (*spiffebundle.Bundle, error) {
	sorted := slices.Clone(auths)
	sortAuthorities(sorted)
	b := spiffebundle.New(td)
	b.SetSequenceNumber(seq)
	b.SetRefreshHint(DefaultRefreshHint)
	for _, a := range sorted {
		if a.State == model.StateRevoked {
			continue
		}
		switch a.Kind {
		case model.AuthorityX509:
			der, what := a.Certificate, "certificate"
			if len(a.UpstreamRoots) > 0 {
				der, what = a.UpstreamRoots, "upstream root"
			}
			certs, err := x509.ParseCertificates(der)
			if err != nil {
				return nil, fmt.Errorf("build bundle: x509 authority %s: %s: %w", a.ID, what, err)
			}
			for _, cert := range certs {
				if !cert.IsCA {
					return nil, fmt.Errorf("build bundle: x509 authority %s: %s %q is not a CA", a.ID, what, cert.Subject)
				}
				b.AddX509Authority(cert) // an upstream root shared by several authorities is added once
			}
		case model.AuthorityJWT:
			pub, err := x509.ParsePKIXPublicKey(a.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("build bundle: jwt authority %s: %w", a.ID, err)
			}
			if err := b.AddJWTAuthority(a.ID, pub); err != nil {
				return nil, fmt.Errorf("build bundle: jwt authority %s: %w", a.ID, err)
			}
		}
	}
	return b, nil
}
