package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
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

// brokerParts are the pieces of the broker that checkBroker builds before
// anything is created: the KEK, the compiled policy and every credential's
// provider. startBroker assembles them into the broker once the store
// exists.
type brokerParts struct {
	sealer *seal.Sealer
	holder *policy.Holder
	creds  []broker.Credential
	src    *broker.SecretSource
}

// close closes the providers that hold connections.
func (p *brokerParts) close() {
	for _, c := range p.creds {
		if cl, ok := c.Provider.(interface{ Close() error }); ok {
			_ = cl.Close()
		}
	}
	p.creds = nil
}

// checkBroker loads the KEK, compiles the policy and builds every
// credential's provider through the registry (every problem reported at
// once, each naming its key). It runs before the server creates its data
// dir or store: providers validate their configuration and read their
// files but do not connect. ssh credentials, whose provider generates its
// CA key when the file is missing, are built only once everything else
// passed.
func (s *Server) checkBroker() error {
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
	parts := &brokerParts{src: &broker.SecretSource{}}
	if bc.KEKFile != "" {
		sealer, err := seal.Load(bc.KEKFile)
		if err != nil {
			errs = append(errs, err)
		}
		parts.sealer = sealer
	}
	if bc.PolicyFile != "" {
		holder, err := policy.NewHolder(bc.PolicyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("broker.policy_file: %w", err))
		}
		parts.holder = holder
	}
	reg, err := builtin.CredentialProviders()
	if err != nil {
		return err
	}
	type section struct {
		name, path string
		common     credentialCommon
		rest       *yaml.Node
	}
	var plain, ssh []section
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
		sec := section{name, path, common, rest}
		if common.Provider == sshprovider.Name {
			ssh = append(ssh, sec)
		} else {
			plain = append(plain, sec)
		}
	}
	build := func(secs []section) {
		for _, sec := range secs {
			p, err := reg.BuildAt(provider.Deps{Credential: sec.name, Secrets: parts.src, SignJWTSVID: s.signBrokerJWT, Log: s.log, Now: s.cfg.Now},
				sec.common.Provider, sec.path, sec.rest)
			if err != nil {
				errs = append(errs, fieldPaths(sec.path, err))
				continue
			}
			if sp, ok := p.(*sshprovider.Provider); ok {
				if s.sshCAs == nil {
					s.sshCAs = map[string]*sshprovider.Provider{}
				}
				s.sshCAs[sec.name] = sp
			}
			parts.creds = append(parts.creds, broker.Credential{Name: sec.name, ProviderName: sec.common.Provider, Provider: p,
				DefaultTTL: time.Duration(sec.common.DefaultTTL), MaxTTL: time.Duration(sec.common.MaxTTL)})
		}
	}
	build(plain)
	if len(errs) == 0 {
		build(ssh)
	}
	if len(errs) == 0 && parts.holder != nil {
		if err := parts.holder.SetCheck(sshRuleCheck(parts.creds)); err != nil {
			errs = append(errs, fmt.Errorf("broker.policy_file: %w", err))
		}
	}
	if len(errs) > 0 {
		parts.close()
		s.sshCAs = nil
		return errors.Join(errs...)
	}
	s.brokerParts = parts
	return nil
}

// fieldName matches a provider error that starts with the field it is
// about: "creation_statements[0]: …", "dsn_file: …".
var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]*(\[[0-9]+\])?(\.[a-z][a-z0-9_]*(\[[0-9]+\])?)*: `)

// fieldPaths rewrites a provider's error so that every problem names its
// key in full, broker.credentials.NAME.FIELD: the registry prefixes only the
// first line of a joined error, with "PATH: ". Errors that already name
// the path, or no field, keep "PATH: " in front.
func fieldPaths(path string, err error) error {
	msg := strings.TrimPrefix(err.Error(), path+": ")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, path):
		case fieldName.MatchString(l):
			lines[i] = path + "." + l
		default:
			lines[i] = path + ": " + l
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// startBroker builds the broker from the parts checkBroker prepared, now
// that the store exists, and checks the KEK against the store.
func (s *Server) startBroker(ctx context.Context) error {
	parts := s.brokerParts
	if parts == nil {
		return nil
	}
	metrics, err := broker.NewMetrics(s.registerer)
	if err != nil {
		return err
	}
	b, err := broker.New(ctx, broker.Config{
		Store: s.store, Sealer: parts.sealer, Policy: parts.holder, Credentials: parts.creds,
		Log: s.log.With("component", "broker"), Now: s.cfg.Now, Metrics: metrics, IssueTimeout: s.cfg.Broker.IssueTimeout,
	})
	if err != nil {
		return err
	}
	parts.src.B = b
	s.broker, s.policy = b, parts.holder
	s.brokerParts = nil
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

// maxKRLSerials bounds the revoked leases one KRL lists per credential
// (8 bytes each).
const maxKRLSerials = 100_000

// revokedSSHLeases lists, from the store, the leases of an ssh credential
// revoked before their end and not yet past it: the KRL of every replica
// then carries revocations made on any of them.
func (s *Server) revokedSSHLeases(ctx context.Context, credential string, now time.Time) ([]string, error) {
	leases, err := s.store.ListLeases(ctx, store.LeaseFilter{Credential: credential, States: []store.LeaseState{store.LeaseRevoked},
		ExpiresAfter: now, Limit: maxKRLSerials + 1})
	if err != nil {
		s.log.WarnContext(ctx, "ssh krl: list revoked leases", "credential", credential, "error", err)
		return nil, err
	}
	ids := make([]string, 0, len(leases))
	for _, l := range leases {
		ids = append(ids, l.ID)
	}
	if len(ids) > maxKRLSerials {
		s.log.ErrorContext(ctx, "ssh krl: too many revoked certificates still valid; refusing to serve a partial KRL", "credential", credential, "bound", maxKRLSerials)
		return nil, fmt.Errorf("more than %d revoked certificates of %s are still valid", maxKRLSerials, credential)
	}
	return ids, nil
}

// signBrokerJWT mints a JWT-SVID for a broker provider to trade at a
// cloud or SaaS token service on the calling workload's behalf.
func (s *Server) signBrokerJWT(ctx context.Context, subject spiffeid.ID, aud string, ttl time.Duration) (string, error) {
	tok, _, err := s.ca.SignJWTSVID(ctx, ca.JWTParams{ID: subject, Audience: []string{aud}, TTL: ttl})
	return tok, err
}
