// Package brokerclient is the workload side of the credential broker: it
// trades the workload's X509-SVID (over mTLS) for a brokered credential at
// the server's token endpoint (POST /oauth2/token, RFC 8693). The CLI's
// `credential get`, the helper, `signet exec` and the gateway's egress all
// request credentials through it.
package brokerclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/internal/broker/wire"
	agentv1 "github.com/signet-id/signet/internal/gen/signet/agent/v1"
	"github.com/signet-id/signet/internal/tokenapi"
)

// EnvURL names the environment variable holding the broker's base URL.
const EnvURL = "SIGNET_BROKER_URL"

// maxResponse bounds a token endpoint response.
const maxResponse = 1 << 20

// ParseURL checks a broker base URL: https with a host. field names where
// it came from, for the error ("--broker", "broker_url", EnvURL).
func ParseURL(field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("%s %q: want https://HOST:PORT", field, raw)
	}
	return u, nil
}

// ResolveURL picks the broker's base URL: the explicit value (from field),
// else $SIGNET_BROKER_URL, else learned() when it is non-nil (what the
// local agent learned from its server). An error says which of them to set.
func ResolveURL(ctx context.Context, field, explicit string, learned func(context.Context) (string, error)) (*url.URL, error) {
	if explicit != "" {
		return ParseURL(field, explicit)
	}
	if v := os.Getenv(EnvURL); v != "" {
		return ParseURL(EnvURL, v)
	}
	var why string
	if learned != nil {
		v, err := learned(ctx)
		if err == nil && v != "" {
			return ParseURL("the agent's broker URL", v)
		}
		if err != nil {
			why = fmt.Sprintf(" (the agent did not say: %v)", err)
		} else {
			why = " (the agent's server advertises no HTTPS address)"
		}
	}
	return nil, fmt.Errorf("%s is required (or %s): the server's HTTPS address, e.g. https://signet.example.com:8443%s", field, EnvURL, why)
}

// FromAgent returns a learned function for ResolveURL: it asks the local
// agent at socketAddr (a Workload API address as go-spiffe takes it,
// unix:///path) over its AgentInfo service which broker URL its server
// advertised. The agent answers "" when its server advertises none.
func FromAgent(socketAddr string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		target, err := agentTarget(socketAddr)
		if err != nil {
			return "", err
		}
		if p, ok := strings.CutPrefix(target, "unix://"); ok {
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("no agent socket at %s", p)
			}
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return "", fmt.Errorf("agent socket %q: %w", socketAddr, err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(ctx, agentInfoTimeout)
		defer cancel()
		resp, err := agentv1.NewAgentInfoClient(conn).GetInfo(ctx, &agentv1.GetInfoRequest{})
		if err != nil {
			return "", fmt.Errorf("agent at %q: %s", socketAddr, status.Convert(err).Message())
		}
		return resp.GetBrokerUrl(), nil
	}
}

// agentInfoTimeout bounds the AgentInfo call of FromAgent.
const agentInfoTimeout = 5 * time.Second

// agentTarget turns a Workload API address (unix:///path or unix:path) into
// a gRPC target; only unix sockets are accepted, as the agent serves no
// other transport.
func agentTarget(addr string) (string, error) {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "unix" || (u.Path == "" && u.Opaque == "") {
		return "", fmt.Errorf("agent socket %q: want unix:///path/to/agent.sock", addr)
	}
	if u.Opaque != "" {
		return "unix:" + u.Opaque, nil
	}
	return "unix://" + u.Path, nil
}

// Source is what the client needs of the workload: its current X509-SVID
// and the bundles that verify the server. go-spiffe's workloadapi.X509Source
// is one.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// Client requests credentials from one broker.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// New returns a client for the broker at base that authenticates with the
// SVIDs of src and trusts a server in the workload's own trust domain. The
// TLS config asks src at every handshake, so a rotated SVID is used on the
// next connection.
func New(base *url.URL, src Source) (*Client, error) {
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("workload X509-SVID: %w", err)
	}
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeMemberOf(svid.ID.TrustDomain()))
	cfg.MinVersion = tls.VersionTLS12
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Client{base: base, hc: &http.Client{Timeout: 30 * time.Second, Transport: tr}}, nil
}

// Host is the broker's host:port, for messages.
func (c *Client) Host() string { return c.base.Host }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Request asks for one credential.
type Request struct {
	Credential string
	// Context is the task context, sent as the JSON request_context.
	Context map[string]string
	// TTL is the lifetime asked for; zero: the credential's default_ttl.
	TTL time.Duration
	// PublicKey (authorized_keys format) is certified by ssh credentials.
	PublicKey string
}

// Result is a granted credential; its JSON is what `credential get --json`
// prints.
type Result struct {
	LeaseID    string            `json:"lease_id"`
	Credential string            `json:"credential"`
	ExpiresAt  string            `json:"expires_at"`
	Data       map[string]string `json:"data"`
}

// Expiry parses ExpiresAt; the zero time when it is unparsable.
func (r *Result) Expiry() time.Time {
	t, _ := time.Parse(time.RFC3339, r.ExpiresAt)
	return t
}

// DeniedError is the broker's refusal: an RFC 6749 §5.2 error code and its
// description (a policy denial, an unknown credential, a bad parameter).
type DeniedError struct {
	Status      int
	Code        string
	Description string
}

func (e *DeniedError) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// IsDenied reports whether err is the broker's refusal (as opposed to a
// transport failure, which may be retried).
func IsDenied(err error) bool {
	var d *DeniedError
	return errors.As(err, &d)
}

// Get requests the credential. A refusal is a *DeniedError; anything else
// is a failure to reach the broker or to read its answer.
func (c *Client) Get(ctx context.Context, r Request) (*Result, error) {
	form := url.Values{"grant_type": {tokenapi.GrantTokenExchange}, "requested_token_type": {wire.TokenTypeCredential}, "resource": {r.Credential}}
	if len(r.Context) > 0 {
		b, err := json.Marshal(r.Context)
		if err != nil {
			return nil, err
		}
		form.Set(wire.ParamContext, string(b))
	}
	if r.TTL > 0 {
		form.Set(wire.ParamTTL, r.TTL.String())
	}
	if r.PublicKey != "" {
		form.Set(wire.ParamPublicKey, r.PublicKey)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(tokenapi.Path).String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("broker %s: %w", c.base.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &oe) != nil || oe.Error == "" {
			return nil, fmt.Errorf("broker %s: HTTP %d", c.base.Host, resp.StatusCode)
		}
		return nil, &DeniedError{Status: resp.StatusCode, Code: oe.Error, Description: oe.Description}
	}
	var res Result
	if err := json.Unmarshal(body, &res); err != nil || res.LeaseID == "" {
		return nil, fmt.Errorf("broker %s: unexpected response", c.base.Host)
	}
	return &res, nil
}
