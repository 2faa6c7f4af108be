// Package sshpop implements the sshpop node attestation method: a node
// proves that it holds the private host key of an OpenSSH host certificate
// signed by a host CA the server trusts, so fleets that already certify
// their SSH host keys need no bootstrap secret.
//
// # Exchange
//
// The agent's payload is its host certificate in SSH wire format
// (ParsePayload reads it). The server checks that it is a host certificate
// (not a user one), signed by a key of cert_authorities_path, valid now,
// naming at least one principal, each allowed by the host patterns of the
// CA's line, with neither its key nor its CA marked @revoked. It then
// sends a challenge of ChallengeSize fresh random bytes; the agent signs
// Message(challenge), a domain-separated message, with its host key
// (RSA keys sign with rsa-sha2-512, never SHA-1), and answers with the SSH
// wire form of the signature (ParseResponse reads it). The server checks
// the signature with the certificate's host key. A recorded exchange is
// worthless: every attestation has a new challenge.
//
// # Identity
//
// The agent ID is deterministic, so a node that lost its SVID re-attests
// as itself (the method sets CanReattest):
//
//	spiffe://<trust domain>/signet/agent/sshpop/<hex SHA-256 of the host public key, SSH wire format>
//
// The node's selectors, of type "sshpop", are:
//
//	principal:<principal>   one per principal of the certificate
//	key_id:<key id>         the certificate's key ID, when it has one
//
// A value that would not be a valid selector (control characters, over
// 1024 bytes) is left out.
//
// Both halves live here: Attestor (agent) and Verifier (server). All SSH
// parsing and verification is golang.org/x/crypto/ssh's.
package sshpop

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"

	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type and used
// as the configuration key.
const Name = "sshpop"

// ChallengeSize is the length of the server's random challenge.
const ChallengeSize = 32

// messagePrefix separates sshpop signatures from any other use of the
// host key (SSH key exchange signs other data).
const messagePrefix = "signet sshpop challenge v1\x00"

// Message is what the agent signs for challenge: a fixed, versioned prefix
// and the challenge.
func Message(challenge []byte) []byte {
	return append([]byte(messagePrefix), challenge...)
}

// ParsePayload reads a payload: one OpenSSH certificate in SSH wire
// format, nothing after it. It never panics, whatever the input.
func ParsePayload(p []byte) (*ssh.Certificate, error) {
	if len(p) == 0 {
		return nil, errors.New("sshpop payload is empty")
	}
	pub, err := ssh.ParsePublicKey(p)
	if err != nil {
		return nil, fmt.Errorf("sshpop payload: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("sshpop payload is a bare %s key, not a certificate", pub.Type())
	}
	return cert, nil
}

// ParseResponse reads a challenge answer: an SSH signature in wire format
// (string format, string blob, and any trailing fields of security-key
// signatures). It never panics, whatever the input.
func ParseResponse(b []byte) (*ssh.Signature, error) {
	var sig ssh.Signature
	if err := ssh.Unmarshal(b, &sig); err != nil {
		return nil, fmt.Errorf("sshpop challenge response: %w", err)
	}
	if sig.Format == "" || len(sig.Blob) == 0 {
		return nil, errors.New("sshpop challenge response: empty signature")
	}
	return &sig, nil
}

// MarshalResponse is the inverse of ParseResponse.
func MarshalResponse(sig *ssh.Signature) []byte { return ssh.Marshal(sig) }

// Fingerprint is the lower-case hex SHA-256 of a public key's SSH wire
// format, the form used in agent IDs.
func Fingerprint(key ssh.PublicKey) string {
	h := sha256.Sum256(key.Marshal())
	return hex.EncodeToString(h[:])
}

// AgentID returns the agent ID of the node whose host key is key:
// spiffe://<td>/signet/agent/sshpop/<Fingerprint(key)>.
func AgentID(td spiffeid.TrustDomain, key ssh.PublicKey) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", Name, Fingerprint(key))
}

// Selectors returns the selectors of the node holding cert, sorted and
// without duplicates.
func Selectors(cert *ssh.Certificate) []model.Selector {
	var out []model.Selector
	add := func(v string) {
		s := model.Selector{Type: Name, Value: v}
		if s.Validate() == nil {
			out = append(out, s)
		}
	}
	for _, p := range cert.ValidPrincipals {
		add("principal:" + p)
	}
	if cert.KeyId != "" {
		add("key_id:" + cert.KeyId)
	}
	return model.SortSelectors(out)
}
