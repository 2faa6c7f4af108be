package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/agentcli"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/console"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/server"
)

func newServerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "server", Short: "Run the Signet server (the trust domain's CA)"}
	cmd.AddCommand(newServerRunCmd(), newServerKEKCmd())
	return cmd
}

// serverFlags are `server run`'s flags: --config, and one flag per key of
// the configuration file (config.Server's flag tags).
type serverFlags struct {
	configPath string
	flags      *config.Flags[config.Server]
}

// serverDefaults are what `server run` uses for keys neither a flag nor
// the file sets; shown in help.
func serverDefaults() config.Server {
	return config.Server{
		DataDir: defaultServerDataDir, BindAddress: server.DefaultBindAddress,
		Store: config.Store{Driver: "sqlite"}, CA: config.CA{KeyType: "ec-p256", TTL: config.Duration(server.DefaultCATTL),
			JWTKeyTTL: config.Duration(server.DefaultCATTL)},
		DefaultX509TTL: config.Duration(server.DefaultX509TTL), DefaultJWTTTL: config.Duration(server.DefaultJWTTTL),
		AgentTTL: config.Duration(server.DefaultAgentTTL), JoinTokenTTL: config.Duration(server.DefaultTokenTTL),
		AgentReauthWindow: config.Duration(server.DefaultAgentReauthWindow),
		Log:               config.Log{Level: "info"},
	}
}

func newServerRunCmd() *cobra.Command { return serverRunCmd(&serverFlags{}) }

