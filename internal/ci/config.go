package ci

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/keyfile"
)

// Kinds of issuer: which claims become selectors.
const (
	KindGitHub  = "github"
	KindGitLab  = "gitlab"
	KindGeneric = "generic"
)

// Well-known issuers whose kind is guessed.
var wellKnown = map[string]string{
	"https://token.actions.githubusercontent.com": KindGitHub,
	"https://gitlab.com":                          KindGitLab,
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	claimRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
)

// issuerSettings is one validated oidc_issuers entry.
type issuerSettings struct {
	name     string
	issuer   string
	audience string
	kind     string
	roots    *x509.CertPool // nil: the system's
	jwksURL  string
	claims   []string
	parent   spiffeid.ID
}

// settings validates every issuer, reporting every problem at once with
// its key path.
func settings(td spiffeid.TrustDomain, issuers map[string]config.OIDCIssuer) ([]issuerSettings, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var out []issuerSettings
	names := make([]string, 0, len(issuers))
	for n := range issuers {
		names = append(names, n)
	}
	slices.Sort(names)
	seen := map[string]string{}
	for _, name := range names {
		c := issuers[name]
		key := "oidc_issuers." + name
		if !nameRE.MatchString(name) {
			bad("%s: the name is a selector type and a path segment: use lower-case letters, digits, '-' and '_' (at most 63)", key)
			continue
		}
		s := issuerSettings{name: name, issuer: c.Issuer, audience: c.Audience, kind: c.Kind, jwksURL: c.JWKSURL, claims: c.Claims,
			parent: ParentID(td, name)}
		if u, err := url.Parse(c.Issuer); c.Issuer == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("%s.issuer %q: want the issuer's https URL, e.g. https://token.actions.githubusercontent.com", key, c.Issuer)
		} else if other, dup := seen[c.Issuer]; dup {
			bad("%s.issuer %q is also oidc_issuers.%s's: configure each issuer once", key, c.Issuer, other)
		}
		seen[c.Issuer] = name
		if s.audience == "" {
			s.audience = td.IDString()
		}
		if s.kind == "" {
			s.kind = wellKnown[strings.TrimSuffix(c.Issuer, "/")]
		}
		switch s.kind {
		case KindGitHub, KindGitLab, KindGeneric:
		case "":
			bad("%s.kind is required for %q: use github, gitlab or generic", key, c.Issuer)
		default:
			bad("%s.kind %q: use github, gitlab or generic", key, s.kind)
		}
		if c.JWKSURL != "" {
			if u, err := url.Parse(c.JWKSURL); err != nil || u.Scheme != "https" || u.Host == "" {
				bad("%s.jwks_url %q: want an https URL", key, c.JWKSURL)
			}
		}
		for _, cl := range c.Claims {
			if !claimRE.MatchString(cl) {
				bad("%s.claims: %q is not a claim name (letters, digits, '_', '.', ':', '-')", key, cl)
			}
		}
		if c.CABundlePath != "" {
			pool, err := readRoots(c.CABundlePath)
			if err != nil {
				bad("%s.ca_bundle_path: %v", key, err)
			}
			s.roots = pool
		}
		out = append(out, s)
	}
	return out, errors.Join(errs...)
}

func readRoots(path string) (*x509.CertPool, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, err
	}
	certs, err := keyfile.Certificates(path, data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ParentID is the ID the entries of issuer name's jobs are parented to:
// spiffe://<td>/signet/ci/<name>.
func ParentID(td spiffeid.TrustDomain, name string) spiffeid.ID {
	return spiffeid.RequireFromPath(td, "/signet/ci/"+name)
}
