// Package config reads Signet's YAML configuration files.
//
// Files are decoded strictly: an unknown key is an error naming it and its
// line, so a typo never silently falls back to a default. Durations are
// written as ParseDuration reads them ("90s", "1h", "7d"). Every field but
// the plugin sections is also a command-line flag, named by its `flag` tag
// and bound with BindFlags; a flag given explicitly overrides the file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds configuration files.
const maxFileSize = 1 << 20

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" flag:"log-level" usage:"debug, info, warn or error"`
	Format string `yaml:"format" flag:"log-format" usage:"text or json (default: text on a terminal, else json)"`
}

// Store selects the server's store.
type Store struct {
	Driver string `yaml:"driver" flag:"store-driver" usage:"sqlite or postgres"`
	DSN    string `yaml:"dsn" flag:"store-dsn" usage:"PostgreSQL connection string, or the SQLite file (default DATA_DIR/signet.db)"`
	// DSNFile names a file holding DSN (a mounted Kubernetes Secret), so
	// the connection string is in neither the config file nor argv.
	DSNFile string `yaml:"dsn_file" flag:"store-dsn-file" usage:"file holding the store's connection string, instead of store.dsn (e.g. a mounted Secret)"`
}

// CA configures the server's certificate authority.
type CA struct {
	KeyType   string   `yaml:"key_type" flag:"ca-key-type" usage:"CA and JWT key type: ec-p256, ec-p384, rsa-2048 or rsa-4096"`
	TTL       Duration `yaml:"ttl" flag:"ca-ttl" usage:"CA certificate lifetime"`
	JWTKeyTTL Duration `yaml:"jwt_key_ttl" flag:"ca-jwt-key-ttl" usage:"JWT signing key lifetime"`
}

// HTTPTLS is the certificate the server's HTTPS listener presents.
type HTTPTLS struct {
	CertFile string `yaml:"cert_file" flag:"http-tls-cert-file" usage:"PEM certificate chain for the HTTPS listener, e.g. a web-PKI certificate (default: the server's own SVID)"`
	KeyFile  string `yaml:"key_file" flag:"http-tls-key-file" usage:"private key of --http-tls-cert-file (0600)"`
}

// UITLS is the certificate the console presents with ui_oidc.
type UITLS struct {
	CertFile string `yaml:"cert_file" flag:"ui-tls-cert-file" usage:"PEM certificate chain the console presents with --ui-oidc-issuer (a certificate browsers trust)"`
	KeyFile  string `yaml:"key_file" flag:"ui-tls-key-file" usage:"private key of --ui-tls-cert-file (0600)"`
}

// UIOIDC is the console's OIDC login (the ui_oidc section): on when
// issuer is set.
type UIOIDC struct {
	Issuer           string   `yaml:"issuer" flag:"ui-oidc-issuer" usage:"sign people in to the console at this OpenID provider (https issuer URL); needs --ui-tls-cert-file"`
	ClientID         string   `yaml:"client_id" flag:"ui-oidc-client-id" usage:"the console's client ID at the provider"`
	ClientSecretFile string   `yaml:"client_secret_file" flag:"ui-oidc-client-secret-file" usage:"file holding the console's client secret (0600); none for a public client (PKCE only)"`
	RedirectURL      string   `yaml:"redirect_url" flag:"ui-oidc-redirect-url" usage:"the console's callback as registered at the provider, https://HOST:PORT/auth/callback"`
	Scopes           []string `yaml:"scopes" flag:"ui-oidc-scopes" usage:"scopes besides openid (default email,profile, plus the groups claim with --ui-oidc-allowed-groups)"`
	AllowedSubjects  []string `yaml:"allowed_subjects" flag:"ui-oidc-allowed-subjects" usage:"ID token subjects admitted to the console"`
	AllowedEmails    []string `yaml:"allowed_emails" flag:"ui-oidc-allowed-emails" usage:"verified email addresses admitted to the console (case-insensitive)"`
	AllowedGroups    []string `yaml:"allowed_groups" flag:"ui-oidc-allowed-groups" usage:"groups (in --ui-oidc-groups-claim) admitted to the console"`
	GroupsClaim      string   `yaml:"groups_claim" flag:"ui-oidc-groups-claim" usage:"ID token claim holding the groups (default groups)"`
	SessionTTL       Duration `yaml:"session_ttl" flag:"ui-oidc-session-ttl" usage:"how long a console sign-in lasts (default 8h, at most 24h)"`
	CABundlePath     string   `yaml:"ca_bundle_path" flag:"ui-oidc-ca-bundle-path" usage:"PEM roots for the provider's TLS certificate (default: the system's)"`
}

