// Package azurewif is the broker's provider of Microsoft Entra ID (Azure)
// access tokens by workload identity federation: the calling workload's
// JWT-SVID, for audience api://AzureADTokenExchange, is the client
// assertion of a client-credentials request at the tenant's token
// endpoint, for the application (client_id) whose federated identity
// credential trusts Signet's jwt_issuer and the workload's SPIFFE ID as
// subject. No client secret exists.
//
// Entra cannot revoke an issued access token: Revoke does nothing and
// Recalls reports false.
package azurewif

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/oauth"
)

// Name is the provider's registry name and config value.
const Name = "azure_wif"

// Audience is the aud Entra expects of federated assertions.
const Audience = "api://AzureADTokenExchange"

// Defaults.
const (
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	DefaultScope         = "https://management.azure.com/.default"
)

// Config is an azure_wif credential's configuration.
type Config struct {
	// TenantID is the directory (tenant) id, a GUID, or a verified domain.
	TenantID string `yaml:"tenant_id"`
	// ClientID is the application (client) id holding the federated
	// identity credential.
	ClientID string `yaml:"client_id"`
	// Scope of the token; default the Azure Resource Manager's .default.
	Scope string `yaml:"scope"`
	// AuthorityHost overrides https://login.microsoftonline.com (national
	// clouds, tests).
	AuthorityHost string `yaml:"authority_host"`
}

var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,254}$`)

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if !tenantRE.MatchString(c.TenantID) {
		errs = append(errs, fmt.Errorf("tenant_id %q: want the directory id (a GUID) or a verified domain", c.TenantID))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("client_id: required (the application id with the federated credential)"))
	}
	if c.AuthorityHost != "" {
		if err := oauth.CheckURL(c.AuthorityHost); err != nil {
			errs = append(errs, fmt.Errorf("authority_host: %w", err))
		}
	}
	if strings.ContainsAny(c.Scope, " \"") {
		errs = append(errs, fmt.Errorf("scope %q: one scope, such as %s", c.Scope, DefaultScope))
	}
	return errors.Join(errs...)
}

// Provider gets Entra access tokens for leases.
type Provider struct {
	credential string
	cfg        Config
	tokenURL   string
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
		return nil, fmt.Errorf("azure_wif credential %s: no JWT-SVID signer (the broker runs without a CA)", credential)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AuthorityHost == "" {
		cfg.AuthorityHost = DefaultAuthorityHost
	}
	if cfg.Scope == "" {
		cfg.Scope = DefaultScope
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	tokenURL := strings.TrimSuffix(cfg.AuthorityHost, "/") + "/" + url.PathEscape(cfg.TenantID) + "/oauth2/v2.0/token"
	return &Provider{credential: credential, cfg: cfg, tokenURL: tokenURL, sign: sign, hc: hc, now: now}, nil
}

// Recalls reports false: Entra access tokens live until they expire.
func (*Provider) Recalls() bool { return false }

// Issue trades the workload's JWT-SVID for an access token.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	svid, err := p.sign(ctx, r.Subject, Audience, oauth.AssertionTTL)
	if err != nil {
		return provider.Credential{}, fmt.Errorf("azure_wif credential %s: mint JWT-SVID: %w", p.credential, err)
	}
	form := url.Values{
		"grant_type": {oauth.GrantClientCredentials}, "client_id": {p.cfg.ClientID}, "scope": {p.cfg.Scope},
		"client_assertion_type": {oauth.AssertionTypeJWTBearer}, "client_assertion": {svid},
	}
	t, err := oauth.Exchange(ctx, p.hc, p.tokenURL, form)
	if err != nil {
		return provider.Credential{}, fmt.Errorf("azure_wif credential %s: token request for client %s in tenant %s: %w", p.credential, p.cfg.ClientID, p.cfg.TenantID, err)
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
