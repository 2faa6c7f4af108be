package gcpiit

import (
	"context"
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
// node_attestor.gcp_iit in the agent's file. The zero value reads the real
// metadata server.
type AgentConfig struct {
	// MetadataURL is the base URL of the metadata server (default
	// DefaultMetadataURL). Tests point it at a fake.
	MetadataURL string `yaml:"metadata_url"`
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

// Attestor is the agent half of gcp_iit. Create it with New; it is safe for
// concurrent use.
type Attestor struct {
	base   string
	client *http.Client
}

var (
	_ nodeattest.Attestor  = (*Attestor)(nil)
	_ nodeattest.Responder = (*Attestor)(nil)
	_ slog.LogValuer       = (*Attestor)(nil)
	_ fmt.Stringer         = (*Attestor)(nil)
	_ fmt.GoStringer       = (*Attestor)(nil)
)

// maxToken bounds the identity token the agent reads.
const maxToken = 16 << 10

// New returns the attestor cfg describes.
func New(cfg AgentConfig) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gcp_iit attestor: %w", err)
	}
	base := cfg.MetadataURL
	if base == "" {
		base = DefaultMetadataURL
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the metadata server is never behind a proxy
	return &Attestor{base: strings.TrimSuffix(base, "/"), client: &http.Client{
		Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Name returns "gcp_iit".
func (a *Attestor) Name() string { return Name }

// Payload returns Hello: the evidence is the answer to the challenge.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gcp_iit payload: %w", err)
	}
	return []byte(Hello), nil
}

// Respond fetches an identity token (full format) whose audience is the
// challenge. It refuses a challenge that is not a Signet audience (see
// CheckAudience), so that a token it hands out is good for nothing else.
func (a *Attestor) Respond(ctx context.Context, challenge []byte) ([]byte, error) {
	aud := string(challenge)
	if err := CheckAudience(aud); err != nil {
		return nil, fmt.Errorf("gcp_iit: %w", err)
	}
	q := url.Values{"audience": {aud}, "format": {"full"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+IdentityPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("gcp_iit: metadata request: %w", err)
	}
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gcp_iit: metadata server: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxToken+1))
	if err != nil {
		return nil, fmt.Errorf("gcp_iit: read identity token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gcp_iit: metadata server: %s", resp.Status)
	}
	tok := strings.TrimSpace(string(body))
	if tok == "" || len(body) > maxToken {
		return nil, errors.New("gcp_iit: metadata server returned no identity token, or an oversized one")
	}
	return []byte(tok), nil
}

// String describes the attestor by its metadata URL.
func (a *Attestor) String() string { return "gcp_iit(" + a.base + ")" }

// GoString describes the attestor for %#v.
func (a *Attestor) GoString() string { return "gcpiit.Attestor{" + a.base + "}" }

// LogValue describes the attestor in log/slog output.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }
