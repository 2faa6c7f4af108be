// Package oidcdiscovery serves OpenID Connect discovery for JWT-SVIDs: the
// provider configuration document at ISSUER/.well-known/openid-configuration
// and the JWKS it names (jwks_uri) with every published JWT key of the trust
// domain (prepared, active, old and tainted; revoked ones are gone from the
// bundle). AWS IAM OIDC identity providers, GCP and Azure workload identity
// federation, Vault's jwt auth method and any OIDC library can then verify
// JWT-SVIDs whose iss is the issuer, knowing nothing of SPIFFE.
//
// Both documents are served with Cache-Control max-age shorter than the
// time a new JWT key is published before it signs (see internal/ca), so a
// relying party that honours the header always knows a key before it sees
// a token signed by it.
package oidcdiscovery

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
)

// Paths below the issuer's path.
const (
	ConfigurationPath = "/.well-known/openid-configuration"
	JWKSPath          = "/.well-known/jwks.json"
)

// MaxAge bounds the Cache-Control max-age of both documents.
const MaxAge = 5 * time.Minute

// ParseIssuer checks that issuer is usable as jwt_issuer: an absolute https
// URL with a host and no query, fragment or user info (OpenID Connect
// Discovery 1.0, section 3). A trailing slash is removed.
func ParseIssuer(issuer string) (*url.URL, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("jwt_issuer %q is not a URL: %v", issuer, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("jwt_issuer %q: must be an https URL, for example https://signet.example.com", issuer)
	case u.Host == "":
		return nil, fmt.Errorf("jwt_issuer %q: has no host, for example https://signet.example.com", issuer)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "":
		return nil, fmt.Errorf("jwt_issuer %q: must not have a query, fragment or user info", issuer)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Config configures a Handler.
type Config struct {
	// Issuer is jwt_issuer (checked with ParseIssuer).
	Issuer string
	// Bundle returns the current trust bundle, whose JWT authorities are
	// published; nil result: none yet. Required.
	Bundle func() *spiffebundle.Bundle
	// KeyLead is how long a new JWT key is published before it signs;
	// max-age is kept under half of it (and at most MaxAge).
	KeyLead time.Duration
	// Limit, when set, admits requests by the client's address (an IP);
	// refused ones get 429.
	Limit interface{ AllowAddr(host string) bool }
}

// Handler serves the discovery documents of one issuer.
type Handler struct {
	issuer string
	base   string // the issuer's path, without a trailing slash
	bundle func() *spiffebundle.Bundle
	maxAge time.Duration
	limit  interface{ AllowAddr(host string) bool }
}

// New returns the handler cfg describes.
func New(cfg Config) (*Handler, error) {
	u, err := ParseIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if cfg.Bundle == nil {
		return nil, errors.New("oidc discovery: no bundle source")
	}
	maxAge := min(MaxAge, cfg.KeyLead/2)
	if maxAge < time.Second {
		maxAge = 0
	}
	return &Handler{issuer: u.String(), base: u.Path, bundle: cfg.Bundle, maxAge: maxAge, limit: cfg.Limit}, nil
}

// Issuer is the issuer URL as published.
func (h *Handler) Issuer() string { return h.issuer }

// Paths are the request paths h answers: the configuration and the JWKS.
func (h *Handler) Paths() []string {
	return []string{h.base + ConfigurationPath, h.base + JWKSPath}
}

// MaxAgeSeconds is the Cache-Control max-age h sends.
func (h *Handler) MaxAgeSeconds() int { return int(h.maxAge / time.Second) }

// configuration is the provider metadata a JWT relying party needs. The
// fields OpenID Connect Discovery marks REQUIRED for an OP are all present;
// Signet is no login provider, so authorization_endpoint names nothing
// callable and response types are the minimum the specification allows.
type configuration struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	SigningAlgs           []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported       []string `json:"claims_supported"`
	ScopesSupported       []string `json:"scopes_supported"`
}

// ServeHTTP answers GET and HEAD of the two documents.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}
	if h.limit != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if !h.limit.AllowAddr(host) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
	}
	var doc any
	keys, algs := h.keys()
	switch r.URL.Path {
	case h.base + ConfigurationPath:
		doc = configuration{
			Issuer:                h.issuer,
			JWKSURI:               h.issuer + JWKSPath,
			AuthorizationEndpoint: h.issuer + "/authorize",
			ResponseTypes:         []string{"id_token"},
			SubjectTypes:          []string{"public"},
			SigningAlgs:           algs,
			ClaimsSupported:       []string{"sub", "aud", "exp", "iat", "iss"},
			ScopesSupported:       []string{"openid"},
		}
	case h.base + JWKSPath:
		doc = keys
	default:
		http.NotFound(w, r)
		return
	}
	body, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(h.MaxAgeSeconds()))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// keys returns the JWKS of the current bundle's JWT authorities, sorted by
// kid, with use and alg set, and the algorithms they sign with.
func (h *Handler) keys() (jose.JSONWebKeySet, []string) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	b := h.bundle()
	if b == nil {
		return set, []string{string(jose.ES256)}
	}
	var algs []string
	for kid, pub := range b.JWTAuthorities() {
		alg, ok := algorithm(pub)
		if !ok {
			continue
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"})
		if !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	slices.SortFunc(set.Keys, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	slices.Sort(algs)
	if len(algs) == 0 {
		algs = []string{string(jose.ES256)}
	}
	return set, algs
}

// algorithm is the JWS algorithm the CA signs with for a key of pub's type.
func algorithm(pub crypto.PublicKey) (string, bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return string(jose.ES256), true
		case elliptic.P384():
			return string(jose.ES384), true
		case elliptic.P521():
			return string(jose.ES512), true
		}
	case *rsa.PublicKey:
		return string(jose.RS256), true
	}
	return "", false
}
