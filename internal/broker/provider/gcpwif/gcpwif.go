// Package gcpwif is the broker's provider of Google Cloud access tokens by
// workload identity federation: the calling workload's JWT-SVID is
// exchanged at Google's Security Token Service (sts.googleapis.com/v1/token,
// RFC 8693) for a federated token of the workload identity pool provider
// that trusts Signet's jwt_issuer, which then impersonates the configured
// service account through IAM Credentials generateAccessToken. Without a
// service_account the federated token itself is returned (for resources
// that grant the pool's principals directly).
//
// Google cannot revoke an issued access token early: Revoke does nothing
// and Recalls reports false.
package gcpwif

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/oauth"
)

// Name is the provider's registry name and config value.
const Name = "gcp_wif"

// Defaults.
const (
	DefaultSTSEndpoint = "https://sts.googleapis.com/v1/token"
	DefaultIAMEndpoint = "https://iamcredentials.googleapis.com"
	DefaultScope       = "https://www.googleapis.com/auth/cloud-platform"
	// MaxLifetime is generateAccessToken's default maximum.
	MaxLifetime = time.Hour
)

// Config is a gcp_wif credential's configuration.
type Config struct {
	// Audience is the workload identity pool provider's resource name,
	// //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
	Audience string `yaml:"audience"`
	// ServiceAccount to impersonate (NAME@PROJECT.iam.gserviceaccount.com);
	// empty: return the federated token.
	ServiceAccount string `yaml:"service_account"`
	// Scopes of the access token; default cloud-platform.
	Scopes []string `yaml:"scopes"`
	// TokenAudience is the aud of the JWT-SVID; default "https:" followed
	// by Audience (the pool provider's default allowed audience).
	TokenAudience string `yaml:"token_audience"`
	// STSEndpoint and IAMEndpoint override Google's (tests, private
	// service connect).
	STSEndpoint string `yaml:"sts_endpoint"`
	IAMEndpoint string `yaml:"iam_endpoint"`
}

var (
	audienceRE = regexp.MustCompile(`^//iam\.googleapis\.com/projects/\d+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$`)
	saRE       = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.gserviceaccount\.com$`)
)

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if !audienceRE.MatchString(c.Audience) {
		errs = append(errs, fmt.Errorf("audience %q: want //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER", c.Audience))
	}
	if c.ServiceAccount != "" && !saRE.MatchString(c.ServiceAccount) {
		errs = append(errs, fmt.Errorf("service_account %q: want NAME@PROJECT.iam.gserviceaccount.com, or empty", c.ServiceAccount))
	}
	for k, v := range map[string]string{"sts_endpoint": c.STSEndpoint, "iam_endpoint": c.IAMEndpoint} {
		if v != "" {
			if err := oauth.CheckURL(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
		}
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \"") {
			errs = append(errs, fmt.Errorf("scopes[%d] %q: not a scope", i, s))
		}
	}
	return errors.Join(errs...)
}

// Provider gets Google access tokens for leases.
type Provider struct {
	credential string
	cfg        Config
	sign       oauth.SignFunc
	hc         *http.Client
	now        func() time.Time
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Recaller = (*Provider)(nil)
)

// New returns the provider of credential; cfg must be valid; hc nil: a
// client with a 30 s timeout.
func New(credential string, cfg Config, sign oauth.SignFunc, hc *http.Client, now func() time.Time) (*Provider, error) {
	if sign == nil {
		return nil, fmt.Errorf("gcp_wif credential %s: no JWT-SVID signer (the broker runs without a CA)", credential)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.STSEndpoint == "" {
		cfg.STSEndpoint = DefaultSTSEndpoint
	}
	if cfg.IAMEndpoint == "" {
		cfg.IAMEndpoint = DefaultIAMEndpoint
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{DefaultScope}
	}
	if cfg.TokenAudience == "" {
		cfg.TokenAudience = "https:" + cfg.Audience
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	return &Provider{credential: credential, cfg: cfg, sign: sign, hc: hc, now: now}, nil
}

// Recalls reports false: Google access tokens live until they expire.
func (*Provider) Recalls() bool { return false }

// Issue exchanges the workload's JWT-SVID and, with a service account,
// impersonates it for the lease's time (at most MaxLifetime).
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	fail := func(step string, err error) (provider.Credential, error) {
		return provider.Credential{}, fmt.Errorf("gcp_wif credential %s: %s: %w", p.credential, step, err)
	}
	svid, err := p.sign(ctx, r.Subject, p.cfg.TokenAudience, oauth.AssertionTTL)
	if err != nil {
		return fail("mint JWT-SVID", err)
	}
	fed, err := oauth.Exchange(ctx, p.hc, p.cfg.STSEndpoint, url.Values{
		"grant_type": {oauth.GrantTokenExchange}, "audience": {p.cfg.Audience},
		"scope": {strings.Join(p.cfg.Scopes, " ")}, "requested_token_type": {oauth.TokenTypeAccessToken},
		"subject_token": {svid}, "subject_token_type": {oauth.TokenTypeJWT},
	})
	if err != nil {
		return fail("token exchange at "+p.cfg.STSEndpoint, err)
	}
	now := p.now()
	if p.cfg.ServiceAccount == "" {
		data, exp := fed.Data(now)
		c := provider.Credential{Data: data}
		if !exp.IsZero() && exp.Before(r.ExpiresAt) {
			c.ExpiresAt = exp
		}
		return c, nil
	}
	life := min(max(r.ExpiresAt.Sub(now), time.Second), MaxLifetime).Truncate(time.Second)
	tok, exp, err := p.generateAccessToken(ctx, fed.AccessToken, life)
	if err != nil {
		return fail("generateAccessToken for "+p.cfg.ServiceAccount, err)
	}
	c := provider.Credential{Data: map[string]string{
		"access_token": tok, "token_type": "Bearer", "service_account": p.cfg.ServiceAccount,
		"expires_at": exp.UTC().Format(time.RFC3339),
	}}
	if exp.Before(r.ExpiresAt) {
		c.ExpiresAt = exp
	}
	return c, nil
}

// generateAccessToken calls IAM Credentials with the federated token.
func (p *Provider) generateAccessToken(ctx context.Context, fed string, life time.Duration) (string, time.Time, error) {
	body, _ := json.Marshal(map[string]any{"scope": p.cfg.Scopes, "lifetime": fmt.Sprintf("%ds", int(life/time.Second))})
	u := strings.TrimSuffix(p.cfg.IAMEndpoint, "/") + "/v1/projects/-/serviceAccounts/" + url.PathEscape(p.cfg.ServiceAccount) + ":generateAccessToken"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+fed)
	resp, err := p.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", time.Time{}, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", time.Time{}, fmt.Errorf("cannot reach IAM Credentials: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", time.Time{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return "", time.Time{}, fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, e.Error.Status, e.Error.Message)
	}
	var out struct {
		AccessToken string    `json:"accessToken"`
		ExpireTime  time.Time `json:"expireTime"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.AccessToken == "" {
		return "", time.Time{}, errors.New("IAM Credentials answered HTTP 200 without an accessToken")
	}
	return out.AccessToken, out.ExpireTime, nil
}

// Revoke does nothing: the token expires by itself.
func (p *Provider) Revoke(context.Context, provider.Ref) error { return nil }
