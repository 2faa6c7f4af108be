package azuremsi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/nodeattest"
)

// AgentConfig is the agent half's configuration, the value of
// node_attestor.azure_msi in the agent's file. The zero value reads the
// real metadata service for DefaultResource.
type AgentConfig struct {
	// MetadataURL is the base URL of the instance metadata service
	// (default DefaultMetadataURL). Tests point it at a fake.
	MetadataURL string `yaml:"metadata_url"`
	// Resource is the resource the token is for (default
	// DefaultResource); it must be the server's resource.
	Resource string `yaml:"resource"`
}

// Validate reports a metadata_url that is not an http(s) base URL.
func (c AgentConfig) Validate() error {
	if c.MetadataURL == "" {
		return nil
	}
	if err := nodeattest.CheckMetadataURL(c.MetadataURL, DefaultMetadataURL); err != nil {
		return fmt.Errorf("metadata_url: %w", err)
	}
	return nil
}

// Attestor is the agent half of azure_msi. Create it with New; it is safe
// for concurrent use.
type Attestor struct {
	base, resource string
	client         *http.Client
}

var (
	_ nodeattest.Attestor = (*Attestor)(nil)
	_ slog.LogValuer      = (*Attestor)(nil)
	_ fmt.Stringer        = (*Attestor)(nil)
	_ fmt.GoStringer      = (*Attestor)(nil)
)

// maxResponse bounds the token response the agent reads.
const maxResponse = 32 << 10

// New returns the attestor cfg describes.
func New(cfg AgentConfig) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("azure_msi attestor: %w", err)
	}
	a := &Attestor{base: strings.TrimSuffix(cfg.MetadataURL, "/"), resource: cfg.Resource}
	if a.base == "" {
		a.base = DefaultMetadataURL
	}
	if a.resource == "" {
		a.resource = DefaultResource
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // IMDS is link-local: never through a proxy
	a.client = &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return a, nil
}

// Name returns "azure_msi".
func (a *Attestor) Name() string { return Name }

// Payload asks the metadata service for a managed identity token for the
// resource and returns the access token.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	q := url.Values{"api-version": {APIVersion}, "resource": {a.resource}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+TokenPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("azure_msi: metadata request: %w", err)
	}
	req.Header.Set("Metadata", "true")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("azure_msi: metadata service: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("azure_msi: read token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("azure_msi: metadata service: %s", resp.Status)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if len(body) > maxResponse || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		return nil, errors.New("azure_msi: metadata service answered no access token")
	}
	return []byte(tr.AccessToken), nil
}

// String describes the attestor by its metadata URL and resource.
func (a *Attestor) String() string { return "azure_msi(" + a.base + ", " + a.resource + ")" }

// GoString describes the attestor for %#v.
func (a *Attestor) GoString() string { return "azuremsi.Attestor{" + a.base + "}" }

// LogValue describes the attestor in log/slog output.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }
