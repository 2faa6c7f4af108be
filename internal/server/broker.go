package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/broker"
	"github.com/signet-id/signet/internal/broker/exchange"
	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/broker/provider"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/broker/seal"
	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/ca"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/errkind"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/store"
)

// BrokerConfig is the broker section: the KEK, the policy and the
// credentials, each naming its provider. Zero: no broker.
type BrokerConfig struct {
	KEKFile     string
	PolicyFile  string
	Credentials config.Plugins
	// IssueTimeout bounds one issuance (zero: broker.DefaultIssueTimeout).
	IssueTimeout time.Duration
}

func (b BrokerConfig) enabled() bool {
	return b.KEKFile != "" || b.PolicyFile != "" || len(b.Credentials) > 0
}

// credentialCommon are the keys of a credential section the broker reads
// itself; the rest is the provider's.
type credentialCommon struct {
	Provider   string          `yaml:"provider"`
	DefaultTTL config.Duration `yaml:"default_ttl"`
	MaxTTL     config.Duration `yaml:"max_ttl"`
}

// splitCredential separates the broker's keys of a credential section from
// its provider's.
func splitCredential(path string, n yaml.Node) (credentialCommon, *yaml.Node, error) {
	var c credentialCommon
	if n.Kind != yaml.MappingNode {
		return c, nil, fmt.Errorf("%s: want a mapping with provider: and the provider's settings", path)
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag, Line: n.Line, Column: n.Column}
	common := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "provider", "default_ttl", "max_ttl":
			common.Content = append(common.Content, n.Content[i], n.Content[i+1])
		default:
			rest.Content = append(rest.Content, n.Content[i], n.Content[i+1])
		}
	}
	if err := config.DecodeNode(path, common, &c); err != nil {
		return c, nil, err
	}
	if c.Provider == "" {
		return c, nil, fmt.Errorf("%s.provider: required, e.g. postgres or static", path)
	}
	return c, rest, nil
}

