package ci

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Asymmetric JWS algorithms accepted; none and HMAC never are.
var asymmetric = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

func algNames() []string {
	out := make([]string, len(asymmetric))
	for i, a := range asymmetric {
		out[i] = string(a)
	}
	return out
}

// Key set cache bounds.
const (
	maxDocSize        = 1 << 20
	defaultKeysMaxAge = time.Hour
	minKeysMaxAge     = time.Minute
	maxKeysMaxAge     = 24 * time.Hour
	// refreshInterval bounds refetches on an unknown kid, per issuer.
	refreshInterval = 10 * time.Second
	fetchTimeout    = 10 * time.Second
)

// keySet is an issuer's JWKS, fetched over HTTPS (from the discovery
// document's jwks_uri unless configured), cached until its max-age, and
// refetched on an unknown kid at most every refreshInterval. It implements
// go-oidc's KeySet with go-jose.
type keySet struct {
	s      *issuerSettings
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	jwksURL   string
	keys      map[string]jose.JSONWebKey // by kid; "" for a key without one
	expires   time.Time
	lastFetch time.Time
	fetchErr  error
}

func newKeySet(s *issuerSettings, now func() time.Time) *keySet {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.roots}
	return &keySet{s: s, now: now, jwksURL: s.jwksURL, client: &http.Client{Transport: tr, Timeout: fetchTimeout,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Scheme != "https" {
				return errors.New("redirect away from https refused")
			}
			return nil
		}}}
}

// errKeys says the issuer's keys are unavailable (not the caller's fault).
type errKeys struct{ err error }

func (e errKeys) Error() string { return e.err.Error() }
func (e errKeys) Unwrap() error { return e.err }

// keysFailedKey carries a *bool that VerifySignature sets when the
// issuer's keys could not be fetched.
type keysFailedKey struct{}

// VerifySignature verifies the compact JWS jwt with the issuer's key named
// by its kid and returns the payload. The alg must be asymmetric and, when
// the JWK declares one, equal to it.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, asymmetric)
	if err != nil {
		return nil, fmt.Errorf("malformed or unsupported JWS: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	h := jws.Signatures[0].Header
	key, err := k.key(ctx, h.KeyID)
	if err != nil {
		var ek errKeys
		if flag, ok := ctx.Value(keysFailedKey{}).(*bool); ok && errors.As(err, &ek) {
			*flag = true // go-oidc flattens the error; tell the caller this way
		}
		return nil, err
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, fmt.Errorf("alg %s does not match the key's %s", h.Algorithm, key.Algorithm)
	}
	return jws.Verify(key.Key)
}

// key returns the key with kid, refetching the set when it is unknown or
// expired (rate-limited).
func (k *keySet) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	key, ok := k.keys[kid]
	if ok && now.Before(k.expires) {
		return key, nil
	}
	if now.Sub(k.lastFetch) >= refreshInterval || k.keys == nil && k.lastFetch.IsZero() {
		k.lastFetch = now
		k.fetchErr = k.fetchLocked(ctx, now)
	}
	if key, ok = k.keys[kid]; ok {
		return key, nil
	}
	if k.fetchErr != nil {
		return jose.JSONWebKey{}, errKeys{fmt.Errorf("the keys of %s are unavailable: %w", k.s.issuer, k.fetchErr)}
	}
	return jose.JSONWebKey{}, fmt.Errorf("no key with kid %q in the issuer's key set", truncate(kid))
}

// fetchLocked fetches discovery (once) and the key set.
func (k *keySet) fetchLocked(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if k.jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if _, err := k.getJSON(ctx, strings.TrimSuffix(k.s.issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != k.s.issuer {
			return fmt.Errorf("discovery: document is for issuer %q, not %q", truncate(doc.Issuer), k.s.issuer)
		}
		if !strings.HasPrefix(doc.JWKSURI, "https://") {
			return fmt.Errorf("discovery: jwks_uri %q is not https", truncate(doc.JWKSURI))
		}
		k.jwksURL = doc.JWKSURI
	}
	var set jose.JSONWebKeySet
	hdr, err := k.getJSON(ctx, k.jwksURL, &set)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys := map[string]jose.JSONWebKey{}
	for _, key := range set.Keys {
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys[key.KeyID] = key
		}
	}
	if len(keys) == 0 {
		return errors.New("jwks: no asymmetric signing keys")
	}
	k.keys = keys
	k.expires = now.Add(maxAge(hdr.Get("Cache-Control")))
	return nil
}

func (k *keySet) getJSON(ctx context.Context, u string, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocSize {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", u, maxDocSize)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return nil, fmt.Errorf("GET %s: %v", u, err)
	}
	return resp.Header, nil
}

// maxAge reads Cache-Control's max-age, clamped; the default without one.
func maxAge(cc string) time.Duration {
	for _, part := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return min(max(time.Duration(n)*time.Second, minKeysMaxAge), maxKeysMaxAge)
			}
		}
	}
	return defaultKeysMaxAge
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
