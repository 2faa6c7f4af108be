// Package exchange plugs the credential broker into the server's token
// endpoint (internal/tokenapi, POST /oauth2/token, RFC 8693):
//
//   - Issuer serves requested_token_type TokenTypeCredential: the caller,
//     authenticated by its X509-SVID over mTLS or a JWT-SVID as
//     subject_token, names one credential in resource (or audience), may
//     send its task context as the JSON object request_context and a
//     lifetime as ttl ("5m", "300s"); the response's access_token is the
//     lease id and the credential travels in the extra members lease_id,
//     credential, expires_at and data.
//   - JWTSVIDVerifier identifies callers from a JWT-SVID subject_token
//     (subject_token_type urn:ietf:params:oauth:token-type:jwt) whose
//     audience is the server's SPIFFE ID, checked against the trust
//     domain's JWT keys.
package exchange

import (
	"context"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/broker/wire"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/tokenapi"
)

// The wire names of a credential request (package wire).
const (
	TokenTypeCredential = wire.TokenTypeCredential
	ParamContext        = wire.ParamContext
	ParamTTL            = wire.ParamTTL
	ParamPublicKey      = wire.ParamPublicKey
)

// Describer tells what the server knows of a calling workload: the
// selectors of the registration entry its SVID was issued for and the node
// it runs on.
type Describer interface {
	Describe(ctx context.Context, sub *tokenapi.Subject) (Description, error)
}

// Description is what the policy sees of a caller besides its SPIFFE ID.
type Description struct {
	Selectors []model.Selector
	Node      broker.Node
	// Entry is the registration entry's id when one is known for certain.
	Entry string
	// Facts says how the description was established, for the audit
	// record: FactsSVID, FactsCommon or FactsNone.
	Facts string
}

// How a Description was established.
const (
	// FactsSVID: from the binding recorded when the presented SVID was
	// signed, naming its entry and its node.
	FactsSVID = "svid"
	// FactsCommon: the SVID has no binding (signed before bindings were
	// kept), so only what every entry with the caller's SPIFFE ID, and
	// every node those entries are parented to, have in common.
	FactsCommon = "common"
	// FactsNone: nothing is known beyond the SPIFFE ID.
	FactsNone = "none"
)

// Issuer issues brokered credentials at the token endpoint.
type Issuer struct {
	Broker    *broker.Broker
	Describer Describer
}

// Register adds the issuer to m under TokenTypeCredential.
func (i *Issuer) Register(m map[string]tokenapi.Issuer) { m[TokenTypeCredential] = i }

// Request is a parsed credential request.
type Request struct {
	Credential string
	Context    map[string]any
	TTL        time.Duration
	PublicKey  string
}

// ParseRequest reads the credential, task context and TTL of req. Errors
// are *tokenapi.Error values naming the parameter.
func ParseRequest(req *tokenapi.Request) (Request, error) {
	var out Request
	names := append(append([]string(nil), req.Resource...), req.Audience...)
	switch {
	case len(names) == 0:
		return out, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter resource is required: name the credential, e.g. resource=orders-db")
	case len(names) > 1:
		return out, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "name exactly one credential in one resource (or audience) parameter, got %d", len(names))
	}
	out.Credential = names[0]
	if raw := req.Param(ParamContext); raw != "" {
		ctx, err := policy.ParseContext([]byte(raw))
		if err != nil {
			return out, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter request_context: %v", err)
		}
		out.Context = ctx
	}
	if raw := req.Param(ParamTTL); raw != "" {
		d, err := config.ParseDuration(raw)
		if err != nil || d <= 0 {
			return out, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter ttl %q: want a positive duration such as 5m or 300s", shorten(raw))
		}
		out.TTL = d
	}
	if raw := req.Param(ParamPublicKey); raw != "" {
		if len(raw) > maxPublicKey {
			return out, tokenapi.Errorf(tokenapi.ErrInvalidRequest, "parameter public_key: longer than %d bytes", maxPublicKey)
		}
		out.PublicKey = raw
	}
	return out, nil
}

