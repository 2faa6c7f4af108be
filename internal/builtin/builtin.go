// Package builtin is the one place that lists every built-in plugin of
// Signet, per kind. Adding an attestor, a provider or a key manager is its
// own package plus one line here. Each registry is built fresh by its
// function, so callers (the CLI, tests) share no mutable state; a duplicate
// name is an error at start-up, and configuring an unknown name fails with
// the names that exist.
//
// Every package listed here is safe on a node: server halves of attestation
// methods declare the narrow interfaces they need instead of importing the
// store or the CA (internal/deptest checks it).
package builtin

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
	"github.com/signet-id/signet/internal/plugin"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// Configuration keys of the plugin sections.
const (
	NodeAttestorsKey     = "node_attestors"     // server: the methods it accepts
	NodeAttestorKey      = "node_attestor"      // agent: the one method it uses
	WorkloadAttestorsKey = "workload_attestors" // agent: besides unix, always on
)

// DefaultNodeVerifiers are the node attestation methods a server accepts
// unless its configuration switches them off: join tokens, and agent_reauth
// (which takes no settings and is bounded by VerifierDeps.ReauthWindow).
var DefaultNodeVerifiers = []string{jointoken.Name, reauth.Name}

// VerifierDeps is what server halves of node attestation may use.
type VerifierDeps struct {
	TrustDomain spiffeid.TrustDomain
	// JoinTokens is the server's store of join tokens.
	JoinTokens jointoken.TokenStore
	// Nodes looks attested nodes up (agent_reauth).
	Nodes reauth.Nodes
	// Authorities lists the trust domain's authorities (agent_reauth).
	Authorities reauth.Authorities
	// ReauthWindow is how long after its agent SVID expired a node may
	// re-establish itself (agent_reauth; zero: reauth.DefaultWindow;
	// negative: agent_reauth is off).
	ReauthWindow time.Duration
	Now          func() time.Time
	Log          *slog.Logger
}

// NodeVerifiers returns the registry of server halves of node attestation.
func NodeVerifiers() (*plugin.Registry[nodeattest.Verifier, VerifierDeps], error) {
	return plugin.New("node attestor", NodeAttestorsKey,
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: jointoken.Name, New: newJoinTokenVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: reauth.Name, New: newReauthVerifier},
	)
}

// AttestorDeps is what agent halves of node attestation may use.
type AttestorDeps struct {
	Log *slog.Logger
}

// NodeAttestors returns the registry of agent halves of node attestation.
func NodeAttestors() (*plugin.Registry[nodeattest.Attestor, AttestorDeps], error) {
	return plugin.New("node attestor", NodeAttestorKey,
		plugin.Factory[nodeattest.Attestor, AttestorDeps]{Name: jointoken.Name, New: newJoinTokenAttestor},
	)
}

// WorkloadDeps is what workload attestors may use.
type WorkloadDeps struct {
	Log *slog.Logger
}

// WorkloadAttestors returns the registry of workload attestors.
func WorkloadAttestors() (*plugin.Registry[workloadattest.Attestor, WorkloadDeps], error) {
	return plugin.New("workload attestor", WorkloadAttestorsKey,
		plugin.Factory[workloadattest.Attestor, WorkloadDeps]{Name: "unix", New: newUnixAttestor},
	)
}

func newJoinTokenVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg jointoken.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if !cfg.On() {
		return nil, plugin.ErrDisabled
	}
	return jointoken.NewVerifier(d.TrustDomain, d.JoinTokens, d.Now)
}

func newReauthVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg reauth.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if d.ReauthWindow < 0 {
		return nil, plugin.ErrDisabled
	}
	return reauth.NewVerifier(reauth.VerifierConfig{
		TrustDomain: d.TrustDomain, Nodes: d.Nodes, Authorities: d.Authorities, Window: d.ReauthWindow, Now: d.Now,
	})
}

func newJoinTokenAttestor(_ AttestorDeps, decode plugin.Decoder) (nodeattest.Attestor, error) {
	var cfg jointoken.AgentConfig
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	tok := cfg.Token
	if cfg.TokenFile != "" {
		var err error
		if tok, err = jointoken.ReadTokenFile(cfg.TokenFile); err != nil {
			return nil, fmt.Errorf("token_file: %w", err)
		}
	}
	return jointoken.New(tok)
}

func newUnixAttestor(d WorkloadDeps, decode plugin.Decoder) (workloadattest.Attestor, error) {
	cfg := unix.DefaultConfig()
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("the unix workload attestor needs Linux (SO_PEERCRED and pidfds), not %s", runtime.GOOS)
	}
	return unix.New(cfg, d.Log)
}