// OIDCIssuer is one external OIDC issuer whose tokens the token endpoint
// accepts as a CI job's identity (the oidc_issuers section; see
// internal/ci).
type OIDCIssuer struct {
	// Issuer is the issuer URL (https), exactly as its tokens' iss claim.
	Issuer string `yaml:"issuer"`
	// Audience the tokens must be for (default spiffe://<trust domain>).
	Audience string `yaml:"audience"`
	// Kind is github, gitlab or generic: which claims become selectors.
	// Guessed for token.actions.githubusercontent.com and gitlab.com.
	Kind string `yaml:"kind"`
	// CABundlePath holds the PEM roots for the issuer's TLS certificate
	// (default: the system's).
	CABundlePath string `yaml:"ca_bundle_path"`
	// JWKSURL overrides the discovery document's jwks_uri.
	JWKSURL string `yaml:"jwks_url"`
	// Claims are further claims that become claim:<name>:<value> selectors.
	Claims []string `yaml:"claims"`
}

// Server is the server's configuration file. Every field but the plugin sections
// is also a flag of "signet server run".
type Server struct {
	TrustDomain   string   `yaml:"trust_domain" flag:"trust-domain" usage:"trust domain this server is the CA of, e.g. example.org"`
	DataDir       string   `yaml:"data_dir" flag:"data-dir" usage:"directory for the store, CA keys and admin socket"`
	BindAddress   string   `yaml:"bind_address" flag:"bind-address" usage:"agent API listen address, host:port"`
	AdminSocket   string   `yaml:"admin_socket" flag:"admin-socket" usage:"admin API unix socket (default DATA_DIR/admin.sock)"`
	AdminUIDs     []uint32 `yaml:"admin_uids" flag:"admin-uids" usage:"further uids allowed on the admin socket besides root and the server's user (comma-separated, repeatable)"`
	HealthAddress string   `yaml:"health_address" flag:"health-address" usage:"serve /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:8082"`
	// HTTPAddress serves the HTTPS endpoints: OAuth 2.0 token exchange
	// (POST /oauth2/token).
	HTTPAddress string  `yaml:"http_address" flag:"http-address" usage:"serve HTTPS (the token exchange endpoint POST /oauth2/token) on this address, e.g. 0.0.0.0:8443"`
	HTTPTLS     HTTPTLS `yaml:"http_tls"`
	// BundleEndpointAddress serves the SPIFFE bundle endpoint alone under
	// https_spiffe (the server's SVID), beside http_address.
	BundleEndpointAddress string `yaml:"bundle_endpoint_address" flag:"bundle-endpoint-address" usage:"also serve the SPIFFE bundle endpoint GET /bundle on this address with the server's own SVID (profile https_spiffe), e.g. 0.0.0.0:8444; http_address serves it too, under https_web when http_tls is set"`
	// HTTPAdvertiseURL is the token endpoint's base URL this server tells
	// its agents (and they their workloads).
	HTTPAdvertiseURL string `yaml:"http_advertise_url" flag:"http-advertise-url" usage:"base URL of the HTTPS listener told to agents for brokered credentials, https://HOST:PORT (default https://HTTP_ADDRESS when its host is concrete, not 0.0.0.0 or ::)"`
	// JWTIssuer is the iss of JWT-SVIDs; the HTTPS listener serves OIDC
	// discovery for it.
	JWTIssuer string `yaml:"jwt_issuer" flag:"jwt-issuer" usage:"https URL put in JWT-SVIDs as iss; the HTTPS listener serves ISSUER/.well-known/openid-configuration and its JWKS for it (needs --http-address)"`
	// UIAddress serves the read-only web console (internal/console);
	// empty: no console. Without ui_mtls it must be a loopback address.
	UIAddress string `yaml:"ui_address" flag:"ui-address" usage:"serve the read-only web console on this address, e.g. 127.0.0.1:8090 (loopback only unless --ui-mtls)"`
	// UIMTLS serves the console over TLS and admits only clients with an
	// admin entry's X509-SVID, whatever their address.
	UIMTLS bool `yaml:"ui_mtls" flag:"ui-mtls" usage:"serve the console over TLS and require an admin entry's X509-SVID from every client (one way to allow a non-loopback --ui-address)"`
	// UIOIDC signs people in to the console at the operator's OpenID
	// provider (the other way to allow a non-loopback ui_address); it
	// needs ui_tls.
	UIOIDC UIOIDC `yaml:"ui_oidc"`
	// UITLS is the console's certificate with ui_oidc (browsers must trust
	// it: a web-PKI or enterprise certificate).
	UITLS          UITLS    `yaml:"ui_tls"`
	Store          Store    `yaml:"store"`
	CA             CA       `yaml:"ca"`
	DefaultX509TTL Duration `yaml:"default_x509_ttl" flag:"default-x509-ttl" usage:"X509-SVID lifetime for entries that set none"`
	DefaultJWTTTL  Duration `yaml:"default_jwt_ttl" flag:"default-jwt-ttl" usage:"JWT-SVID lifetime for entries that set none"`
	AgentTTL       Duration `yaml:"agent_ttl" flag:"agent-ttl" usage:"agent SVID lifetime"`
	JoinTokenTTL   Duration `yaml:"join_token_ttl" flag:"join-token-ttl" usage:"lifetime of join tokens created without --ttl"`
	// AgentReauthWindow bounds how long after its agent SVID expired a node
	// may re-establish itself by proof of possession (agent_reauth).
	AgentReauthWindow Duration `yaml:"agent_reauth_window" flag:"agent-reauth-window" usage:"how long after its agent SVID expired (a server outage) a node may come back by proving it holds that SVID's key"`
	// NodeAttestors enables node attestation methods by name, each with its
	// settings (join_token is on unless set to {enabled: false}).
	NodeAttestors Plugins `yaml:"node_attestors"`
	// KeyManager names where CA and JWT keys live: {disk: {dir: …}}
	// (default disk in DATA_DIR/keys: one CA per replica), or {sealed:
	// {kek_file: …}} (sealed in the store: one CA for every replica).
	KeyManager Plugins `yaml:"key_manager"`
	// UpstreamAuthority, when it names a kind, makes the CA an intermediate
	// under an existing CA: {disk: {cert_file, key_file, bundle_file}}.
	UpstreamAuthority Plugins `yaml:"upstream_authority"`
	// OIDCIssuers are the external OIDC issuers (CI systems) whose tokens
	// are exchanged for SVIDs at the token endpoint, by name.
	OIDCIssuers map[string]OIDCIssuer `yaml:"oidc_issuers"`
	// Broker configures the credential broker: the KEK, the policy and the
	// credentials (each a provider and its settings).
	Broker Broker `yaml:"broker"`
	Log    Log    `yaml:"log"`
}

// Broker is the server's broker section.
type Broker struct {
	KEKFile    string `yaml:"kek_file" flag:"broker-kek-file" usage:"key-encryption key of the credential broker: 32 random bytes, mode 0600"`
	PolicyFile string `yaml:"policy_file" flag:"broker-policy-file" usage:"CEL policy of the credential broker (reloaded on SIGHUP)"`
	// IssueTimeout bounds one provider issuance; pending leases older than
	// twice it are reconciled by the sweeper.
	IssueTimeout Duration `yaml:"issue_timeout" flag:"broker-issue-timeout" usage:"how long a provider may take to issue a credential (default 30s); pending leases older than twice it are reconciled"`
	// Credentials are the brokered credentials by name, each with
	// provider: and that provider's settings.
	Credentials Plugins `yaml:"credentials"`
}

// Agent is the agent's configuration file. Every field but the plugin
// sections is also a flag of "signet agent run".
type Agent struct {
	ServerAddress string `yaml:"server_address" flag:"server-address" usage:"the server's agent API, host:port, or a comma-separated list of server replicas tried in order (a.internal:8081,b.internal:8081)"`
	TrustBundle   string `yaml:"trust_bundle" flag:"trust-bundle" usage:"PEM trust bundle to bootstrap trust in the server (from: signet bundle show)"`
	TrustDomain   string `yaml:"trust_domain" flag:"trust-domain" usage:"trust domain (default: read from the trust bundle)"`
	// JoinToken and JoinTokenFile are shorthands for the join_token node
	// attestor: node_attestor: {join_token: {token: …}}.
	JoinToken     string `yaml:"join_token" flag:"join-token" usage:"single-use join token, needed only until the agent holds an SVID (visible in ps: prefer --join-token-file or $SIGNET_JOIN_TOKEN)"`
	JoinTokenFile string `yaml:"join_token_file" flag:"join-token-file" usage:"file holding the join token on its first line"`
	// NodeAttestor configures the one node attestation method the agent
	// uses, by name.
	NodeAttestor Plugins `yaml:"node_attestor"`
	// WorkloadAttestors configures workload attestors by name; unix is
	// always on.
	WorkloadAttestors Plugins  `yaml:"workload_attestors"`
	DataDir           string   `yaml:"data_dir" flag:"data-dir" usage:"directory for the agent's SVID and state"`
	Socket            string   `yaml:"socket" flag:"socket" usage:"Workload API unix socket"`
	SyncInterval      Duration `yaml:"sync_interval" flag:"sync-interval" usage:"how often to sync with the server"`
	AttestTimeout     Duration `yaml:"attest_timeout" flag:"attest-timeout" usage:"how long to keep trying an unreachable server before the first attestation fails"`
	HealthAddress     string   `yaml:"health_address" flag:"health-address" usage:"serve /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:8083"`
	// KeepStartupMemory turns off the page-out, after the first sync, of
	// the binary's pages only start-up used, and the page-out again after
	// each quiet spell of the Workload API (package memtrim).
	KeepStartupMemory bool `yaml:"keep_startup_memory" flag:"keep-startup-memory" usage:"keep resident the pages of the binary that start-up or serving used, instead of paging them out once the first sync is complete and again whenever the Workload API has been quiet for 30s"`
	// KeepGOMAXPROCS keeps the Go runtime's GOMAXPROCS throughout, instead
	// of one P while no SVID is being signed (agent.Config.IdleProcs).
	KeepGOMAXPROCS bool `yaml:"keep_gomaxprocs" flag:"keep-gomaxprocs" usage:"keep the Go runtime's GOMAXPROCS (one P per CPU) while the agent only serves, instead of running on one P once it has signed no SVID for 5s and on every CPU again to sign (a GOMAXPROCS environment variable also keeps its value)"`
	Log            Log  `yaml:"log"`
}

// LoadServer reads a server configuration file.
func LoadServer(path string) (*Server, error) {
	var c Server
	if err := load(path, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadAgent reads an agent configuration file.
func LoadAgent(path string) (*Agent, error) {
	var c Agent
	if err := load(path, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func load(path string, v any) error {
	data, err := ReadFile("config", path)
	if err != nil {
		return err
	}
	if err := Decode(data, v); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode strictly decodes YAML into v: unknown keys, several documents and
// type mismatches are errors that name the line and field. An empty document
// leaves v unchanged.
func Decode(data []byte, v any) error {
	// Unknown keys first, all of them, each with what to write instead;
	// the decoder's own check below stays as the backstop.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return cleanYAMLError(err)
	}
	if doc.Kind != 0 {
		var errs []error
		t := reflect.TypeOf(v)
		checkKeys("", &doc, t, flagKeysOf(t), &errs)
		if len(errs) > 0 {
			return topLevel(errors.Join(errs...))
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return cleanYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document: a config file holds exactly one")
	}
	return nil
}

// cleanYAMLError trims yaml.v3's Go type names ("in type config.Server")
// that mean nothing to an operator.
func cleanYAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	for _, t := range []string{"config.Server", "config.Agent", "config.HTTPTLS", "config.OIDCIssuer", "config.Store", "config.CA", "config.Log", "config.Duration", "config.Plugins"} {
		msg = strings.ReplaceAll(msg, " in type "+t, "")
	}
	return errors.New(msg)
}
