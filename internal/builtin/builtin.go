// Package builtin is the one place that lists every built-in plugin of
// Signet, per kind. Adding an attestor, a provider or a key manager is its
// own package plus one line here. Each registry is built fresh by its
// function, so callers (the CLI, tests) share no mutable state; a duplicate
// name is an error at start-up, and configuring an unknown name fails with
// the names that exist.
//
// The packages of node-side kinds (node attestors, both halves, and
// workload attestors) are safe on a node: server halves declare the narrow
// interfaces they need instead of importing the store or the CA
// (internal/deptest checks it). Key managers and upstream authorities are
// server-only.
package builtin

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/broker/provider"
	"github.com/signet-id/signet/internal/broker/provider/awssts"
	"github.com/signet-id/signet/internal/broker/provider/azurewif"
	"github.com/signet-id/signet/internal/broker/provider/gcpwif"
	"github.com/signet-id/signet/internal/broker/provider/githubapp"
	"github.com/signet-id/signet/internal/broker/provider/mysql"
	"github.com/signet-id/signet/internal/broker/provider/oauth"
	"github.com/signet-id/signet/internal/broker/provider/postgres"
	sshprovider "github.com/signet-id/signet/internal/broker/provider/ssh"
	"github.com/signet-id/signet/internal/broker/provider/static"
	"github.com/signet-id/signet/internal/builtin/agentside"
	"github.com/signet-id/signet/internal/ca"
	diskkeys "github.com/signet-id/signet/internal/ca/keymanager/disk"
	sealedkeys "github.com/signet-id/signet/internal/ca/keymanager/sealed"
	upstreamdisk "github.com/signet-id/signet/internal/ca/upstream/disk"
	"github.com/signet-id/signet/internal/model"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/awsiid"
	"github.com/signet-id/signet/internal/nodeattest/azuremsi"
	"github.com/signet-id/signet/internal/nodeattest/gcpiit"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/nodeattest/k8spsat"
	k8spsatverifier "github.com/signet-id/signet/internal/nodeattest/k8spsat/verifier"
	"github.com/signet-id/signet/internal/nodeattest/reauth"
	"github.com/signet-id/signet/internal/nodeattest/sshpop"
	"github.com/signet-id/signet/internal/nodeattest/tpm"
	"github.com/signet-id/signet/internal/nodeattest/x509pop"
	"github.com/signet-id/signet/internal/plugin"
	"github.com/signet-id/signet/internal/workloadattest"
)

// Configuration keys of the plugin sections.
const (
	NodeAttestorsKey     = "node_attestors"      // server: the methods it accepts
	NodeAttestorKey      = agentside.Key         // agent: the one method it uses
	WorkloadAttestorsKey = agentside.WorkloadKey // agent: besides unix, always on
	KeyManagerKey        = "key_manager"         // server: where CA and JWT keys live (one)
	UpstreamAuthorityKey = "upstream_authority"  // server: who signs the X.509 CA (at most one)
	CredentialsKey       = "broker.credentials"  // server: the broker's credentials, each naming its provider
)

// DefaultNodeVerifiers are the node attestation methods a server accepts
// unless its configuration switches them off: join tokens, and agent_reauth
// (which takes no settings and is bounded by VerifierDeps.ReauthWindow).
var DefaultNodeVerifiers = []string{jointoken.Name, reauth.Name}

// VerifierDeps is what server halves of node attestation may use.
type VerifierDeps struct {
	TrustDomain spiffeid.TrustDomain
	// JoinTokens is the server's store of join tokens.
	JoinTokens jointoken.TokenStore
	// Nodes looks attested nodes up (trust-on-first-use methods refuse an
	// identity that already attested; agent_reauth finds the node's serial).
	Nodes NodeLookup
	// Authorities lists the trust domain's authorities (agent_reauth).
	Authorities reauth.Authorities
	// ReauthWindow is how long after its agent SVID expired a node may
	// re-establish itself (agent_reauth; zero: reauth.DefaultWindow;
	// negative: agent_reauth is off).
	ReauthWindow time.Duration
	// TPMAllowList admits TPM endorsement keys by hash besides the tpm
	// method's configured roots and allowed_ek_hashes; nil: none.
	TPMAllowList tpm.EKAllowList
	Now          func() time.Time
	Log          *slog.Logger
}

// NodeLookup finds an attested node by SPIFFE ID; an unknown one is an
// error kinded NotFound. The server's store implements it.
type NodeLookup interface {
	GetNode(ctx context.Context, id spiffeid.ID) (model.Node, error)
}

// NodeVerifiers returns the registry of server halves of node attestation.
func NodeVerifiers() (*plugin.Registry[nodeattest.Verifier, VerifierDeps], error) {
	return plugin.New("node attestor", NodeAttestorsKey,
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: jointoken.Name, New: newJoinTokenVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: x509pop.Name, New: newX509popVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: sshpop.Name, New: newSSHPopVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: awsiid.Name, New: newAWSIIDVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: gcpiit.Name, New: newGCPIITVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: azuremsi.Name, New: newAzureMSIVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: tpm.Name, New: newTPMVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: k8spsat.Name, New: newK8sPSATVerifier},
		plugin.Factory[nodeattest.Verifier, VerifierDeps]{Name: reauth.Name, New: newReauthVerifier},
	)
}

// AttestorDeps is what agent halves of node attestation may use.
type AttestorDeps = agentside.AttestorDeps

// NodeAttestors returns the registry of agent halves of node attestation
// (agentside lists them, so that the slim agent binary links only those).
func NodeAttestors() (*plugin.Registry[nodeattest.Attestor, AttestorDeps], error) {
	return agentside.NodeAttestors()
}

// WorkloadDeps is what workload attestors may use.
type WorkloadDeps = agentside.WorkloadDeps

// WorkloadAttestors returns the registry of workload attestors.
func WorkloadAttestors() (*plugin.Registry[workloadattest.Attestor, WorkloadDeps], error) {
	return agentside.WorkloadAttestors()
}

func newJoinTokenVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg jointoken.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if !cfg.On() {
		return nil, plugin.ErrDisabled
	}
	return jointoken.NewVerifier(d.TrustDomain, d.JoinTokens, d.Now)
}

func newReauthVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg reauth.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if d.ReauthWindow < 0 {
		return nil, plugin.ErrDisabled
	}
	return reauth.NewVerifier(reauth.VerifierConfig{
		TrustDomain: d.TrustDomain, Nodes: d.Nodes, Authorities: d.Authorities, Window: d.ReauthWindow, Now: d.Now,
	})
}

func newX509popVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg x509pop.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	roots, err := x509pop.ReadCABundle(cfg.CABundlePath)
	if err != nil {
		return nil, fmt.Errorf("ca_bundle_path: %w", err)
	}
	return x509pop.NewVerifier(x509pop.VerifierConfig{TrustDomain: d.TrustDomain, Roots: roots, Now: d.Now})
}

func newSSHPopVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg sshpop.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	cas, err := sshpop.ReadAuthorities(cfg.CertAuthoritiesPath)
	if err != nil {
		return nil, fmt.Errorf("cert_authorities_path: %w", err)
	}
	return sshpop.NewVerifier(sshpop.VerifierConfig{TrustDomain: d.TrustDomain, Authorities: cas, Now: d.Now})
}

func newAWSIIDVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg awsiid.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if d.Nodes == nil {
		return nil, fmt.Errorf("aws_iid needs the node lookup (trust on first use)")
	}
	return awsiid.NewVerifier(d.TrustDomain, cfg, d.Nodes)
}

func newGCPIITVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg gcpiit.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return gcpiit.NewVerifier(d.TrustDomain, cfg, d.Now)
}

func newAzureMSIVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg azuremsi.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if d.Nodes == nil {
		return nil, fmt.Errorf("azure_msi needs the node lookup (trust on first use)")
	}
	return azuremsi.NewVerifier(d.TrustDomain, cfg, d.Nodes, d.Now)
}

func newTPMVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg tpm.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return tpm.NewVerifier(cfg, tpm.VerifierDeps{TrustDomain: d.TrustDomain, AllowList: d.TPMAllowList, Now: d.Now})
}

func newK8sPSATVerifier(d VerifierDeps, decode plugin.Decoder) (nodeattest.Verifier, error) {
	var cfg k8spsatverifier.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if d.Nodes == nil {
		return nil, fmt.Errorf("k8s_psat needs the node lookup (one agent per node)")
	}
	return k8spsatverifier.New(cfg, k8spsatverifier.Deps{TrustDomain: d.TrustDomain, Nodes: d.Nodes, Now: d.Now, Log: d.Log})
}

// KeyManagerDeps is what key managers may use.
type KeyManagerDeps struct {
	// DataDir is the server's data directory; disk keeps keys in
	// DataDir/keys unless configured otherwise.
	DataDir string
	// Store is the server's store; sealed keeps the sealed keys in it.
	Store sealedkeys.Store
}

