// Package reauth implements agent_reauth, the attestation method that lets
// an agent whose own SVID expired (the server was unreachable for longer
// than the SVID's remaining lifetime) re-establish its node without an
// operator: it proves possession of the key of the last agent SVID the
// server issued to that node.
//
// The agent half (Attestor) sends that SVID's certificate chain as its
// payload. The server half (Verifier) checks, in order, that the chain
// verifies against the trust domain's X.509 authorities at a moment just
// before the leaf's NotAfter (the check is independent of the current
// time, since the certificate is expected to have expired), that it
// expired no longer than the reauth window ago, that the node still exists
// and is not banned, and that the leaf's serial is the node's current or
// pending one. It then sends one challenge,
//
//	"signet agent_reauth v1\x00" || 32 random bytes || SHA-256(agent CSR)
//
// which the agent signs with the key of that SVID; the signature is checked
// with the leaf's public key. The CSR hash binds the proof to the key being
// certified, and the prefix keeps the signature from meaning anything in
// any other protocol. Every refusal is kinded PermissionDenied or
// InvalidArgument (the caller only learns "node attestation failed").
//
// A successful reauth is recorded as a renewal of the existing node
// (nodeattest.Result.Existing), not as a new attestation: the node keeps
// its selectors and attestation method, the SVID it proved stays its
// current one until the new SVID is first used (so a reply lost on the way
// strands nothing, and calls still in flight on the old SVID are not
// refused), and a node evicted meanwhile is refused rather than re-created.
//
// Which serials are accepted: the node's SerialNumber (the SVID it last
// used) and its NewSerialNumber (an SVID renewed but never presented, for
// example because the server went down right after the renewal). The
// previous serial a renewal replaced is not: its grace exists only for
// calls in flight, and the node has proved it holds the newer key.
//
// Authorities: the chain must verify against the X.509 authorities that
// are prepared, active or old. Tainted and revoked authorities are never
// trusted for reauth, so an operator who taints a suspected key also cuts
// off every expired SVID it signed. The CA deletes authorities once they
// expire, so the effective window is also bounded by the lifetime of the
// authority that signed the agent's last SVID.
package reauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/internal/nodeattest"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "agent_reauth"

// DefaultWindow is how long after its agent SVID expired a node may still
// re-establish itself.
const DefaultWindow = 7 * 24 * time.Hour

// challengePrefix separates agent_reauth signatures from any other use of
// an agent key.
const challengePrefix = "signet agent_reauth v1\x00"

// nonceSize is the number of random bytes in a challenge.
const nonceSize = 32

// challengeSize is the length of every challenge.
const challengeSize = len(challengePrefix) + nonceSize + sha256.Size

// maxChain bounds the certificates of a payload.
const maxChain = 8

// payload is the wire form of the evidence: the expired agent SVID's chain,
// leaf first, DER (base64 in JSON).
type payload struct {
	X5C [][]byte `json:"x5c"`
}