// maxPublicKey bounds public_key (an RSA-8192 key is about 1.4 KB).
const maxPublicKey = 8 << 10

func shorten(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// Issue implements tokenapi.Issuer.
func (i *Issuer) Issue(ctx context.Context, req *tokenapi.Request, sub *tokenapi.Subject) (*tokenapi.Response, error) {
	if sub.Kind != tokenapi.SubjectSPIFFE || sub.ID.IsZero() {
		return nil, tokenapi.Errorf(tokenapi.ErrUnauthorizedClient, "credentials are issued to SPIFFE workloads: present an X509-SVID over mTLS or a JWT-SVID as subject_token")
	}
	r, err := ParseRequest(req)
	if err != nil {
		return nil, err
	}
	desc, err := i.Describer.Describe(ctx, sub)
	if err != nil {
		return nil, err
	}
	g, err := i.Broker.Request(ctx, broker.Request{
		Credential: r.Credential, Subject: sub.ID, SubjectSelectors: desc.Selectors, Node: desc.Node,
		Entry: desc.Entry, Facts: desc.Facts, Context: r.Context, TTL: r.TTL, PublicKey: r.PublicKey,
	})
	if errkind.Is(err, errkind.PermissionDenied) {
		return nil, tokenapi.Errorf(tokenapi.ErrUnauthorizedClient, "policy denies credential %s to %s", r.Credential, sub.ID)
	}
	if err != nil {
		return nil, err
	}
	data := make(map[string]any, len(g.Data))
	for k, v := range g.Data {
		data[k] = v
	}
	return &tokenapi.Response{
		AccessToken: g.Lease.ID, IssuedTokenType: TokenTypeCredential, TokenType: "N_A", ExpiresAt: g.Lease.ExpiresAt,
		Extra: map[string]any{
			"lease_id": g.Lease.ID, "credential": g.Lease.Credential,
			"expires_at": g.Lease.ExpiresAt.UTC().Format(time.RFC3339), "data": data,
		},
	}, nil
}

// JWTSVIDVerifier identifies callers by a JWT-SVID subject_token.
type JWTSVIDVerifier struct {
	// Bundles holds the JWT keys of the trust domains Signet trusts.
	Bundles jwtbundle.Source
	// Audience is what the token's aud must contain: the server's SPIFFE ID.
	Audience string
}

// VerifySubject implements tokenapi.SubjectVerifier. Tokens of another
// type, or JWTs whose sub is not a SPIFFE ID (a CI provider's OIDC token),
// are ErrNotMine.
func (v *JWTSVIDVerifier) VerifySubject(_ context.Context, tokenType, token string) (*tokenapi.Subject, error) {
	if tokenType != tokenapi.TokenTypeJWT {
		return nil, tokenapi.ErrNotMine
	}
	if !spiffeSubject(token) {
		return nil, tokenapi.ErrNotMine
	}
	svid, err := jwtsvid.ParseAndValidate(token, v.Bundles, []string{v.Audience})
	if err != nil {
		return nil, tokenapi.Errorf(tokenapi.ErrInvalidGrant, "subject_token is not a valid JWT-SVID for audience %s", v.Audience)
	}
	return &tokenapi.Subject{Kind: tokenapi.SubjectSPIFFE, ID: svid.ID, ExpiresAt: svid.Expiry, Via: tokenapi.TokenTypeJWT,
		SVIDDigest: model.SVIDDigest([]byte(token))}, nil
}

// spiffeSubject reports whether token is a JWS whose unverified sub claim
// is a SPIFFE ID: a JWT-SVID for this verifier to judge.
func spiffeSubject(token string) bool {
	tok, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		return false
	}
	var c jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		return false
	}
	_, err = spiffeid.FromString(c.Subject)
	return err == nil
}

// jwtAlgorithms are the signature algorithms of JWT-SVIDs.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}
