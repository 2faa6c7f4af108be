package awsiid

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/nodeattest"
)

// AgentConfig is the agent half's configuration, the value of
// node_attestor.aws_iid in the agent's file. The zero value reads the real
// metadata service.
type AgentConfig struct {
	// MetadataURL is the base URL of the instance metadata service
	// (default DefaultMetadataURL). Tests point it at a fake.
	MetadataURL string `yaml:"metadata_url"`
}

// Validate reports a metadata_url that is not an http(s) URL with a host.
func (c AgentConfig) Validate() error {
	if c.MetadataURL == "" {
		return nil
	}
	if err := nodeattest.CheckMetadataURL(c.MetadataURL, DefaultMetadataURL); err != nil {
		return fmt.Errorf("metadata_url: %w", err)
	}
	return nil
}

// Attestor is the agent half of aws_iid. Create it with New; it is safe for
// concurrent use.
type Attestor struct {
	base   string
	client *http.Client
}

var (
	_ nodeattest.Attestor = (*Attestor)(nil)
	_ slog.LogValuer      = (*Attestor)(nil)
	_ fmt.Stringer        = (*Attestor)(nil)
	_ fmt.GoStringer      = (*Attestor)(nil)
)

// metadataTimeout bounds each request to the metadata service, which
// answers in milliseconds when it is there at all.
const metadataTimeout = 10 * time.Second

// maxResponse bounds each metadata response the agent reads.
const maxResponse = 16 << 10

// New returns the attestor cfg describes.
func New(cfg AgentConfig) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aws_iid attestor: %w", err)
	}
	base := cfg.MetadataURL
	if base == "" {
		base = DefaultMetadataURL
	}
	return &Attestor{base: strings.TrimSuffix(base, "/"), client: metadataClient()}, nil
}

// metadataClient talks to a link-local service: never through a proxy, and
// never following a redirect elsewhere.
func metadataClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{
		Transport:     tr,
		Timeout:       metadataTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Name returns "aws_iid".
func (a *Attestor) Name() string { return Name }

// Payload opens an IMDSv2 session and reads the instance identity document
// and its rsa2048 signature, encoded as a Payload.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	tok, err := a.do(ctx, http.MethodPut, TokenPath, map[string]string{TokenTTLHeader: "60"})
	if err != nil {
		return nil, err
	}
	h := map[string]string{TokenHeader: string(tok)}
	doc, err := a.do(ctx, http.MethodGet, DocumentPath, h)
	if err != nil {
		return nil, err
	}
	sig, err := a.do(ctx, http.MethodGet, SignaturePath, h)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Payload{Document: string(doc), PKCS7: strings.TrimSpace(string(sig))})
}

// do makes one metadata request and returns the body of its 200 answer.
func (a *Attestor) do(ctx context.Context, method, path string, header map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("aws_iid: metadata request %s: %w", path, err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("aws_iid: metadata service %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("aws_iid: read metadata %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("aws_iid: metadata service %s: %s", path, resp.Status)
	}
	if len(body) > maxResponse || len(body) == 0 {
		return nil, fmt.Errorf("aws_iid: metadata %s: %d bytes, want 1 to %d", path, len(body), maxResponse)
	}
	return body, nil
}

// String describes the attestor by its metadata URL.
func (a *Attestor) String() string { return "aws_iid(" + a.base + ")" }

// GoString describes the attestor for %#v.
func (a *Attestor) GoString() string { return "awsiid.Attestor{" + a.base + "}" }

// LogValue describes the attestor in log/slog output.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }
