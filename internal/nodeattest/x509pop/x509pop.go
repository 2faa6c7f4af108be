// Package x509pop implements the x509pop node attestation method: a node
// proves that it holds the private key of an X.509 certificate issued by a
// CA the server trusts (a fleet PKI, a hardware vendor's device CA), with no
// bootstrap secret to distribute.
//
// # Exchange
//
// The agent's payload is its certificate chain: the DER of the leaf
// followed by the DER of any intermediates, concatenated (ParsePayload
// reads it). The server checks that the leaf chains to a root of its
// ca_bundle_path, is valid now, carries the digitalSignature key usage, is
// no CA, and allows client authentication (an ExtKeyUsage of clientAuth or
// any, or none at all). It then sends a challenge of ChallengeSize fresh
// random bytes; the agent signs Message(challenge), a domain-separated
// message, with the leaf's private key (ECDSA and RSA-PSS over SHA-256,
// or Ed25519), and the server checks the signature with the leaf's public
// key. A recorded exchange is worthless: every attestation has a new
// challenge.
//
// # Identity
//
// The agent ID is deterministic, so a node that lost its SVID re-attests
// as itself (the method sets CanReattest):
//
//	spiffe://<trust domain>/signet/agent/x509pop/<hex SHA-1 of the leaf's DER>
//
// The node's selectors, of type "x509pop", are:
//
//	subject:cn:<common name>          the leaf's subject common name
//	ca:fingerprint:<hex SHA-1>        one per CA of the verified chain (intermediates and root)
//	san:dns:<name>                    one per DNS name
//	san:uri:<uri>                     one per URI
//	serialnumber:<hex>                the leaf's serial number, lower-case hex
//
// A value that would not be a valid selector (control characters, over
// 1024 bytes) is left out.
//
// Both halves live here: Attestor (agent) and Verifier (server). The
// server half reads only its CA bundle; it imports neither the store nor
// the CA.
package x509pop

import (
	"crypto/sha1" //nolint:gosec // a fingerprint naming a certificate, not a security boundary
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type and used
// as the configuration key.
const Name = "x509pop"

// ChallengeSize is the length of the server's random challenge.
const ChallengeSize = 32

// MaxChain bounds the certificates of a payload: the leaf and up to seven
// intermediates.
const MaxChain = 8

// messagePrefix separates x509pop signatures from any other use of the
// node's key.
const messagePrefix = "signet x509pop challenge v1\x00"

// Message is what the agent signs for challenge: a fixed, versioned prefix
// and the challenge, so the signature is useless for anything else.
func Message(challenge []byte) []byte {
	return append([]byte(messagePrefix), challenge...)
}

// ParsePayload reads a payload: 1 to MaxChain DER certificates,
// concatenated, the leaf first. It never panics, whatever the input.
func ParsePayload(p []byte) ([]*x509.Certificate, error) {
	if len(p) == 0 {
		return nil, errors.New("x509pop payload is empty")
	}
	certs, err := x509.ParseCertificates(p)
	if err != nil {
		return nil, fmt.Errorf("x509pop payload: %w", err)
	}
	switch {
	case len(certs) == 0:
		return nil, errors.New("x509pop payload holds no certificate")
	case len(certs) > MaxChain:
		return nil, fmt.Errorf("x509pop payload holds %d certificates, at most %d", len(certs), MaxChain)
	}
	return certs, nil
}

// MarshalPayload is the inverse of ParsePayload: the chain's DER,
// concatenated.
func MarshalPayload(chain []*x509.Certificate) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, c.Raw...)
	}
	return out
}

// Fingerprint is the lower-case hex SHA-1 of a certificate's DER, the form
// used in agent IDs and ca:fingerprint selectors.
func Fingerprint(c *x509.Certificate) string {
	h := sha1.Sum(c.Raw) //nolint:gosec // see the import
	return hex.EncodeToString(h[:])
}

// AgentID returns the agent ID of the node holding leaf:
// spiffe://<td>/signet/agent/x509pop/<Fingerprint(leaf)>.
func AgentID(td spiffeid.TrustDomain, leaf *x509.Certificate) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", Name, Fingerprint(leaf))
}

// Selectors returns the selectors of the node holding leaf, verified
// through chain (leaf first, root last), sorted and without duplicates.
func Selectors(leaf *x509.Certificate, chains [][]*x509.Certificate) []model.Selector {
	var out []model.Selector
	add := func(v string) {
		s := model.Selector{Type: Name, Value: v}
		if s.Validate() == nil {
			out = append(out, s)
		}
	}
	if leaf.Subject.CommonName != "" {
		add("subject:cn:" + leaf.Subject.CommonName)
	}
	for _, chain := range chains {
		for _, ca := range chain[1:] {
			add("ca:fingerprint:" + Fingerprint(ca))
		}
	}
	for _, n := range leaf.DNSNames {
		add("san:dns:" + n)
	}
	for _, u := range leaf.URIs {
		add("san:uri:" + u.String())
	}
	if leaf.SerialNumber != nil {
		add("serialnumber:" + leaf.SerialNumber.Text(16))
	}
	return model.SortSelectors(out)
}
