// Package awsiid implements the aws_iid node attestation method: an EC2
// instance proves where it runs with its instance identity document, which
// AWS signs.
//
// The agent half (Attestor) reads the document and its PKCS#7 signature from
// the instance metadata service with an IMDSv2 session (a PUT for a session
// token, then two GETs). The signature it reads is the `rsa2048` one: the
// same PKCS#7 SignedData, base64 DER without PEM headers, as the `pkcs7`
// endpoint returns, but signed with RSA-2048 and SHA-256; the `pkcs7`
// endpoint's DSA signature cannot be checked with Go's crypto (DSA
// verification left crypto/x509 in Go 1.16).
//
// The server half (Verifier) checks the signature against the AWS public
// certificates in its configuration, the account against an optional
// allow-list, and admits the instance once: the document carries no nonce
// and never changes, so it is trust-on-first-use. An instance that attested
// is refused until an operator evicts its node.
//
// The agent ID is spiffe://<td>/signet/agent/aws_iid/<account>/<region>/<instance-id>.
// The node's selectors (type aws_iid) are account, region, az,
// instance_type and image_id. The instance's IAM role is not among them: it
// is not in the signed document, and nothing the agent could add about it
// would be signed.
package awsiid

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/smallstep/pkcs7"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// Name is the attestation method name, sent as attestation_type.
const Name = "aws_iid"

// DefaultMetadataURL is the instance metadata service of every EC2
// instance.
const DefaultMetadataURL = "http://169.254.169.254"

// Paths of the instance metadata service the agent reads, relative to the
// metadata URL.
const (
	TokenPath     = "/latest/api/token"
	DocumentPath  = "/latest/dynamic/instance-identity/document"
	SignaturePath = "/latest/dynamic/instance-identity/rsa2048"
)

// IMDSv2 session headers.
const (
	TokenHeader    = "X-aws-ec2-metadata-token"
	TokenTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"
)

// Payload is the evidence the agent sends, encoded as JSON: the instance
// identity document and its PKCS#7 signature exactly as the metadata service
// returned them.
type Payload struct {
	// Document is the instance identity document (JSON).
	Document string `json:"document"`
	// PKCS7 is the base64 DER PKCS#7 SignedData over the document, as the
	// rsa2048 (or pkcs7) endpoint returns it: no PEM headers, line breaks
	// allowed.
	PKCS7 string `json:"pkcs7"`
}

// ParsePayload decodes an agent's payload strictly: one JSON object with
// exactly the two fields, both non-empty, nothing after it. It returns the
// document and the DER signature.
func ParsePayload(b []byte) (doc, sig []byte, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Payload
	if err := dec.Decode(&p); err != nil {
		return nil, nil, fmt.Errorf("payload is not the aws_iid JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("payload has data after its JSON object")
	}
	if p.Document == "" || p.PKCS7 == "" {
		return nil, nil, errors.New("payload lacks the document or its signature")
	}
	sig, err = base64.StdEncoding.Strict().DecodeString(strings.NewReplacer("\n", "", "\r", "").Replace(p.PKCS7))
	if err != nil {
		return nil, nil, errors.New("payload signature is not base64")
	}
	return []byte(p.Document), sig, nil
}

// VerifySignature checks that sig, a PKCS#7 SignedData, signs doc with the
// key of one of certs, and returns the signed content. Certificates
// embedded in sig must be among certs: only certs are trusted. The signed content
// must be doc when sig embeds it (as AWS's signatures do); a detached
// signature is checked over doc.
func VerifySignature(doc, sig []byte, certs []*x509.Certificate) (signed []byte, err error) {
	defer func() {
		// The BER parser is third-party code reading untrusted bytes:
		// whatever it does, a bad signature is only ever a refusal.
		if r := recover(); r != nil {
			signed, err = nil, errors.New("signature is malformed")
		}
	}()
	if err := checkBER(sig); err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return nil, errors.New("signature is not a PKCS#7 SignedData")
	}
	switch {
	case len(p7.Content) == 0:
		p7.Content = doc
	case !bytes.Equal(p7.Content, doc):
		return nil, errors.New("signed content is not the document")
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("signature has %d signers, want 1", len(p7.Signers))
	}
	if alg := p7.Signers[0].DigestAlgorithm.Algorithm; !slices.ContainsFunc(digests, alg.Equal) {
		return nil, fmt.Errorf("signature digest %v is not SHA-256, SHA-384 or SHA-512", alg)
	}
	for _, c := range p7.Certificates {
		// AWS embeds none; one that is embedded must be a trusted one, so
		// that no byte of the signature goes unchecked.
		if !slices.ContainsFunc(certs, func(t *x509.Certificate) bool { return bytes.Equal(t.Raw, c.Raw) }) {
			return nil, errors.New("signature embeds a certificate that is not a configured AWS certificate")
		}
	}
	p7.Certificates = certs
	if p7.GetOnlySigner() == nil {
		return nil, errors.New("signature is not by a configured AWS certificate")
	}
	if err := p7.Verify(); err != nil {
		return nil, errors.New("signature does not verify against the configured AWS certificate")
	}
	return p7.Content, nil
}

