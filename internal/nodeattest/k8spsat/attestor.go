package k8spsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/signet-id/signet/internal/nodeattest"
)

// AgentConfig is the agent half's configuration, the value of
// node_attestor.k8s_psat in the agent's file:
//
//	k8s_psat: {cluster: prod-eu, token_path: /var/run/secrets/tokens/signet-agent}
type AgentConfig struct {
	// Cluster names the agent's cluster as the server's
	// node_attestors.k8s_psat.clusters knows it. Required.
	Cluster string `yaml:"cluster"`
	// TokenPath is the file of the projected service account token
	// (default DefaultTokenPath). The kubelet rotates it; the agent reads
	// it at every attestation.
	TokenPath string `yaml:"token_path"`
}

// Validate reports a missing or malformed cluster name.
func (c AgentConfig) Validate() error {
	if c.Cluster == "" {
		return errors.New("cluster: required: the name the server's node_attestors.k8s_psat.clusters gives this cluster")
	}
	if err := CheckClusterName(c.Cluster); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// Attestor is the agent half of k8s_psat. Create it with New; it is safe for
// concurrent use.
type Attestor struct {
	cluster string
	path    string
}

var (
	_ nodeattest.Attestor = (*Attestor)(nil)
	_ slog.LogValuer      = (*Attestor)(nil)
	_ fmt.Stringer        = (*Attestor)(nil)
	_ fmt.GoStringer      = (*Attestor)(nil)
)

// New returns the attestor cfg describes. The token file is read by
// Payload, not here: the kubelet may not have written it yet.
func New(cfg AgentConfig) (*Attestor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("k8s_psat attestor: %w", err)
	}
	path := cfg.TokenPath
	if path == "" {
		path = DefaultTokenPath
	}
	return &Attestor{cluster: cfg.Cluster, path: path}, nil
}

// Name returns "k8s_psat".
func (a *Attestor) Name() string { return Name }

// CanReattest reports true: a projected token is not single-use, so an
// agent whose SVID expired attests again with a fresh one.
func (a *Attestor) CanReattest() bool { return true }

// Payload reads the current token and returns it with the cluster name.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("k8s_psat payload: %w", err)
	}
	tok, err := readToken(a.path)
	if err != nil {
		return nil, fmt.Errorf("k8s_psat: %w", err)
	}
	return json.Marshal(Payload{Cluster: a.cluster, Token: tok})
}

// readToken reads a token file of at most MaxTokenSize bytes.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token_path: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTokenSize+1))
	if err != nil {
		return "", fmt.Errorf("token_path: read %s: %w", path, err)
	}
	if len(b) > MaxTokenSize {
		return "", fmt.Errorf("token_path: %s is over %d bytes: not a service account token", path, MaxTokenSize)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token_path: %s is empty", path)
	}
	return tok, nil
}

// String describes the attestor by its cluster and token path.
func (a *Attestor) String() string { return "k8s_psat(" + a.cluster + ", " + a.path + ")" }

// GoString describes the attestor for %#v.
func (a *Attestor) GoString() string { return "k8spsat.Attestor{" + a.cluster + ", " + a.path + "}" }

// LogValue describes the attestor in log/slog output.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }
