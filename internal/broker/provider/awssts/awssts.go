// Package awssts is the broker's provider of AWS credentials: for each
// lease it mints a JWT-SVID of the calling workload for audience
// sts.amazonaws.com and trades it at AWS STS with AssumeRoleWithWebIdentity
// (aws-sdk-go-v2's STS client) for temporary credentials of the configured
// role. AWS trusts the JWT-SVID through an IAM OIDC identity provider for
// Signet's jwt_issuer (see docs/providers.md).
//
// The role session name carries the workload's SPIFFE ID, so CloudTrail
// names the workload. AWS cannot end a role session early: Revoke does
// nothing and Recalls reports false; the operator's remedy is a deny policy
// on the role for sessions issued before a time (aws:TokenIssueTime), as the
// docs describe.
package awssts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
)

// Name is the provider's registry name and config value.
const Name = "aws_sts"

// Audience is the aud of the JWT-SVIDs traded at STS.
const Audience = "sts.amazonaws.com"

// AWS's bounds on DurationSeconds.
const (
	MinDuration = 15 * time.Minute
	MaxDuration = 12 * time.Hour
)

// tokenTTL is the lifetime of the JWT-SVID handed to STS: it is used once,
// at once.
const tokenTTL = 2 * time.Minute

// Config is an aws_sts credential's configuration.
type Config struct {
	// RoleARN is the role to assume, arn:aws:iam::ACCOUNT:role/NAME.
	RoleARN string `yaml:"role_arn"`
	// STSEndpoint overrides the STS endpoint (a regional endpoint, a VPC
	// endpoint, a test double); empty: https://sts.amazonaws.com.
	STSEndpoint string `yaml:"sts_endpoint"`
	// Region signs and routes the request; default us-east-1.
	Region string `yaml:"region"`
}

var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)

// Validate reports every problem of c, naming fields by their keys.
func (c *Config) Validate() error {
	var errs []error
	if !roleARN.MatchString(c.RoleARN) {
		errs = append(errs, fmt.Errorf("role_arn %q: want an IAM role ARN, arn:aws:iam::123456789012:role/deploy", c.RoleARN))
	}
	if c.STSEndpoint != "" {
		if u, err := url.Parse(c.STSEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("sts_endpoint %q: want a URL such as https://sts.eu-west-1.amazonaws.com, or empty", c.STSEndpoint))
		}
	}
	return errors.Join(errs...)
}

// SignFunc mints a JWT-SVID (provider.Deps.SignJWTSVID).
type SignFunc func(ctx context.Context, subject spiffeid.ID, aud string, ttl time.Duration) (string, error)

// Provider assumes one role for leases.
type Provider struct {
	credential string
	role       string
	client     *sts.Client
	sign       SignFunc
	now        func() time.Time
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Recaller = (*Provider)(nil)
)

// New returns the provider of credential; cfg must be valid. hc is the
// HTTP client towards STS (nil: a default with a 30 s timeout).
func New(credential string, cfg Config, sign SignFunc, hc *http.Client, now func() time.Time) (*Provider, error) {
	if sign == nil {
		return nil, fmt.Errorf("aws_sts credential %s: no JWT-SVID signer (the broker runs without a CA)", credential)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := sts.Options{Region: region, HTTPClient: hc, RetryMaxAttempts: 2}
	if cfg.STSEndpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.STSEndpoint)
	}
	return &Provider{credential: credential, role: cfg.RoleARN, client: sts.New(opts), sign: sign, now: now}, nil
}

// Recalls reports false: AWS cannot end an issued role session early.
func (*Provider) Recalls() bool { return false }

// SessionName derives the role session name from a SPIFFE ID within AWS's
// rules (2–64 characters of [A-Za-z0-9+=,.@_-]): the ID without its scheme,
// each other character replaced by '-'; longer IDs are cut and end in a
// hash of the whole ID so that distinct workloads stay distinct.
func SessionName(id spiffeid.ID) string {
	s := strings.TrimPrefix(id.String(), "spiffe://")
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("+=,.@_-", r):
			return r
		case r == '/':
			return '@'
		}
		return '-'
	}, s)
	if len(s) > 64 {
		h := sha256.Sum256([]byte(id.String()))
		s = s[:64-9] + "-" + hex.EncodeToString(h[:4])
	}
	for len(s) < 2 {
		s += "-"
	}
	return s
}

// Issue assumes the role as the calling workload. The session lasts the
// lease, but at least MinDuration (AWS's minimum) and at most MaxDuration;
// the role's own maximum session duration may be lower, and STS then
// refuses with its own message.
func (p *Provider) Issue(ctx context.Context, r provider.Request) (provider.Credential, error) {
	tok, err := p.sign(ctx, r.Subject, Audience, tokenTTL)
	if err != nil {
		return provider.Credential{}, fmt.Errorf("aws_sts credential %s: mint JWT-SVID: %w", p.credential, err)
	}
	d := min(max(r.ExpiresAt.Sub(p.now()), MinDuration), MaxDuration).Truncate(time.Second)
	out, err := p.client.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn: aws.String(p.role), RoleSessionName: aws.String(SessionName(r.Subject)),
		WebIdentityToken: aws.String(tok), DurationSeconds: aws.Int32(int32(d / time.Second)),
	})
	if err != nil {
		return provider.Credential{}, fmt.Errorf("aws_sts credential %s: AssumeRoleWithWebIdentity %s: %w", p.credential, p.role, remoteError(err))
	}
	c := out.Credentials
	if c == nil || c.AccessKeyId == nil || c.SecretAccessKey == nil || c.SessionToken == nil {
		return provider.Credential{}, fmt.Errorf("aws_sts credential %s: STS returned no credentials", p.credential)
	}
	data := map[string]string{
		"aws_access_key_id": *c.AccessKeyId, "aws_secret_access_key": *c.SecretAccessKey,
		"aws_session_token": *c.SessionToken, "session_name": SessionName(r.Subject),
	}
	if out.AssumedRoleUser != nil && out.AssumedRoleUser.Arn != nil {
		data["assumed_role_arn"] = *out.AssumedRoleUser.Arn
	}
	cred := provider.Credential{Data: data}
	if c.Expiration != nil {
		data["expiration"] = c.Expiration.UTC().Format(time.RFC3339)
		if c.Expiration.Before(r.ExpiresAt) {
			cred.ExpiresAt = *c.Expiration
		}
	}
	return cred, nil
}

// Revoke does nothing: an assumed-role session cannot be ended early (see
// the package comment for the operator's remedy).
func (p *Provider) Revoke(context.Context, provider.Ref) error { return nil }

// remoteError keeps STS's own code and message, which name no secret.
func remoteError(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("cannot reach STS: %v", ue.Err)
	}
	return err
}