// serverRunCmd builds `server run` over f, which holds its flags.
func serverRunCmd(f *serverFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the server until interrupted",
		Example: `  signet server run --trust-domain example.org --data-dir /var/lib/signet/server
  signet server run --config /etc/signet/server.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, c, err := f.resolve()
			if err != nil {
				return err
			}
			log, err := newLogger(os.Stderr, c.Log.Level, c.Log.Format)
			if err != nil {
				return err
			}
			cfg.Logger = log
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			tracing, flush, err := agentcli.StartTracing(ctx, "signet-server", log)
			if err != nil {
				return err
			}
			defer flush()
			cfg.TracerProvider = tracing.Provider()
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			if srv.Broker() != nil {
				// SIGHUP reloads the broker policy; a policy that does not
				// compile is logged and the old one stays.
				hup := make(chan os.Signal, 1)
				signal.Notify(hup, syscall.SIGHUP)
				defer signal.Stop(hup)
				go func() {
					for {
						select {
						case <-hup:
							_ = srv.ReloadPolicy()
						case <-ctx.Done():
							return
						}
					}
				}()
			}
			return srv.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "YAML configuration file; flags given explicitly override its keys")
	f.flags = config.BindFlags(fl, serverDefaults())
	return cmd
}

// resolve merges the config file and the flags given explicitly, and
// returns the server configuration with the merged file.
func (f *serverFlags) resolve() (server.Config, config.Server, error) {
	var c config.Server
	if f.configPath != "" {
		fc, err := config.LoadServer(f.configPath)
		if err != nil {
			return server.Config{}, c, err
		}
		c = *fc
	}
	f.flags.Merge(&c)
	if c.TrustDomain == "" {
		return server.Config{}, c, fmt.Errorf("--trust-domain is required (or trust_domain in --config), e.g. --trust-domain example.org")
	}
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return server.Config{}, c, fmt.Errorf("%s %q: %v (want a lower-case DNS-like name such as example.org)", f.flags.Name("trust-domain"), c.TrustDomain, err)
	}
	if c.Store.DSNFile != "" {
		if c.Store.DSN != "" {
			return server.Config{}, c, fmt.Errorf("%s and %s are both set: give the connection string once", f.flags.Name("store-dsn"), f.flags.Name("store-dsn-file"))
		}
		if c.Store.DSN, err = readDSNFile(c.Store.DSNFile); err != nil {
			return server.Config{}, c, fmt.Errorf("%s: %w", f.flags.Name("store-dsn-file"), err)
		}
	}
	sc := server.Config{
		TrustDomain: td, DataDir: c.DataDir, BindAddress: c.BindAddress, AdminSocket: c.AdminSocket,
		AdminUIDs: c.AdminUIDs, HealthAddress: c.HealthAddress,
		HTTPAddress: c.HTTPAddress, HTTPAdvertiseURL: c.HTTPAdvertiseURL, HTTPTLSCertFile: c.HTTPTLS.CertFile, HTTPTLSKeyFile: c.HTTPTLS.KeyFile, JWTIssuer: c.JWTIssuer, UIAddress: c.UIAddress, UIMTLS: c.UIMTLS, BundleEndpointAddress: c.BundleEndpointAddress, StoreDriver: c.Store.Driver, StoreDSN: c.Store.DSN,
		KeyType: c.CA.KeyType, CATTL: time.Duration(c.CA.TTL), JWTKeyTTL: time.Duration(c.CA.JWTKeyTTL),
		DefaultX509TTL: time.Duration(c.DefaultX509TTL), DefaultJWTTTL: time.Duration(c.DefaultJWTTTL),
		AgentTTL: time.Duration(c.AgentTTL), JoinTokenTTL: time.Duration(c.JoinTokenTTL),
		AgentReauthWindow: time.Duration(c.AgentReauthWindow),
		KeyManager:        c.KeyManager, UpstreamAuthority: c.UpstreamAuthority,
		NodeAttestors: c.NodeAttestors, OIDCIssuers: c.OIDCIssuers,
		Broker: server.BrokerConfig{KEKFile: c.Broker.KEKFile, PolicyFile: c.Broker.PolicyFile, Credentials: c.Broker.Credentials,
			IssueTimeout: time.Duration(c.Broker.IssueTimeout)},
	}
	if sc.UIOIDC, err = consoleOIDC(c.UIOIDC); err != nil {
		return server.Config{}, c, err
	}
	sc.UITLSCertFile, sc.UITLSKeyFile = c.UITLS.CertFile, c.UITLS.KeyFile
	return sc, c, nil
}

// maxClientSecret bounds ui_oidc.client_secret_file.
const maxClientSecret = 4 << 10

// consoleOIDC builds the console's OIDC login from the ui_oidc section:
// nil when issuer is unset (and then nothing else may be). The client
// secret file must be private (0600); ca_bundle_path replaces the system's
// roots for the provider.
func consoleOIDC(u config.UIOIDC) (*console.OIDCConfig, error) {
	if u.Issuer == "" {
		if !reflect.ValueOf(u).IsZero() {
			return nil, errors.New("ui_oidc.issuer is required when ui_oidc is set: the OpenID provider people sign in at")
		}
		return nil, nil
	}
	o := &console.OIDCConfig{Issuer: u.Issuer, ClientID: u.ClientID, RedirectURL: u.RedirectURL, Scopes: u.Scopes,
		AllowedSubjects: u.AllowedSubjects, AllowedEmails: u.AllowedEmails, AllowedGroups: u.AllowedGroups,
		GroupsClaim: u.GroupsClaim, SessionTTL: time.Duration(u.SessionTTL)}
	if u.ClientSecretFile != "" {
		b, err := keyfile.ReadPrivate(u.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("ui_oidc.client_secret_file: %w", err)
		}
		o.ClientSecret = strings.TrimSpace(string(b))
		clear(b)
		if o.ClientSecret == "" || len(o.ClientSecret) > maxClientSecret {
			return nil, fmt.Errorf("ui_oidc.client_secret_file %s: want the client secret (1 to %d bytes)", u.ClientSecretFile, maxClientSecret)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u.CABundlePath != "" {
		pem, err := keyfile.Read(u.CABundlePath)
		if err != nil {
			return nil, fmt.Errorf("ui_oidc.ca_bundle_path: %w", err)
		}
		roots, err := keyfile.Certificates(u.CABundlePath, pem)
		if err != nil {
			return nil, fmt.Errorf("ui_oidc.ca_bundle_path: %w", err)
		}
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	o.HTTPClient = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	return o, nil
}

// maxDSNFile bounds a store.dsn_file.
const maxDSNFile = 64 << 10

// readDSNFile reads a connection string from path: its content with
// surrounding white space removed, which must not be empty.
func readDSNFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDSNFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxDSNFile {
		return "", fmt.Errorf("%s is over %d bytes: not a connection string", path, maxDSNFile)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("%s is empty: want the connection string, e.g. postgres://signet@db:5432/signet", path)
	}
	return dsn, nil
}
