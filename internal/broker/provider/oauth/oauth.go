// Package oauth is the broker's provider of access tokens from an external
// OAuth 2.0 authorization server. The workload's identity is the client
// authentication: Signet mints a JWT-SVID of the calling workload and sends
// it as an RFC 7523 client assertion (private_key_jwt,
// client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer)
// in a client-credentials request, or, with grant_type token_exchange, as
// the subject_token of an RFC 8693 token exchange. No client secret is
// stored anywhere.
//
// Exchange, the token-endpoint call itself, is shared with the azure_wif
// and gcp_wif providers.
package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Name is the provider's registry name and config value.
const Name = "oauth"

// Grant types, request parameters and token types of RFC 6749, 7523 and 8693.
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
)

// AssertionTTL is the lifetime of the JWT-SVIDs sent as assertions: used
// once, at once.
const AssertionTTL = 2 * time.Minute

// maxResponse bounds a token endpoint's response body.
const maxResponse = 1 << 20

// Config is an oauth credential's configuration.
type Config struct {
	// TokenURL is the authorization server's token endpoint (https).
	TokenURL string `yaml:"token_url"`
	// ClientID is the client the authorization server knows Signet's
	// workloads as.
	ClientID string `yaml:"client_id"`
	// Scopes are requested, space-separated in the request.
	Scopes []string `yaml:"scopes"`
	// Audience is the aud of the JWT-SVID; default TokenURL (RFC 7523
	// section 3).
	Audience string `yaml:"audience"`
	// GrantType is client_credentials (default) or token_exchange.
	GrantType string `yaml:"grant_type"`
	// Resource, with token_exchange, is the target service (RFC 8693
	// resource); optional.
	Resource string `yaml:"resource"`
}

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if err := CheckURL(c.TokenURL); err != nil {
		errs = append(errs, fmt.Errorf("token_url: %w", err))
	}
	if c.ClientID == "" && c.GrantType != "token_exchange" {
		errs = append(errs, errors.New("client_id: required (the client the authorization server registered for Signet)"))
	}
	switch c.GrantType {
	case "", "client_credentials", "token_exchange":
	default:
		errs = append(errs, fmt.Errorf("grant_type %q: use client_credentials or token_exchange", c.GrantType))
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			errs = append(errs, fmt.Errorf("scopes[%d] %q: not a scope token", i, s))
		}
	}
	return errors.Join(errs...)
}

// CheckURL accepts an absolute http(s) URL without user info or fragment.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an https URL such as https://auth.example.com/oauth2/token", s)
	}
	return nil
}

// SignFunc mints a JWT-SVID (provider.Deps.SignJWTSVID).
type SignFunc func(ctx context.Context, subject spiffeid.ID, aud string, ttl time.Duration) (string, error)

// Token is a token endpoint's successful response (RFC 6749 section 5.1,
// RFC 8693 section 2.2.1).
type Token struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope"`
	IssuedTokenType string `json:"issued_token_type"`
}

// RemoteError is a token endpoint's error response: its HTTP status and
// its own error code and description (which carry no secret of ours).
type RemoteError struct {
	Status      int
	Code        string
	Description string
}

func (e *RemoteError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Exchange POSTs form to tokenURL and decodes the token, or the error
// response as a *RemoteError. Failures to reach the server say so.
func Exchange(ctx context.Context, hc *http.Client, tokenURL string, form url.Values) (*Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach the token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("read the token endpoint's response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		re := &RemoteError{Status: resp.StatusCode}
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &e) == nil {
			re.Code, re.Description = e.Code, e.Description
		}
		return nil, re
	}
	var t Token
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("token endpoint answered HTTP 200 without a JSON token: %v", err)
	}
	if t.AccessToken == "" {
		return nil, errors.New("token endpoint answered HTTP 200 without an access_token")
	}
	return &t, nil
}

// Data is a token as a credential's data: access_token, token_type,
// scope and expires_at when known.
func (t *Token) Data(now time.Time) (map[string]string, time.Time) {
	d := map[string]string{"access_token": t.AccessToken, "token_type": t.TokenType}
	if t.Scope != "" {
		d["scope"] = t.Scope
	}
	var exp time.Time
	if t.ExpiresIn > 0 {
		exp = now.Add(time.Duration(t.ExpiresIn) * time.Second).Truncate(time.Second)
		d["expires_at"] = exp.UTC().Format(time.RFC3339)
		d["expires_in"] = strconv.FormatInt(t.ExpiresIn, 10)
	}
	return d, exp
}

// Provider gets access tokens for leases.
type Provider struct {
	credential string
	cfg        Config
	sign       SignFunc
	hc         *http.Client
	now        func() time.Time
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Recaller = (*Provider)(nil)
)

// New returns the provider of credential; cfg must be valid; hc nil: a
// client with a 30 s timeout.
func New(credential string, cfg Config, sign SignFunc, hc *http.Client, now func() time.Time) (*Provider, error) {
	if sign == nil {
		return nil, fmt.Errorf("oauth credential %s: no JWT-SVID signer (the broker runs without a CA)", credential)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Audience == "" {
		cfg.Audience = cfg.TokenURL
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	return &Provider{credential: credential, cfg: cfg, sign: sign, hc: hc, now: now}, nil
}

// Recalls reports false: an issued bearer token lives until it expires.
func (*Provider) Recalls() bool { return false }

// Issue gets a token as the calling workload.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	svid, err := p.sign(ctx, r.Subject, p.cfg.Audience, AssertionTTL)
	if err != nil {
		return provider.Credential{}, fmt.Errorf("oauth credential %s: mint JWT-SVID: %w", p.credential, err)
	}
	form := url.Values{}
	if p.cfg.GrantType == "token_exchange" {
		form.Set("grant_type", GrantTokenExchange)
		form.Set("subject_token", svid)
		form.Set("subject_token_type", TokenTypeJWT)
		form.Set("requested_token_type", TokenTypeAccessToken)
		if p.cfg.Resource != "" {
			form.Set("resource", p.cfg.Resource)
		}
		if p.cfg.ClientID != "" {
			form.Set("client_id", p.cfg.ClientID)
		}
	} else {
		form.Set("grant_type", GrantClientCredentials)
		form.Set("client_id", p.cfg.ClientID)
		form.Set("client_assertion_type", AssertionTypeJWTBearer)
		form.Set("client_assertion", svid)
	}
	if len(p.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(p.cfg.Scopes, " "))
	}
	t, err := Exchange(ctx, p.hc, p.cfg.TokenURL, form)
	if err != nil {
		return provider.Credential{}, fmt.Errorf("oauth credential %s: token request to %s: %w", p.credential, p.cfg.TokenURL, err)
	}
	data, exp := t.Data(p.now())
	c := provider.Credential{Data: data}
	if !exp.IsZero() && exp.Before(r.ExpiresAt) {
		c.ExpiresAt = exp
	}
	return c, nil
}

// Revoke does nothing: the token expires by itself.
func (p *Provider) Revoke(context.Context, provider.Ref) error { return nil }
