package azuremsi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
)

// Config is the server half's configuration, the value of
// node_attestors.azure_msi:
//
//	azure_msi:
//	  tenants: ["72f988bf-86f1-41af-91ab-2d7cd011db47"]
//	  resource: https://management.azure.com/          # the default
//	  jwks_urls:                                       # optional, per tenant
//	    72f988bf-86f1-41af-91ab-2d7cd011db47: https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys
//
// Tenants is required. Each tenant's keys are fetched from its JWKS URL
// (by default DefaultJWKSURL) and its tokens must be issued by
// Issuer(tenant).
type Config struct {
	// Tenants are the tenant IDs (lower-case GUIDs) whose VMs are admitted.
	Tenants []string `yaml:"tenants"`
	// Resource is the audience tokens must carry (default DefaultResource).
	Resource string `yaml:"resource"`
	// JWKSURLs overrides the key set URL of some tenants. It must be
	// https, or http on a loopback address (tests).
	JWKSURLs map[string]string `yaml:"jwks_urls"`
}

// Validate reports missing or malformed tenants and bad key set URLs.
func (c Config) Validate() error {
	var errs []error
	if len(c.Tenants) == 0 {
		errs = append(errs, errors.New("tenants: required: the IDs of the tenants whose VMs may attest"))
	}
	for i, t := range c.Tenants {
		if !ValidGUID(t) {
			errs = append(errs, fmt.Errorf("tenants[%d]: %q is not a tenant ID (a lower-case GUID)", i, t))
		}
	}
	for _, t := range sortedKeys(c.JWKSURLs) {
		if !slices.Contains(c.Tenants, t) {
			errs = append(errs, fmt.Errorf("jwks_urls.%s: not one of tenants", t))
		}
		if err := nodeattest.CheckKeysURL(c.JWKSURLs[t]); err != nil {
			errs = append(errs, fmt.Errorf("jwks_urls.%s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// NodeLookup finds an attested node by SPIFFE ID; an unknown one is an
// error kinded NotFound. The server's store implements it.
type NodeLookup interface {
	GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error)
}

// Verifier is the server half of azure_msi. Create it with NewVerifier; it
// is safe for concurrent use.
type Verifier struct {
	td      spiffeid.TrustDomain
	tenants map[string]*oidc.IDTokenVerifier
	nodes   NodeLookup
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// NewVerifier returns the verifier of cfg for trust domain td; nodes is
// where it looks up whether a VM already attested, now the clock (nil:
// time.Now).
func NewVerifier(td spiffeid.TrustDomain, cfg Config, nodes NodeLookup, now func() time.Time) (*Verifier, error) {
	if td.IsZero() || nodes == nil {
		return nil, errors.New("azure_msi verifier: a trust domain and a node lookup are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	res := cfg.Resource
	if res == "" {
		res = DefaultResource
	}
	ctx := oidc.ClientContext(context.Background(), &http.Client{Timeout: 10 * time.Second})
	v := &Verifier{td: td, tenants: map[string]*oidc.IDTokenVerifier{}, nodes: nodes}
	for _, t := range cfg.Tenants {
		u := cfg.JWKSURLs[t]
		if u == "" {
			u = DefaultJWKSURL(t)
		}
		v.tenants[t] = oidc.NewVerifier(Issuer(t), oidc.NewRemoteKeySet(ctx, u),
			&oidc.Config{ClientID: res, SupportedSigningAlgs: []string{oidc.RS256}, Now: now})
	}
	return v, nil
}

// Name returns "azure_msi".
func (v *Verifier) Name() string { return Name }

// Attest admits the VM whose managed identity token payload is, once: a VM
// whose node exists is refused until it is evicted. Refusals say which
// check failed, never the token.
func (v *Verifier) Attest(ctx context.Context, payload []byte, _ nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, err
	}
	// The tenant picks the keys and issuer to check the token with, so it
	// is read before the signature is checked, and only used for that.
	tok, err := jwt.ParseSigned(string(payload), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "azure_msi: payload is not an RS256 JWT")
	}
	var unverified struct {
		TenantID string `json:"tid"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || !ValidGUID(unverified.TenantID) {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "azure_msi: token has no tenant ID")
	}
	tv, ok := v.tenants[unverified.TenantID]
	if !ok {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "azure_msi: tenant %s is not allowed", unverified.TenantID)
	}
	idt, err := tv.Verify(ctx, string(payload))
	if err != nil {
		if ctx.Err() != nil {
			return nodeattest.Result{}, ctx.Err()
		}
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "azure_msi: token refused: %v", err)
	}
	if len(idt.Audience) != 1 {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "azure_msi: token has %d audiences, want 1", len(idt.Audience))
	}
	var raw json.RawMessage
	if err := idt.Claims(&raw); err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "azure_msi: token claims are malformed")
	}
	claims, vm, err := ParseClaims(raw)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "azure_msi: %v", err)
	}
	if claims.TenantID != unverified.TenantID {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "azure_msi: token tenant changed under verification")
	}
	id, err := AgentID(v.td, claims)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "azure_msi: %v", err)
	}
	switch _, err := v.nodes.GetNode(ctx, id); {
	case err == nil:
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied,
			"azure_msi: %s already attested (trust on first use): evict the node to let it attest again", id)
	case !errkind.Is(err, errkind.NotFound):
		return nodeattest.Result{}, fmt.Errorf("azure_msi: look up node %s: %w", id, err)
	}
	return nodeattest.Result{AgentID: id, Selectors: Selectors(claims, vm), FirstUseOnly: true}, nil
}
