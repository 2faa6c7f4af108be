// Package nodeattest is the agent side of node attestation: the plugin point
// through which an agent proves which node it runs on, in exchange for its
// agent SVID.
//
// Attestation runs over the AttestAgent stream of the agent API. The agent
// sends its attestor's Name and Payload first; the server either admits the
// node or answers with challenges. Attestors whose method needs challenge
// rounds (proof of possession of a key, for example) implement the optional
// Responder capability; the agent type-asserts for it when a challenge
// arrives. The server side of each method lives in the method's own package
// (internal/nodeattest/<method>) next to its agent side, so that both halves
// of the wire format change together.
package nodeattest

import (
	"context"
	"fmt"
	"strings"
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
