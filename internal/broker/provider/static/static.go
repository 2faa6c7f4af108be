// Package static is the broker's provider for secrets that another system
// issues (a SaaS API key) and Signet keeps sealed: Issue returns the
// current version of the sealed secret named like the credential. A value
// once handed out cannot be recalled, so Revoke only ends the lease; rotate
// the secret (signet secret rotate) to retire a leaked value.
package static

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Name is the provider's registry name and config value.
const Name = "static"

// Config is the provider's configuration: it takes no settings.
type Config struct{}

// Provider hands out a sealed static secret.
type Provider struct {
	name    string
	secrets provider.SecretSource
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Recaller = (*Provider)(nil)
	_ provider.ReadOnly = (*Provider)(nil)
)

// New returns the provider of the secret called name, read from secrets.
func New(name string, secrets provider.SecretSource) (*Provider, error) {
	if secrets == nil {
		return nil, errors.New("static provider: no secret source")
	}
	return &Provider{name: name, secrets: secrets}, nil
}

// Issue returns the secret's current version as data {value}.
func (p *Provider) Issue(ctx context.Context, _ provider.Request) (provider.Credential, error) {
	v, version, err := p.secrets.CurrentSecret(ctx, p.name)
	if err != nil {
		return provider.Credential{}, fmt.Errorf("static credential %s: %w", p.name, err)
	}
	if !utf8.Valid(v) {
		return provider.Credential{}, fmt.Errorf("static credential %s: version %d is not UTF-8 text", p.name, version)
	}
	return provider.Credential{Data: map[string]string{"value": string(v)}, SecretVersion: version}, nil
}

// Revoke does nothing: a static secret cannot be recalled from its holder.
func (p *Provider) Revoke(context.Context, provider.Ref) error { return nil }

// Recalls reports false: revoking a static lease does not take the value
// back.
func (p *Provider) Recalls() bool { return false }

// ReadOnly reports true: Issue only reads the sealed secret.
func (p *Provider) ReadOnly() bool { return true }