// buildBroker loads the KEK and the policy, builds every credential's
// provider through the registry (every problem reported at once) and
// checks the KEK against the store.
func (s *Server) buildBroker(ctx context.Context) error {
	bc := s.cfg.Broker
	if !bc.enabled() {
		return nil
	}
	var errs []error
	if bc.KEKFile == "" {
		errs = append(errs, errors.New("broker.kek_file: required (32 random bytes, mode 0600)"))
	}
	if bc.PolicyFile == "" {
		errs = append(errs, errors.New("broker.policy_file: required (the CEL policy; deny unless a rule allows)"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	sealer, err := seal.Load(bc.KEKFile)
	if err != nil {
		return err
	}
	holder, err := policy.NewHolder(bc.PolicyFile)
	if err != nil {
		return fmt.Errorf("broker.policy_file: %w", err)
	}
	reg, err := builtin.CredentialProviders()
	if err != nil {
		return err
	}
	src := &broker.SecretSource{}
	var creds []broker.Credential
	for _, name := range bc.Credentials.Names() {
		path := builtin.CredentialsKey + "." + name
		if err := store.CheckBrokerName(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		common, rest, err := splitCredential(path, bc.Credentials[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := reg.BuildAt(provider.Deps{Credential: name, Secrets: src, SignJWTSVID: s.signBrokerJWT, Log: s.log, Now: s.cfg.Now}, common.Provider, path, rest)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sp, ok := p.(*sshprovider.Provider); ok {
			if s.sshCAs == nil {
				s.sshCAs = map[string]*sshprovider.Provider{}
			}
			s.sshCAs[name] = sp
		}
		creds = append(creds, broker.Credential{Name: name, ProviderName: common.Provider, Provider: p,
			DefaultTTL: time.Duration(common.DefaultTTL), MaxTTL: time.Duration(common.MaxTTL)})
	}
	closeAll := func() {
		for _, c := range creds {
			if cl, ok := c.Provider.(interface{ Close() error }); ok {
				_ = cl.Close()
			}
		}
	}
	if len(errs) > 0 {
		closeAll()
		return errors.Join(errs...)
	}
	metrics, err := broker.NewMetrics(s.registerer)
	if err != nil {
		closeAll()
		return err
	}
	b, err := broker.New(ctx, broker.Config{
		Store: s.store, Sealer: sealer, Policy: holder, Credentials: creds,
		Log: s.log.With("component", "broker"), Now: s.cfg.Now, Metrics: metrics, IssueTimeout: bc.IssueTimeout,
	})
	if err != nil {
		closeAll()
		return err
	}
	src.B = b
	s.broker, s.policy = b, holder
	return nil
}

// registerBrokerTokens adds the broker's issuer and the JWT-SVID subject
// verifier to the token endpoint.
func (s *Server) registerBrokerTokens() {
	if s.broker == nil {
		return
	}
	(&exchange.Issuer{Broker: s.broker, Describer: storeDescriber{s.store}}).Register(s.tokenIssuers)
	(&exchange.TxnIssuer{Signer: s.ca, Audit: s.store}).Register(s.tokenIssuers)
	s.tokenVerifiers = append(s.tokenVerifiers, &exchange.JWTSVIDVerifier{Bundles: jwtSource{s}, Audience: s.serverID.String()})
}

// Broker returns the server's credential broker; nil when none is
// configured.
func (s *Server) Broker() *broker.Broker { return s.broker }

// ReloadPolicy reloads the broker's policy file (on SIGHUP). A policy that
// does not compile keeps the old one in force and is returned as the error.
func (s *Server) ReloadPolicy() error {
	if s.policy == nil {
		return errkind.New(errkind.FailedPrecondition, "no broker policy is configured")
	}
	if err := s.policy.Reload(); err != nil {
		s.log.Error("broker policy reload failed; the previous policy stays in force", "error", err)
		return err
	}
	s.log.Info("broker policy reloaded", "rules", len(s.policy.Policy().RuleNames()))
	return nil
}

// jwtSource serves the trust domain's JWT keys from the current bundle.
type jwtSource struct{ s *Server }

func (j jwtSource) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	b := j.s.Bundle()
	if b == nil || td != b.TrustDomain() {
		return nil, fmt.Errorf("no JWT bundle for trust domain %q", td)
	}
	return b.JWTBundle(), nil
}

// storeDescriber describes workloads from their registration entries: the
// selectors of the first entry with the ID (by entry id) and the node it is
// parented to, when that is an attested node.
type storeDescriber struct{ st *store.Store }

func (d storeDescriber) Describe(ctx context.Context, id spiffeid.ID) ([]model.Selector, broker.Node, error) {
	entries, err := d.st.ListEntries(ctx, store.EntryFilter{SPIFFEID: id, Limit: 1})
	if err != nil || len(entries) == 0 {
		return nil, broker.Node{}, err
	}
	e := entries[0]
	n, err := d.st.GetNode(ctx, e.ParentID)
	if errkind.Is(err, errkind.NotFound) {
		return slices.Clone(e.Selectors), broker.Node{}, nil
	}
	if err != nil {
		return nil, broker.Node{}, err
	}
	return slices.Clone(e.Selectors), broker.Node{ID: n.SPIFFEID, AttestationMethod: n.AttestationType, Selectors: n.Selectors, Labels: n.Labels}, nil
}

// signBrokerJWT mints a JWT-SVID for a broker provider to trade at a
// cloud or SaaS token service on the calling workload's behalf.
func (s *Server) signBrokerJWT(ctx context.Context, subject spiffeid.ID, aud string, ttl time.Duration) (string, error) {
	tok, _, err := s.ca.SignJWTSVID(ctx, ca.JWTParams{ID: subject, Audience: []string{aud}, TTL: ttl})
	return tok, err
}
