package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel/trace"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/ci"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/console"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/oidcdiscovery"
	"github.com/signet-id/signet/internal/tokenapi"
)

// Config configures a Server. The zero value is not usable: TrustDomain and
// DataDir are required; every other field has a default (see withDefaults).
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// DataDir holds the SQLite store, CA keys, the server id and, by
	// default, the admin socket. Created 0700.
	DataDir string

	// BindAddress is where the agent API listens (TLS). Default 0.0.0.0:8081.
	BindAddress string
	// AdminSocket is the admin API's unix socket. Default DataDir/admin.sock.
	AdminSocket string
	// AdminUIDs may call the admin API over the socket besides root and the
	// user the server runs as.
	AdminUIDs []uint32
	// HealthAddress serves /healthz, /readyz and /metrics over plain HTTP;
	// empty disables it.
	HealthAddress string
	// HTTPAddress serves the HTTPS endpoints (the OAuth 2.0 token
	// exchange endpoint, POST /oauth2/token); empty disables it.
	HTTPAddress string
	// HTTPTLSCertFile and HTTPTLSKeyFile are the certificate chain (PEM)
	// and key the HTTPS listener presents, typically a web-PKI certificate
	// for clients that do not hold the trust bundle. Both empty: the
	// server's own X509-SVID, renewed with it.
	HTTPTLSCertFile string
	HTTPTLSKeyFile  string
	// BundleEndpointAddress serves only the SPIFFE bundle endpoint
	// (GET /bundle) with the server's own SVID (https_spiffe); empty
	// disables it.
	BundleEndpointAddress string
	// HTTPAdvertiseURL (http_advertise_url) is the base URL of the HTTPS
	// listener, https://HOST:PORT, that the server advertises to its
	// agents in every Sync, so that `signet credential get` finds the
	// broker without --broker. Empty: https://<the listener's address>
	// when HTTPAddress has a concrete host (not 0.0.0.0, :: or empty),
	// else nothing is advertised. Each replica advertises its own.
	HTTPAdvertiseURL string
	// TokenRatePerSecond bounds token endpoint requests per client
	// address (burst: twice as many); 0 means DefaultTokenRatePerSecond.
	// Not a file key: benchmarks driving the endpoint from one address
	// raise it.
	TokenRatePerSecond float64
	// OIDCIssuers are the external OIDC issuers (CI systems) whose tokens
	// the token endpoint exchanges for SVIDs (internal/ci), by name.
	OIDCIssuers map[string]config.OIDCIssuer
	// JWTIssuer, when set, is the iss claim of JWT-SVIDs, and the HTTPS
	// listener serves OpenID Connect discovery for it
	// (ISSUER/.well-known/openid-configuration and its JWKS), so that
	// clouds and OIDC libraries trust JWT-SVIDs. It must be an https URL
	// that reaches the HTTPS listener; requires HTTPAddress.
	JWTIssuer string
	// UIAddress serves the read-only web console (internal/console);
	// empty disables it. Without UIMTLS it must be a loopback address
	// (127.0.0.0/8, ::1 or localhost) and the console admits only loopback
	// clients.
	UIAddress string
	// UIMTLS serves the console over TLS (the server's SVID) and admits
	// only clients presenting an admin entry's X509-SVID, from anywhere.
	UIMTLS bool
	// UIOIDC, when set, signs people in to the console at an OpenID
	// provider (see console.OIDCConfig) instead: the console is served
	// over TLS with UITLSCertFile and UITLSKeyFile, from anywhere.
	UIOIDC                      *console.OIDCConfig
	UITLSCertFile, UITLSKeyFile string
	// TokenVerifiers are further subject verifiers of the token endpoint,
	// built by the caller (tests, embedders), asked after the configured
	// ones.
	TokenVerifiers []tokenapi.SubjectVerifier

	// StoreDriver is "sqlite" (default) or "postgres"; StoreDSN is the
	// PostgreSQL connection string or the SQLite path (default
	// DataDir/signet.db).
	StoreDriver string
	StoreDSN    string

	// KeyType for CA and JWT keys: ec-p256 (default), ec-p384, rsa-2048, rsa-4096.
	KeyType   string
	CATTL     time.Duration // default 24h
	JWTKeyTTL time.Duration // default 24h
	// DefaultX509TTL and DefaultJWTTTL apply to entries that set none.
	DefaultX509TTL time.Duration // default 1h
	DefaultJWTTTL  time.Duration // default 5m
	AgentTTL       time.Duration // agent SVID lifetime, default 1h
	JoinTokenTTL   time.Duration // default 1h
	// AgentReauthWindow is how long after its agent SVID expired (the
	// server was unreachable for longer than its lifetime) an agent may
	// re-establish its node by proving possession of that SVID's key
	// (agent_reauth_window; the agent_reauth attestation method). Default
	// DefaultAgentReauthWindow; negative switches agent_reauth off, so
	// such nodes need a new join token.
	AgentReauthWindow time.Duration

	// NodeAttestors enables node attestation methods by name, each with its
	// settings (the node_attestors section of the file). join_token is on
	// unless configured with enabled: false.
	NodeAttestors config.Plugins
	// NodeVerifiers are further attestation methods, built by the caller
	// (tests, embedders); their names must not clash with NodeAttestors.
	NodeVerifiers []nodeattest.Verifier
	// KeyManager names where CA and JWT keys live (the key_manager
	// section): exactly one kind; default disk in DataDir/keys.
	KeyManager config.Plugins
	// UpstreamAuthority, when it names a kind (the upstream_authority
	// section, at most one), has that authority sign the CA's X.509
	// certificates: the server becomes an intermediate under an existing CA
	// and the trust bundle holds that CA's roots.
	UpstreamAuthority config.Plugins

	// Broker configures the credential broker (the broker section); zero
	// runs none.
	Broker BrokerConfig

	// CacheRefresh is how often the entry cache and the agents' push
	// streams poll the store for changes made by other replicas (an idle
	// poll reads one row). Default 250ms, so a change committed through
	// another replica reaches this one's agents within the second.
	CacheRefresh time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: a private registry served on /metrics
	Now        func() time.Time
	// TracerProvider, when set, gives every RPC of the agent API and the
	// admin socket, every HTTP request (token endpoint, OIDC discovery, console,
	// SSH CA, health and metrics) and every store call a span
	// (internal/telemetry). Nil: no tracing, and no instrumentation runs.
	TracerProvider trace.TracerProvider
}

// Defaults.
const (
	DefaultBindAddress = "0.0.0.0:8081"
	DefaultCATTL       = 24 * time.Hour
	DefaultX509TTL     = time.Hour
	DefaultJWTTTL      = 5 * time.Minute
	DefaultAgentTTL    = time.Hour
	DefaultTokenTTL    = time.Hour
	// DefaultAgentReauthWindow is the default AgentReauthWindow.
	DefaultAgentReauthWindow = 7 * 24 * time.Hour
	// MaxSVIDTTL bounds entry TTLs; the CA lifetime caps them further.
	MaxSVIDTTL = 30 * 24 * time.Hour
)

func (c Config) withDefaults() Config {
	if c.BindAddress == "" {
		c.BindAddress = DefaultBindAddress
	}
	if c.AdminSocket == "" && c.DataDir != "" {
		c.AdminSocket = filepath.Join(c.DataDir, "admin.sock")
	}
	if c.StoreDriver == "" {
		c.StoreDriver = "sqlite"
	}
	if c.StoreDriver == "sqlite" && c.StoreDSN == "" && c.DataDir != "" {
		c.StoreDSN = filepath.Join(c.DataDir, "signet.db")
	}
	if c.CATTL == 0 {
		c.CATTL = DefaultCATTL
	}
	if c.JWTKeyTTL == 0 {
		c.JWTKeyTTL = DefaultCATTL
	}
	if c.DefaultX509TTL == 0 {
		c.DefaultX509TTL = DefaultX509TTL
	}
	if c.DefaultJWTTTL == 0 {
		c.DefaultJWTTTL = DefaultJWTTTL
	}
	if c.AgentTTL == 0 {
		c.AgentTTL = DefaultAgentTTL
	}
	if c.JoinTokenTTL == 0 {
		c.JoinTokenTTL = DefaultTokenTTL
	}
	if c.AgentReauthWindow == 0 {
		c.AgentReauthWindow = DefaultAgentReauthWindow
	}
	if c.CacheRefresh == 0 {
		c.CacheRefresh = DefaultCacheRefresh
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate reports every problem at once, each naming its field.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.TrustDomain.IsZero() {
		bad("trust_domain is required, for example example.org")
	}
	if c.DataDir == "" {
		bad("data_dir is required, for example /var/lib/signet/server")
	}
	if _, _, err := net.SplitHostPort(c.BindAddress); err != nil {
		bad("bind_address %q is not host:port: %v", c.BindAddress, err)
	}
	if c.HealthAddress != "" {
		if _, _, err := net.SplitHostPort(c.HealthAddress); err != nil {
			bad("health_address %q is not host:port: %v", c.HealthAddress, err)
		}
	}
	if c.BundleEndpointAddress != "" {
		if _, _, err := net.SplitHostPort(c.BundleEndpointAddress); err != nil {
			bad("bundle_endpoint_address %q is not host:port: %v", c.BundleEndpointAddress, err)
		}
	}
	if c.HTTPAddress != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddress); err != nil {
			bad("http_address %q is not host:port: %v", c.HTTPAddress, err)
		}
	}
	if c.UIAddress != "" {
		if err := checkUIAddress(c.UIAddress, c.UIMTLS || c.UIOIDC != nil); err != nil {
			bad("%v", err)
		}
	} else if c.UIMTLS {
		bad("ui_mtls needs ui_address: it configures the console's listener")
	} else if c.UIOIDC != nil {
		bad("ui_oidc needs ui_address: it configures the console's listener")
	}
	switch {
	case c.UIMTLS && c.UIOIDC != nil:
		bad("ui_mtls and ui_oidc are alternatives (admin SVIDs, or people signed in at the OpenID provider): set one")
	case c.UIOIDC != nil && (c.UITLSCertFile == "" || c.UITLSKeyFile == ""):
		bad("ui_oidc needs ui_tls.cert_file and ui_tls.key_file: sign-ins happen over HTTPS with a certificate browsers trust")
	case c.UIOIDC == nil && (c.UITLSCertFile != "" || c.UITLSKeyFile != ""):
		bad("ui_tls is the console's certificate with ui_oidc: set ui_oidc.issuer, or leave ui_tls out")
	}
	if c.UIOIDC != nil {
		if err := c.UIOIDC.Check(); err != nil {
			bad("%v", err)
		}
	}
	if c.HTTPAdvertiseURL != "" {
		if err := checkAdvertiseURL(c.HTTPAdvertiseURL); err != nil {
			bad("%v", err)
		} else if c.HTTPAddress == "" {
			bad("http_advertise_url %q needs http_address: it advertises the HTTPS listener", c.HTTPAdvertiseURL)
		}
	}
	if c.JWTIssuer != "" {
		if _, err := oidcdiscovery.ParseIssuer(c.JWTIssuer); err != nil {
			bad("%v", err)
		} else if c.HTTPAddress == "" {
			bad("jwt_issuer %q needs http_address: OIDC discovery is served on the HTTPS listener", c.JWTIssuer)
		}
	}
	if (c.HTTPTLSCertFile == "") != (c.HTTPTLSKeyFile == "") {
		bad("http_tls: set both cert_file and key_file, or neither (to present the server's own SVID)")
	}
	switch c.StoreDriver {
	case "sqlite":
	case "postgres":
		if c.StoreDSN == "" {
			bad("store.dsn is required with store.driver postgres, for example postgres://signet@db:5432/signet")
		}
	default:
		bad("store.driver %q is not supported: use sqlite or postgres", c.StoreDriver)
	}
	for name, d := range map[string]time.Duration{"ca.ttl": c.CATTL, "ca.jwt_key_ttl": c.JWTKeyTTL,
		"default_x509_ttl": c.DefaultX509TTL, "default_jwt_ttl": c.DefaultJWTTTL, "agent_ttl": c.AgentTTL,
		"join_token_ttl": c.JoinTokenTTL} {
		if d < time.Second {
			bad("%s %s is too short: use at least 1s", name, d)
		}
	}
	if c.CacheRefresh < 10*time.Millisecond {
		bad("cache_refresh %s is too short: use at least 10ms", c.CacheRefresh)
	}
	if c.DefaultX509TTL > c.CATTL/2 {
		bad("default_x509_ttl %s must be at most half of ca.ttl (%s) so rotation can overlap", c.DefaultX509TTL, c.CATTL)
	}
	if c.AgentTTL > c.CATTL/2 {
		bad("agent_ttl %s must be at most half of ca.ttl (%s)", c.AgentTTL, c.CATTL)
	}
	if !c.TrustDomain.IsZero() {
		if err := ci.Validate(c.TrustDomain, c.OIDCIssuers); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkAdvertiseURL accepts https://HOST:PORT (an optional trailing "/"),
// nothing more: no user, path, query or fragment.
func checkAdvertiseURL(raw string) error {
	u, err := brokerclient.ParseURL("http_advertise_url", raw)
	if err != nil {
		return err
	}
	if u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("http_advertise_url %q: want https://HOST:PORT", raw)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("http_advertise_url %q: port must be 1-65535", raw)
	}
	return nil
}

// advertiseURL is the broker URL the server tells its agents: the
// configured one, else https://<addr> (the HTTPS listener's bound address)
// when the configured http_address has a concrete host; "" otherwise.
func advertiseURL(cfg Config, addr net.Addr) string {
	if cfg.HTTPAdvertiseURL != "" {
		return strings.TrimSuffix(cfg.HTTPAdvertiseURL, "/")
	}
	if cfg.HTTPAddress == "" || addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(cfg.HTTPAddress)
	if err != nil || host == "" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return ""
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	return "https://" + net.JoinHostPort(host, port)
}

// checkUIAddress refuses a console address that is not host:port, and a
// non-loopback one (an empty host or 0.0.0.0 listens on every interface)
// unless the console requires admin SVIDs: never anonymous off the host.
func checkUIAddress(addr string, mtls bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ui_address %q is not host:port: %v", addr, err)
	}
	if mtls || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("ui_address %q is not a loopback address: the console is local-only unless ui_mtls is true "+
		"(remote clients then need an admin entry's X509-SVID) or ui_oidc is set (people sign in at the OpenID provider); "+
		"use 127.0.0.1:PORT, or set ui_mtls or ui_oidc", addr)
}
