package reauth

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
)

// Nodes looks attested nodes up; an unknown (evicted) node is an error
// kinded NotFound. The server's store implements it.
type Nodes interface {
	GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error)
}

// Authorities lists the trust domain's authorities, of every kind and
// state. The server's store implements it.
type Authorities interface {
	ListAuthorities(ctx context.Context) ([]model.Authority, error)
}

// Config is the server half's configuration, the value of
// node_attestors.agent_reauth. It has no settings: the method is always on,
// bounded by the server's agent_reauth_window.
type Config struct{}

// VerifierConfig holds the server half's dependencies. TrustDomain, Nodes
// and Authorities are required.
type VerifierConfig struct {
	TrustDomain spiffeid.TrustDomain
	Nodes       Nodes
	Authorities Authorities
	// Window is how long after its expiry an agent SVID is still accepted
	// (default DefaultWindow).
	Window time.Duration
	Now    func() time.Time // default time.Now
	Rand   io.Reader        // challenge randomness, default crypto/rand
}

// Verifier is the server half of agent_reauth. Create it with NewVerifier.
type Verifier struct {
	cfg VerifierConfig
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// NewVerifier validates cfg and returns the verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.TrustDomain.IsZero() || cfg.Nodes == nil || cfg.Authorities == nil {
		return nil, errors.New("agent_reauth verifier: a trust domain, a node store and an authority store are required")
	}
	if cfg.Window < 0 {
		return nil, fmt.Errorf("agent_reauth verifier: window %s is negative", cfg.Window)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Verifier{cfg: cfg}, nil
}

// Name returns "agent_reauth".
func (v *Verifier) Name() string { return Name }

func denied(format string, args ...any) error {
	return errkind.New(errkind.PermissionDenied, "agent_reauth: "+format, args...)
}

// Attest checks the expired agent SVID in payload and the proof of its key
// (see the package documentation). The result re-establishes an existing
// node (Result.Existing): the server records the new SVID as a renewal.
func (v *Verifier) Attest(ctx context.Context, b []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	certs, err := ParsePayload(b)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "agent_reauth: %v", err)
	}
	leaf := certs[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nodeattest.Result{}, denied("leaf is not an X509-SVID: %v", err)
	}
	if !id.MemberOf(v.cfg.TrustDomain) {
		return nodeattest.Result{}, denied("%s is outside trust domain %s", id, v.cfg.TrustDomain.Name())
	}
	now := v.cfg.Now()
	if late := now.Sub(leaf.NotAfter); late > v.cfg.Window {
		return nodeattest.Result{}, denied("the svid of %s expired at %s, %s ago: over the %s agent_reauth_window",
			id, leaf.NotAfter.UTC().Format(time.RFC3339), late.Round(time.Second), v.cfg.Window)
	}
	roots, err := v.roots(ctx)
	if err != nil {
		return nodeattest.Result{}, err
	}
	// Verify as of just before expiry: the certificate is expected to have
	// expired, and so may its issuer (which stays listed until deleted).
	at := leaf.NotAfter.Add(-time.Second)
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	if _, _, err := x509svid.Verify(certs, roots, x509svid.WithTime(at)); err != nil {
		return nodeattest.Result{}, denied("the svid of %s does not verify against the trusted authorities: %v", id, err)
	}
	node, err := v.cfg.Nodes.GetNode(ctx, id)
	if errkind.Is(err, errkind.NotFound) {
		return nodeattest.Result{}, denied("node %s is unknown (evicted?)", id)
	}
	if err != nil {
		return nodeattest.Result{}, fmt.Errorf("agent_reauth: look node %s up: %w", id, err)
	}
	if node.Banned {
		return nodeattest.Result{}, denied("node %s is banned", id)
	}
	serial := strings.ToLower(leaf.SerialNumber.Text(16))
	if serial != node.SerialNumber && (node.NewSerialNumber == "" || serial != node.NewSerialNumber) {
		return nodeattest.Result{}, denied("the svid presented for %s (serial %s) is not the node's last one", id, serial)
	}
	csr := nodeattest.CSR(ctx)
	if len(csr) == 0 {
		return nodeattest.Result{}, errkind.New(errkind.Internal, "agent_reauth: the attestation context carries no certificate request")
	}
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(v.cfg.Rand, nonce); err != nil {
		return nodeattest.Result{}, fmt.Errorf("agent_reauth: challenge randomness: %w", err)
	}
	challenge := challengeFor(nonce, csr)
	sig, err := c.Challenge(ctx, challenge)
	if err != nil {
		return nodeattest.Result{}, err
	}
	if !verify(leaf.PublicKey, challenge, sig) {
		return nodeattest.Result{}, denied("the proof of possession of the key of %s's svid does not verify", id)
	}
	return nodeattest.Result{AgentID: id, Selectors: node.Selectors, Existing: true}, nil
}

// roots returns the X.509 authorities trusted for reauth: prepared, active
// and old ones, never tainted or revoked.
func (v *Verifier) roots(ctx context.Context) (*x509bundle.Bundle, error) {
	auths, err := v.cfg.Authorities.ListAuthorities(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent_reauth: list authorities: %w", err)
	}
	b := x509bundle.New(v.cfg.TrustDomain)
	for _, a := range auths {
		if a.Kind != model.AuthorityX509 {
			continue
		}
		switch a.State {
		case model.StatePrepared, model.StateActive, model.StateOld:
		default:
			continue
		}
		cert, err := x509.ParseCertificate(a.Certificate)
		if err != nil {
			return nil, fmt.Errorf("agent_reauth: x509 authority %s: %w", a.ID, err)
		}
		b.AddX509Authority(cert)
	}
	return b, nil
}