// digests are the digest algorithms accepted in a signature: AWS's rsa2048
// signatures use SHA-256; SHA-1 is refused.
var digests = []asn1.ObjectIdentifier{
	pkcs7.OIDDigestAlgorithmSHA256, pkcs7.OIDDigestAlgorithmSHA384, pkcs7.OIDDigestAlgorithmSHA512,
}

// Document is the part of an instance identity document the method uses.
type Document struct {
	AccountID        string `json:"accountId"`
	Region           string `json:"region"`
	AvailabilityZone string `json:"availabilityZone"`
	InstanceID       string `json:"instanceId"`
	InstanceType     string `json:"instanceType"`
	ImageID          string `json:"imageId"`
}

// ParseDocument decodes an instance identity document (other fields are
// ignored, as AWS adds fields over time) and checks the fields the method
// uses: a 12-digit account, and a region, instance ID and the rest made of
// the characters AWS uses (lower-case letters, digits, '-', '.').
func ParseDocument(b []byte) (Document, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return Document{}, errors.New("instance identity document is not JSON")
	}
	var errs []error
	if !ValidAccount(d.AccountID) {
		errs = append(errs, errors.New("accountId is not 12 digits"))
	}
	for _, f := range []struct{ key, val string }{
		{"region", d.Region}, {"availabilityZone", d.AvailabilityZone}, {"instanceId", d.InstanceID},
		{"instanceType", d.InstanceType}, {"imageId", d.ImageID},
	} {
		if !validWord(f.val) {
			errs = append(errs, fmt.Errorf("%s is missing or not lower-case letters, digits, '-' and '.'", f.key))
		}
	}
	if !strings.HasPrefix(d.InstanceID, "i-") {
		errs = append(errs, errors.New("instanceId does not start with i-"))
	}
	if len(errs) > 0 {
		return Document{}, fmt.Errorf("instance identity document: %w", errors.Join(errs...))
	}
	return d, nil
}

// ValidAccount reports whether s is an AWS account ID: 12 digits.
func ValidAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validWord reports whether s is 1 to 64 lower-case letters, digits, '-'
// and '.', not starting with '.'.
func validWord(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == ""
}

// AgentID returns the agent ID of the instance d describes:
// spiffe://<td>/signet/agent/aws_iid/<account>/<region>/<instance-id>.
func AgentID(td spiffeid.TrustDomain, d Document) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "signet", "agent", Name, d.AccountID, d.Region, d.InstanceID)
}

// Selectors returns the node selectors of the instance d describes, sorted.
func Selectors(d Document) []model.Selector {
	sel := func(k, v string) model.Selector { return model.Selector{Type: Name, Value: k + ":" + v} }
	return model.SortSelectors([]model.Selector{
		sel("account", d.AccountID),
		sel("region", d.Region),
		sel("az", d.AvailabilityZone),
		sel("instance_type", d.InstanceType),
		sel("image_id", d.ImageID),
	})
}
