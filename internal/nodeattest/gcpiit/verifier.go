package gcpiit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/nodeattest"
)

// Config is the server half's configuration, the value of
// node_attestors.gcp_iit:
//
//	gcp_iit:
//	  projects: [my-project]
//	  jwks_url: https://www.googleapis.com/oauth2/v3/certs   # the default
//
// Projects is required: any Compute Engine instance anywhere can get a
// Google-signed token, so the projects admitted must be named.
type Config struct {
	// Projects are the project IDs whose instances are admitted.
	Projects []string `yaml:"projects"`
	// JWKSURL is where Google's signing keys are published (default
	// DefaultJWKSURL). It must be https, or http on a loopback address
	// (tests).
	JWKSURL string `yaml:"jwks_url"`
}

// Validate reports a missing or malformed project list and a bad jwks_url.
func (c Config) Validate() error {
	var errs []error
	if len(c.Projects) == 0 {
		errs = append(errs, errors.New("projects: required: the IDs of the projects whose instances may attest"))
	}
	for i, p := range c.Projects {
		if !validName(p) {
			errs = append(errs, fmt.Errorf("projects[%d]: %q is not a project ID (lower-case letters, digits and '-')", i, p))
		}
	}
	if c.JWKSURL != "" {
		if err := nodeattest.CheckKeysURL(c.JWKSURL); err != nil {
			errs = append(errs, fmt.Errorf("jwks_url: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Verifier is the server half of gcp_iit. Create it with NewVerifier; it
// is safe for concurrent use.
type Verifier struct {
	td       spiffeid.TrustDomain
	projects []string
	keys     oidc.KeySet
	now      func() time.Time
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// keysTimeout bounds one fetch of the key set.
const keysTimeout = 10 * time.Second

// NewVerifier returns the verifier of cfg for trust domain td; now is the
// clock (nil: time.Now). Keys are fetched when a token names one not yet
// seen, and cached.
func NewVerifier(td spiffeid.TrustDomain, cfg Config, now func() time.Time) (*Verifier, error) {
	if td.IsZero() {
		return nil, errors.New("gcp_iit verifier: a trust domain is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	jwks := cfg.JWKSURL
	if jwks == "" {
		jwks = DefaultJWKSURL
	}
	ctx := oidc.ClientContext(context.Background(), &http.Client{Timeout: keysTimeout})
	return &Verifier{td: td, projects: slices.Clone(cfg.Projects), keys: oidc.NewRemoteKeySet(ctx, jwks), now: now}, nil
}

// Name returns "gcp_iit".
func (v *Verifier) Name() string { return Name }

// maxIssuedAhead is how far in the future a token's iat may be (clock
// skew).
const maxIssuedAhead = time.Minute

// Attest sends the agent a fresh audience and checks the identity token it
// answers with. Refusals say which check failed, never the token.
func (v *Verifier) Attest(ctx context.Context, payload []byte, c nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, err
	}
	if !bytes.Equal(payload, []byte(Hello)) {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "gcp_iit: payload is not %q", Hello)
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nodeattest.Result{}, fmt.Errorf("gcp_iit: nonce: %w", err)
	}
	aud := audiencePrefix + v.td.Name() + ":" + base64.RawURLEncoding.EncodeToString(nonce[:])
	answer, err := c.Challenge(ctx, []byte(aud))
	if err != nil {
		return nodeattest.Result{}, fmt.Errorf("gcp_iit: challenge: %w", err)
	}
	tok, err := oidc.NewVerifier(Issuer, v.keys, &oidc.Config{
		ClientID: aud, SupportedSigningAlgs: []string{oidc.RS256}, Now: v.now,
	}).Verify(ctx, string(answer))
	if err != nil {
		if ctx.Err() != nil {
			return nodeattest.Result{}, ctx.Err()
		}
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "gcp_iit: identity token refused: %v", err)
	}
	if len(tok.Audience) != 1 {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "gcp_iit: identity token has %d audiences, want 1", len(tok.Audience))
	}
	if tok.IssuedAt.IsZero() || tok.IssuedAt.After(v.now().Add(maxIssuedAhead)) {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "gcp_iit: identity token has no iat, or one in the future")
	}
	var raw json.RawMessage
	if err := tok.Claims(&raw); err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "gcp_iit: identity token claims are malformed")
	}
	claims, err := ParseClaims(raw)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "gcp_iit: %v", err)
	}
	ce := claims.Google.ComputeEngine
	if !slices.Contains(v.projects, ce.ProjectID) {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "gcp_iit: project %s is not allowed", ce.ProjectID)
	}
	id, err := AgentID(v.td, ce)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "gcp_iit: %v", err)
	}
	return nodeattest.Result{AgentID: id, Selectors: Selectors(claims), CanReattest: true}, nil
}