// KeyManagers returns the registry of CA key managers.
func KeyManagers() (*plugin.Registry[ca.KeyManager, KeyManagerDeps], error) {
	return plugin.New("key manager", KeyManagerKey,
		plugin.Factory[ca.KeyManager, KeyManagerDeps]{Name: diskkeys.Name, New: newDiskKeyManager},
		plugin.Factory[ca.KeyManager, KeyManagerDeps]{Name: sealedkeys.Name, New: newSealedKeyManager},
	)
}

func newSealedKeyManager(d KeyManagerDeps, decode plugin.Decoder) (ca.KeyManager, error) {
	var cfg sealedkeys.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if d.Store == nil {
		return nil, fmt.Errorf("sealed needs the server's store")
	}
	// Opening checks the KEK against the store: one short write at most.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sealedkeys.New(ctx, cfg, d.Store)
}

// UpstreamDeps is what upstream authorities may use.
type UpstreamDeps struct {
	Now func() time.Time
}

// UpstreamAuthorities returns the registry of upstream authorities.
func UpstreamAuthorities() (*plugin.Registry[ca.UpstreamAuthority, UpstreamDeps], error) {
	return plugin.New("upstream authority", UpstreamAuthorityKey,
		plugin.Factory[ca.UpstreamAuthority, UpstreamDeps]{Name: upstreamdisk.Name, New: newDiskUpstream},
	)
}

func newDiskKeyManager(d KeyManagerDeps, decode plugin.Decoder) (ca.KeyManager, error) {
	var cfg diskkeys.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(d.DataDir, "keys")
	}
	return diskkeys.New(cfg)
}

func newDiskUpstream(d UpstreamDeps, decode plugin.Decoder) (ca.UpstreamAuthority, error) {
	var cfg upstreamdisk.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	cfg.Now = d.Now
	a, err := upstreamdisk.New(cfg)
	if err != nil {
		return nil, plugin.FieldError(err) // it names upstream_authority.disk.<field> itself
	}
	return a, nil
}

// CredentialProviders returns the registry of the broker's credential
// providers. Credentials name theirs with provider: and are built with
// BuildAt at broker.credentials.NAME.
func CredentialProviders() (*plugin.Registry[provider.Provider, provider.Deps], error) {
	return plugin.New("credential provider", CredentialsKey,
		plugin.Factory[provider.Provider, provider.Deps]{Name: postgres.Name, New: newPostgresProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: static.Name, New: newStaticProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: mysql.Name, New: newMySQLProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: sshprovider.Name, New: newSSHProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: awssts.Name, New: newAWSSTSProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: azurewif.Name, New: newAzureWIFProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: gcpwif.Name, New: newGCPWIFProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: githubapp.Name, New: newGitHubAppProvider},
		plugin.Factory[provider.Provider, provider.Deps]{Name: oauth.Name, New: newOAuthProvider},
	)
}

func newPostgresProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg postgres.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	dsn, err := postgres.ReadDSNFile(cfg.DSNFile)
	if err != nil {
		return nil, err
	}
	return postgres.New(d.Credential, dsn, cfg)
}

func newMySQLProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg mysql.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	dsn, err := mysql.ReadDSNFile(cfg.DSNFile)
	if err != nil {
		return nil, err
	}
	return mysql.New(d.Credential, dsn, cfg)
}

func newSSHProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg sshprovider.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return sshprovider.New(d.Credential, cfg, d.Now)
}

func newStaticProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg static.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return static.New(d.Credential, d.Secrets)
}

func newAWSSTSProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg awssts.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return awssts.New(d.Credential, cfg, d.SignJWTSVID, d.HTTPClient, d.Now)
}

func newAzureWIFProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg azurewif.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return azurewif.New(d.Credential, cfg, d.SignJWTSVID, d.HTTPClient, d.Now)
}

func newOAuthProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg oauth.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return oauth.New(d.Credential, cfg, d.SignJWTSVID, d.HTTPClient, d.Now)
}

func newGCPWIFProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg gcpwif.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return gcpwif.New(d.Credential, cfg, d.SignJWTSVID, d.HTTPClient, d.Now)
}

func newGitHubAppProvider(d provider.Deps, decode plugin.Decoder) (provider.Provider, error) {
	var cfg githubapp.Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	key, err := githubapp.ReadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return nil, err
	}
	return githubapp.New(d.Credential, cfg, key, d.HTTPClient, d.Now)
}
