package awsiid

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
)

// Config is the server half's configuration, the value of
// node_attestors.aws_iid:
//
//	aws_iid:
//	  accounts: ["123456789012"]
//	  certificate_files: [/etc/signet/aws-rsa2048-us-east-1.pem]
//
// At least one certificate is required: AWS publishes one RSA-2048
// certificate per region (in its documentation, "Verify the instance
// identity document using the RSA-2048 signature"); give those of the
// regions the instances run in, as PEM in Certificates or in files.
// Accounts is optional: empty admits an instance of any account those
// certificates sign for, so the account should then be selected on by node
// aliases; a list admits only those accounts.
type Config struct {
	// Accounts are the AWS account IDs admitted (12 digits each); empty
	// admits any.
	Accounts []string `yaml:"accounts"`
	// Certificates are AWS public certificates as PEM; an entry may hold
	// several.
	Certificates []string `yaml:"certificates"`
	// CertificateFiles are files of PEM AWS public certificates.
	CertificateFiles []string `yaml:"certificate_files"`
}

// Validate reports malformed account IDs and certificates, and a
// configuration with no certificate at all.
func (c Config) Validate() error {
	var errs []error
	for i, a := range c.Accounts {
		if !ValidAccount(a) {
			errs = append(errs, fmt.Errorf("accounts[%d]: %q is not an AWS account ID (12 digits)", i, a))
		}
	}
	for i, p := range c.Certificates {
		if _, err := parseCertificates([]byte(p)); err != nil {
			errs = append(errs, fmt.Errorf("certificates[%d]: %w", i, err))
		}
	}
	for i, f := range c.CertificateFiles {
		if f == "" {
			errs = append(errs, fmt.Errorf("certificate_files[%d]: empty path", i))
		}
	}
	if len(c.Certificates) == 0 && len(c.CertificateFiles) == 0 {
		errs = append(errs, errors.New("certificates: required: the AWS RSA-2048 public certificates of your regions, "+
			"as PEM here or in certificate_files"))
	}
	return errors.Join(errs...)
}

// LoadCertificates returns the certificates c names, reading its files.
func (c Config) LoadCertificates() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for i, p := range c.Certificates {
		certs, err := parseCertificates([]byte(p))
		if err != nil {
			return nil, fmt.Errorf("certificates[%d]: %w", i, err)
		}
		out = append(out, certs...)
	}
	for i, f := range c.CertificateFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("certificate_files[%d]: %w", i, err)
		}
		certs, err := parseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("certificate_files[%d]: %s: %w", i, f, err)
		}
		out = append(out, certs...)
	}
	return out, nil
}

// parseCertificates parses every CERTIFICATE block of PEM text; there must
// be at least one, and nothing else.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q: want CERTIFICATE", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// NodeLookup finds an attested node by SPIFFE ID; an unknown one is an
// error kinded NotFound. The server's store implements it.
type NodeLookup interface {
	GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error)
}

// Verifier is the server half of aws_iid. Create it with NewVerifier; it is
// safe for concurrent use.
type Verifier struct {
	td       spiffeid.TrustDomain
	accounts []string
	certs    []*x509.Certificate
	nodes    NodeLookup
}

var _ nodeattest.Verifier = (*Verifier)(nil)

// NewVerifier returns the verifier of cfg for trust domain td. nodes is
// where it looks up whether an instance already attested.
func NewVerifier(td spiffeid.TrustDomain, cfg Config, nodes NodeLookup) (*Verifier, error) {
	if td.IsZero() || nodes == nil {
		return nil, errors.New("aws_iid verifier: a trust domain and a node lookup are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	certs, err := cfg.LoadCertificates()
	if err != nil {
		return nil, err
	}
	return &Verifier{td: td, accounts: slices.Clone(cfg.Accounts), certs: certs, nodes: nodes}, nil
}

// Name returns "aws_iid".
func (v *Verifier) Name() string { return Name }

// Attest admits the instance whose signed identity document payload holds,
// once: an instance whose node exists is refused until it is evicted.
// Refusals say which check failed but never hold the document.
func (v *Verifier) Attest(ctx context.Context, payload []byte, _ nodeattest.Challenger) (nodeattest.Result, error) {
	if err := ctx.Err(); err != nil {
		return nodeattest.Result{}, err
	}
	doc, sig, err := ParsePayload(payload)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "aws_iid: %v", err)
	}
	signed, err := VerifySignature(doc, sig, v.certs)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "aws_iid: %v", err)
	}
	d, err := ParseDocument(signed)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "aws_iid: %v", err)
	}
	if len(v.accounts) > 0 && !slices.Contains(v.accounts, d.AccountID) {
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied, "aws_iid: account %s is not allowed", d.AccountID)
	}
	id, err := AgentID(v.td, d)
	if err != nil {
		return nodeattest.Result{}, errkind.New(errkind.InvalidArgument, "aws_iid: %v", err)
	}
	switch _, err := v.nodes.GetNode(ctx, id); {
	case err == nil:
		return nodeattest.Result{}, errkind.New(errkind.PermissionDenied,
			"aws_iid: %s already attested (trust on first use): evict the node to let it attest again", id)
	case !errkind.Is(err, errkind.NotFound):
		return nodeattest.Result{}, fmt.Errorf("aws_iid: look up node %s: %w", id, err)
	}
	return nodeattest.Result{AgentID: id, Selectors: Selectors(d), FirstUseOnly: true}, nil
}