// ParsePayload decodes and parses an agent_reauth payload: 1 to 8 DER
// certificates, leaf first. It is strict: unknown fields, trailing data and
// unparsable certificates are errors.
func ParsePayload(b []byte) ([]*x509.Certificate, error) {
	if len(b) > nodeattest.MaxPayloadSize {
		return nil, fmt.Errorf("payload is %d bytes: at most %d", len(b), nodeattest.MaxPayloadSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p payload
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode payload: trailing data")
	}
	if len(p.X5C) == 0 || len(p.X5C) > maxChain {
		return nil, fmt.Errorf("payload holds %d certificates: want 1 to %d", len(p.X5C), maxChain)
	}
	certs := make([]*x509.Certificate, len(p.X5C))
	for i, der := range p.X5C {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("payload certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	return certs, nil
}

// challengeFor builds the challenge for nonce and the CSR being attested.
func challengeFor(nonce, csr []byte) []byte {
	h := sha256.Sum256(csr)
	out := make([]byte, 0, challengeSize)
	out = append(out, challengePrefix...)
	out = append(out, nonce...)
	return append(out, h[:]...)
}

// checkChallenge reports whether challenge is well formed and bound to csr.
func checkChallenge(challenge, csr []byte) error {
	if len(challenge) != challengeSize || !strings.HasPrefix(string(challenge), challengePrefix) {
		return errors.New("not an agent_reauth challenge")
	}
	h := sha256.Sum256(csr)
	if !bytes.Equal(challenge[len(challengePrefix)+nonceSize:], h[:]) {
		return errors.New("the challenge is bound to another certificate request")
	}
	return nil
}

// sign signs message with key: ECDSA and RSA (PSS) over its SHA-256,
// Ed25519 over the message itself.
func sign(key crypto.Signer, message []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, message, crypto.Hash(0))
	case *rsa.PublicKey:
		d := sha256.Sum256(message)
		return key.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	case *ecdsa.PublicKey:
		d := sha256.Sum256(message)
		return key.Sign(rand.Reader, d[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("unsupported key type %T", key.Public())
	}
}

// verify checks a signature made by sign.
func verify(pub crypto.PublicKey, message, sig []byte) bool {
	switch pub := pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(pub, message, sig)
	case *rsa.PublicKey:
		d := sha256.Sum256(message)
		return rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case *ecdsa.PublicKey:
		d := sha256.Sum256(message)
		return ecdsa.VerifyASN1(pub, d[:], sig)
	default:
		return false
	}
}

// Attestor is the agent half: it presents the agent's last SVID and signs
// the server's challenge with that SVID's key. Create it with New.
type Attestor struct {
	id      spiffeid.ID
	payload []byte
	key     crypto.Signer
}

var (
	_ nodeattest.Attestor  = (*Attestor)(nil)
	_ nodeattest.Responder = (*Attestor)(nil)
	_ slog.LogValuer       = (*Attestor)(nil)
	_ fmt.Stringer         = (*Attestor)(nil)
	_ fmt.GoStringer       = (*Attestor)(nil)
)

// New returns the attestor of the agent SVID chain certs (leaf first,
// expired or not) whose private key is key.
func New(certs []*x509.Certificate, key crypto.Signer) (*Attestor, error) {
	if len(certs) == 0 || len(certs) > maxChain {
		return nil, fmt.Errorf("agent_reauth attestor: want 1 to %d certificates, got %d", maxChain, len(certs))
	}
	if key == nil {
		return nil, errors.New("agent_reauth attestor: a private key is required")
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return nil, fmt.Errorf("agent_reauth attestor: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, errors.New("agent_reauth attestor: the key does not belong to the certificate")
	}
	p := payload{X5C: make([][]byte, len(certs))}
	for i, c := range certs {
		p.X5C[i] = c.Raw
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("agent_reauth attestor: %w", err)
	}
	return &Attestor{id: id, payload: b, key: key}, nil
}

// Name returns "agent_reauth".
func (a *Attestor) Name() string { return Name }

// Payload returns the certificate chain, encoded.
func (a *Attestor) Payload(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("agent_reauth payload: %w", err)
	}
	return bytes.Clone(a.payload), nil
}

// Respond signs the server's challenge after checking that it is an
// agent_reauth challenge bound to the certificate request in ctx (see
// nodeattest.WithCSR): the key signs nothing else.
func (a *Attestor) Respond(ctx context.Context, challenge []byte) ([]byte, error) {
	csr := nodeattest.CSR(ctx)
	if len(csr) == 0 {
		return nil, errors.New("agent_reauth: no certificate request in the attestation context")
	}
	if err := checkChallenge(challenge, csr); err != nil {
		return nil, fmt.Errorf("agent_reauth: refusing to sign: %w", err)
	}
	sig, err := sign(a.key, challenge)
	if err != nil {
		return nil, fmt.Errorf("agent_reauth: sign challenge: %w", err)
	}
	return sig, nil
}

// String describes the attestor by its SPIFFE ID.
func (a *Attestor) String() string { return "agent_reauth(" + a.id.String() + ")" }

// GoString describes the attestor without its key, for %#v.
func (a *Attestor) GoString() string { return "reauth.Attestor{" + a.id.String() + "}" }

// LogValue describes the attestor without its key in log/slog output.
func (a *Attestor) LogValue() slog.Value { return slog.StringValue(a.String()) }
