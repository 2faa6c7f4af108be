// Package gcpiit implements the gcp_iit node attestation method: a Compute
// Engine instance proves where it runs with an instance identity token, a
// JWT that Google signs, whose audience carries a nonce of the server's.
//
// The exchange is one challenge round. The agent sends Hello; the server
// answers with an audience, "signet:<trust domain>:<base64url nonce>"; the
// agent (Attestor, which implements nodeattest.Responder) asks the metadata
// server for an identity token of that audience in the full format, and
// sends it back. The server (Verifier) checks the token's RS256 signature
// against Google's keys (a JWKS URL), its issuer https://accounts.google.com,
// that its audience is exactly the one it sent, its expiry and issue time,
// and that its project is allowed. A replayed token names an old nonce, so
// it fails; an instance can attest again whenever it needs to.
//
// The agent ID is spiffe://<td>/signet/agent/gcp_iit/<project>/<zone>/<instance-id>.
// The node's selectors (type gcp_iit) are project-id, zone, instance-name
// and sa (the service account's email, when the token carries a verified
// one).
package gcpiit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "gcp_iit"

// Hello is the agent's payload: the token comes in answer to the server's
// challenge.
const Hello = "gcp_iit/v1"

// DefaultMetadataURL is the metadata server of every Compute Engine
// instance.
const DefaultMetadataURL = "http://metadata.google.internal"

// IdentityPath is the metadata server's identity token endpoint, relative
// to the metadata URL.
const IdentityPath = "/computeMetadata/v1/instance/service-accounts/default/identity"

// DefaultJWKSURL is where Google publishes the keys that sign identity
// tokens.
const DefaultJWKSURL = "https://www.googleapis.com/oauth2/v3/certs"

// Issuer is the iss of every identity token.
const Issuer = "https://accounts.google.com"

// audiencePrefix starts every audience the server asks for; the agent
// refuses to fetch a token for any other, so that a token it sends is
// useless to anything but a Signet server.
const audiencePrefix = "signet:"

// nonceLen is the length of the base64url nonce in an audience (32 bytes).
const nonceLen = 43

// CheckAudience reports whether aud is an audience a Signet server asks
// for: "signet:<trust domain>:<43 base64url characters>".
func CheckAudience(aud string) error {
	rest, ok := strings.CutPrefix(aud, audiencePrefix)
	if !ok {
		return errors.New("challenge is not a Signet audience")
	}
	tdName, nonce, ok := strings.Cut(rest, ":")
	if !ok || len(nonce) != nonceLen || strings.Trim(nonce, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return errors.New("challenge is not a Signet audience")
	}
	if _, err := spiffeid.TrustDomainFromString(tdName); err != nil {
		return errors.New("challenge is not a Signet audience")
	}
	return nil
}

// Claims are the identity token claims the method uses, beyond those the
// JWT verification checks.
type Claims struct {
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Google        struct {
		ComputeEngine ComputeEngine `json:"compute_engine"`
	} `json:"google"`
}

// ComputeEngine is the google.compute_engine claim of a full-format token.
type ComputeEngine struct {
	ProjectID    string `json:"project_id"`
	Zone         string `json:"zone"`
	InstanceID   string `json:"instance_id"`
	InstanceName string `json:"instance_name"`
}

// ParseClaims decodes a verified token's claims and checks the instance's
// fields: a project ID, zone and instance name of the characters Google
// allows, a numeric instance ID.
func ParseClaims(b []byte) (Claims, error) {
	var c Claims
	if err := json.Unmarshal(b, &c); err != nil {
		return Claims{}, errors.New("token claims are malformed")
	}
	ce := c.Google.ComputeEngine
	var errs []error
	for _, f := range []struct{ key, val string }{
		{"project_id", ce.ProjectID}, {"zone", ce.Zone}, {"instance_name", ce.InstanceName},
	} {
		if !validName(f.val) {
			errs = append(errs, fmt.Errorf("google.compute_engine.%s is missing or not lower-case letters, digits, '-' and '.'", f.key))
		}
	}
	if ce.InstanceID == "" || len(ce.InstanceID) > 20 || strings.Trim(ce.InstanceID, "0123456789") != "" {
		errs = append(errs, errors.New("google.compute_engine.instance_id is missing or not numeric"))
	}
	if len(c.Email) > 254 || strings.ContainsFunc(c.Email, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		errs = append(errs, errors.New("email is malformed"))
	}
	if len(errs) > 0 {
		return Claims{}, fmt.Errorf("identity token: %w", errors.Join(errs...))
	}
	return c, nil
}

// validName reports whether s is 1 to 63 lower-case letters, digits, '-'
// and '.', not starting with '.' (domain-scoped project IDs hold a ':' and
// are not supported).
func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '.' {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == ""
}

// AgentID returns the agent ID of the instance ce describes:
// spiffe://<td>/signet/agent/gcp_iit/<project>/<zone>/<instance-id>.
func AgentID(td spiffeid.TrustDomain, ce ComputeEngine) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", Name, ce.ProjectID, ce.Zone, ce.InstanceID)
}

// Selectors returns the node selectors of c, sorted.
func Selectors(c Claims) []model.Selector {
	sel := func(k, v string) model.Selector { return model.Selector{Type: Name, Value: k + ":" + v} }
	ce := c.Google.ComputeEngine
	out := []model.Selector{sel("project-id", ce.ProjectID), sel("zone", ce.Zone), sel("instance-name", ce.InstanceName)}
	if c.Email != "" && c.EmailVerified {
		out = append(out, sel("sa", c.Email))
	}
	return model.SortSelectors(out)
}
