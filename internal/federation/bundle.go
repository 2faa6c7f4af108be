// Package federation implements SPIFFE federation: validating relationships
// with remote trust domains, parsing and checking their bundles, serving the
// own bundle at the bundle endpoint and refreshing remote bundles from
// theirs (SPIFFE Federation, SPIFFE Trust Domain and Bundle).
package federation

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/store"
)

// Path is where the server serves its bundle on its HTTPS address.
const Path = "/bundle"

// MaxBundleSize bounds a bundle read from a file or an endpoint.
const MaxBundleSize = 1 << 20

// NewHandler returns the bundle endpoint: GET answers the current bundle of
// td from source in SPIFFE bundle format (JWKS with spiffe_sequence and
// spiffe_refresh_hint). limit, when non-nil, admits requests by the
// client's IP; refused ones get 429.
func NewHandler(td spiffeid.TrustDomain, source spiffebundle.Source, limit interface{ AllowAddr(host string) bool }) (http.Handler, error) {
	h, err := federation.NewHandler(td, source)
	if err != nil {
		return nil, err
	}
	if limit == nil {
		return h, nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if !limit.AllowAddr(host) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// ParseBundle reads a bundle of td given as SPIFFE bundle JSON or as PEM
// X.509 authorities, and checks it with CheckBundle.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, errkind.New(errkind.InvalidArgument, "bundle is %d bytes; at most %d are accepted", len(data), MaxBundleSize)
	}
	var b *spiffebundle.Bundle
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		var err error
		if b, err = spiffebundle.Parse(td, data); err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "bundle is not valid SPIFFE bundle JSON: %v", err)
		}
	} else {
		xb, err := x509bundle.Parse(td, data)
		if err != nil {
			return nil, errkind.New(errkind.InvalidArgument, "bundle is neither SPIFFE bundle JSON nor PEM certificates: %v", err)
		}
		b = spiffebundle.FromX509Bundle(xb)
	}
	if err := CheckBundle(td, b); err != nil {
		return nil, err
	}
	return b, nil
}

// CheckBundle refuses a bundle of td that has no authorities, or whose
// X.509 authorities name another trust domain in their URI SAN (a CA
// certificate of a SPIFFE trust domain carries the trust domain's ID).
func CheckBundle(td spiffeid.TrustDomain, b *spiffebundle.Bundle) error {
	if b == nil || (len(b.X509Authorities()) == 0 && len(b.JWTAuthorities()) == 0) {
		return errkind.New(errkind.InvalidArgument, "bundle of %s is empty: it has no X.509 or JWT authorities", td.Name())
	}
	for i, c := range b.X509Authorities() {
		for _, u := range c.URIs {
			if u.Scheme != "spiffe" {
				continue
			}
			// The host is the trust domain (an authority's ID may be
			// spiffe://td/ with a path that is not a valid SPIFFE ID).
			if !strings.EqualFold(u.Host, td.Name()) {
				return errkind.New(errkind.InvalidArgument,
					"bundle is for the wrong trust domain: x509 authority %d (%s) is of %s, want %s", i, c.Subject, u.Host, td.Name())
			}
		}
	}
	return nil
}

// Relationship is what an operator asks for: federate with TrustDomain,
// fetching its bundle from BundleEndpointURL under Profile.
type Relationship struct {
	TrustDomain       string
	BundleEndpointURL string
	Profile           string
	EndpointSPIFFEID  string
	TrustBundle       []byte // SPIFFE bundle JSON or PEM; required for https_spiffe
}

// Validate checks r for a server of trust domain own and returns it as the
// store keeps it, with every problem named by its field.
func (r Relationship) Validate(own spiffeid.TrustDomain) (store.Federation, error) {
	var problems []string
	var f store.Federation
	td, err := spiffeid.TrustDomainFromString(r.TrustDomain)
	switch {
	case r.TrustDomain == "":
		problems = append(problems, "trust_domain: required")
	case err != nil:
		problems = append(problems, fmt.Sprintf("trust_domain %q: %v", r.TrustDomain, err))
	case td == own:
		problems = append(problems, fmt.Sprintf("trust_domain %s: is this server's own trust domain; federate with another one", td.Name()))
	}
	f.TrustDomain = td
	if u, err := url.Parse(r.BundleEndpointURL); r.BundleEndpointURL == "" {
		problems = append(problems, "bundle_endpoint_url: required")
	} else if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		problems = append(problems, fmt.Sprintf("bundle_endpoint_url %q: want an https:// URL with a host (no user info or fragment)", r.BundleEndpointURL))
	}
	f.BundleEndpointURL = r.BundleEndpointURL
	f.Profile = r.Profile
	switch r.Profile {
	case store.ProfileHTTPSSPIFFE:
		id, err := spiffeid.FromString(r.EndpointSPIFFEID)
		switch {
		case r.EndpointSPIFFEID == "":
			problems = append(problems, "endpoint_spiffe_id: required with profile https_spiffe")
		case err != nil:
			problems = append(problems, fmt.Sprintf("endpoint_spiffe_id %q: %v", r.EndpointSPIFFEID, err))
		case !td.IsZero() && id.TrustDomain() != td:
			problems = append(problems, fmt.Sprintf("endpoint_spiffe_id %s: must be in trust domain %s (its bundle authenticates the endpoint)", id, td.Name()))
		}
		f.EndpointSPIFFEID = id
		if len(r.TrustBundle) == 0 {
			problems = append(problems, "trust_bundle: required with profile https_spiffe (the remote trust domain's bundle that authenticates its endpoint)")
		}
	case store.ProfileHTTPSWeb:
		if r.EndpointSPIFFEID != "" {
			problems = append(problems, "endpoint_spiffe_id: only for profile https_spiffe")
		}
	case "":
		problems = append(problems, "profile: required: https_web or https_spiffe")
	default:
		problems = append(problems, fmt.Sprintf("profile %q: use https_web or https_spiffe", r.Profile))
	}
	if len(r.TrustBundle) > 0 && !td.IsZero() {
		b, err := ParseBundle(td, r.TrustBundle)
		if err != nil {
			problems = append(problems, "trust_bundle: "+err.Error())
		} else {
			data, err := b.Marshal()
			if err != nil {
				problems = append(problems, "trust_bundle: "+err.Error())
			}
			f.Bundle = data
			f.BundleSequence, _ = b.SequenceNumber()
		}
	}
	if len(problems) > 0 {
		return store.Federation{}, errkind.New(errkind.InvalidArgument, "invalid federation relationship: %s", strings.Join(problems, "; "))
	}
	return f, nil
}

// errNoBundle is the refusal to fetch over https_spiffe without a bundle
// to authenticate the endpoint with.
var errNoBundle = errors.New("no bundle of the trust domain to authenticate its https_spiffe endpoint with")
