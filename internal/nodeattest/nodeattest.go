// Package nodeattest is the plugin point of node attestation: how an agent
// proves which node it runs on, in exchange for its agent SVID.
//
// Attestation runs over the AttestAgent stream of the agent API. The agent
// sends its Attestor's Name and Payload first; the server hands them to the
// Verifier of that name, which either admits the node at once or drives
// challenge rounds through a Challenger (proof of possession of a key, for
// example). Agent-side attestors whose method needs challenges implement the
// optional Responder capability.
//
// Both halves of each method live in the method's own package
// (internal/nodeattest/<method>), so that the wire format changes in one
// place. Server halves must not import the store or the CA: they declare the
// narrow interfaces they need, and the agent binary links the package too.
package nodeattest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// Attestor produces a node's attestation evidence. Implementations must be
// safe for concurrent use and must never log their evidence: it is a
// credential.
type Attestor interface {
	// Name is the attestation method, stable and used as a config key and
	// as AttestParams.attestation_type ("join_token", "x509pop", …).
	Name() string
	// Payload returns the evidence sent with the attestation parameters. It
	// may block on I/O (reading a cloud metadata service, say); ctx bounds
	// it.
	Payload(ctx context.Context) ([]byte, error)
}

// Responder is the optional capability of attestors whose method answers
// server challenges. An attestor without it fails attestation when the
// server sends a challenge.
type Responder interface {
	// Respond answers one challenge. It is called once per challenge, in
	// order, on the goroutine that runs attestation.
	Respond(ctx context.Context, challenge []byte) ([]byte, error)
}

// ValidName reports whether name is usable as an attestation method name:
// 1 to 64 lower-case letters, digits and '_'.
func ValidName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("node attestor name %q: want 1 to 64 characters", name)
	}
	if strings.TrimLeft(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return fmt.Errorf("node attestor name %q: use lower-case letters, digits and '_'", name)
	}
	return nil
}

// Verifier is the server half of an attestation method. Implementations
// must be safe for concurrent use and must never log evidence.
type Verifier interface {
	// Name is the method name, the same as its Attestor's.
	Name() string
	// Attest checks the evidence an agent sent and returns the node it
	// proves. Methods that need challenge rounds run them through c, which
	// is never nil. A refusal is an error kinded PermissionDenied or
	// InvalidArgument: the caller only ever learns "node attestation
	// failed", and the server logs the error, so its text must not hold
	// secrets. Any other error (the store is down) is reported as such.
	//
	// Attest is called only after the agent's CSR has been parsed and
	// checked, so single-use evidence (a join token) is never spent on a
	// request that cannot succeed.
	Attest(ctx context.Context, payload []byte, c Challenger) (Result, error)
}

// Challenger sends one challenge to the attesting agent and returns its
// answer. The server bounds the rounds, and each answer's size.
type Challenger interface {
	Challenge(ctx context.Context, challenge []byte) ([]byte, error)
}

// Result is what a verifier proved about a node.
type Result struct {
	// AgentID is the agent's SPIFFE ID, in the server's trust domain.
	AgentID spiffeid.ID
	// Selectors describe the node (cloud account, certificate subject, …);
	// they are stored with it and decide which node aliases it belongs to.
	Selectors []model.Selector
	// CanReattest is true when the method can attest the same node again
	// without an operator (the evidence is not single-use), so an agent that
	// lost its SVID can come back on its own.
	CanReattest bool
	// FirstUseOnly is true for trust-on-first-use methods (evidence without
	// a nonce, such as a cloud's signed instance document): the server
	// admits the identity only if no node has it, atomically with recording
	// it, so two concurrent first attestations cannot both succeed.
	FirstUseOnly bool
	// Existing is true when the method re-established a node that is
	// already attested (agent_reauth) rather than attesting one: the server
	// then records the new SVID as a renewal of that node. Its selectors and
	// attestation method stay as they are, the SVID the agent held stays
	// valid until the new one is first used (so a lost reply strands
	// nothing), and a node that no longer exists is refused, never created.
	Existing bool
}

type csrKey struct{}

// WithCSR returns ctx carrying the DER certificate request of the agent SVID
// being attested for. Both sides of the attestation exchange set it (the
// agent around Payload and Respond, the server around Verifier.Attest), so
// that a method's proof can be bound to the key it is getting certified.
func WithCSR(ctx context.Context, csr []byte) context.Context {
	return context.WithValue(ctx, csrKey{}, csr)
}

// CSR returns the certificate request WithCSR put in ctx, or nil.
func CSR(ctx context.Context) []byte {
	csr, _ := ctx.Value(csrKey{}).([]byte)
	return csr
}

// MaxChallengeRounds bounds the challenge rounds of one attestation.
const MaxChallengeRounds = 16

// MaxPayloadSize bounds attestation payloads and challenge answers.
const MaxPayloadSize = 64 << 10

// CheckKeysURL reports whether s is usable as the URL of a key set that
// verifies attestation evidence (a cloud's JWKS): https, or http only to a
// loopback address (tests, a local proxy).
func CheckKeysURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q: want an https URL (http only to a loopback address)", s)
}

// CheckMetadataURL reports whether s is usable as the base URL of a
// metadata service an agent reads its evidence from: http or https, with a
// host, and no query or fragment. example is the real service's URL, shown
// in the error.
func CheckMetadataURL(s, example string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want an http or https base URL without a query or fragment, such as %s", s, example)
	}
	return nil
}
