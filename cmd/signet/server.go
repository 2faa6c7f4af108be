package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/server"
)

func newServerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "server", Short: "Run the Signet server (the trust domain's CA)"}
	cmd.AddCommand(newServerRunCmd())
	return cmd
}

// serverFlags are `server run`'s flags; each overrides the config file's
// field of the same name.
type serverFlags struct {
	configPath string
	file       config.Server
}

func newServerRunCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the server until interrupted",
		Example: `  signet server run --trust-domain example.org --data-dir /var/lib/signet/server
  signet server run --config /etc/signet/server.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logLevel, logFormat, err := f.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := newLogger(os.Stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg.Logger = log
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "YAML configuration file; flags override its fields")
	fl.StringVar(&f.file.TrustDomain, "trust-domain", "", "trust domain this server is the CA of, e.g. example.org")
	fl.StringVar(&f.file.DataDir, "data-dir", defaultServerDataDir, "directory for the store, CA keys and admin socket")
	fl.StringVar(&f.file.BindAddress, "bind-address", server.DefaultBindAddress, "agent API listen address")
	fl.StringVar(&f.file.AdminSocket, "admin-socket", "", "admin API unix socket (default DATA_DIR/admin.sock)")
	fl.StringVar(&f.file.HealthAddress, "health-address", "", "serve /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:8082")
	fl.StringVar(&f.file.Store.Driver, "store-driver", "sqlite", "sqlite or postgres")
	fl.StringVar(&f.file.Store.DSN, "store-dsn", "", "PostgreSQL connection string (or SQLite path; default DATA_DIR/signet.db)")
	fl.StringVar(&f.file.CA.KeyType, "ca-key-type", "", "ec-p256 (default), ec-p384, rsa-2048 or rsa-4096")
	fl.StringVar(&f.file.Log.Level, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.file.Log.Format, "log-format", "", "text or json (default: text on a terminal, else json)")
	durationFlag(fl, (*time.Duration)(&f.file.CA.TTL), "ca-ttl", "CA certificate lifetime (default 24h)")
	durationFlag(fl, (*time.Duration)(&f.file.DefaultX509TTL), "default-x509-ttl", "X509-SVID lifetime for entries that set none (default 1h)")
	durationFlag(fl, (*time.Duration)(&f.file.DefaultJWTTTL), "default-jwt-ttl", "JWT-SVID lifetime for entries that set none (default 5m)")
	durationFlag(fl, (*time.Duration)(&f.file.AgentTTL), "agent-ttl", "agent SVID lifetime (default 1h)")
	return cmd
}

func durationFlag(fl *pflag.FlagSet, p *time.Duration, name, usage string) {
	fl.DurationVar(p, name, 0, usage)
}

// resolve merges the config file and the flags given explicitly.
func (f *serverFlags) resolve(fl *pflag.FlagSet) (server.Config, string, string, error) {
	c := f.file
	if f.configPath != "" {
		fc, err := config.LoadServer(f.configPath)
		if err != nil {
			return server.Config{}, "", "", err
		}
		c = *fc
		overrides := map[string]func(){
			"trust-domain": func() { c.TrustDomain = f.file.TrustDomain }, "data-dir": func() { c.DataDir = f.file.DataDir },
			"bind-address": func() { c.BindAddress = f.file.BindAddress }, "admin-socket": func() { c.AdminSocket = f.file.AdminSocket },
			"health-address": func() { c.HealthAddress = f.file.HealthAddress },
			"store-driver":   func() { c.Store.Driver = f.file.Store.Driver }, "store-dsn": func() { c.Store.DSN = f.file.Store.DSN },
			"ca-key-type": func() { c.CA.KeyType = f.file.CA.KeyType }, "log-level": func() { c.Log.Level = f.file.Log.Level },
			"log-format": func() { c.Log.Format = f.file.Log.Format }, "ca-ttl": func() { c.CA.TTL = f.file.CA.TTL },
			"default-x509-ttl": func() { c.DefaultX509TTL = f.file.DefaultX509TTL },
			"default-jwt-ttl":  func() { c.DefaultJWTTTL = f.file.DefaultJWTTTL }, "agent-ttl": func() { c.AgentTTL = f.file.AgentTTL },
		}
		for name, apply := range overrides {
			if fl.Changed(name) {
				apply()
			}
		}
		if c.DataDir == "" {
			c.DataDir = defaultServerDataDir
		}
	}
	if c.TrustDomain == "" {
		return server.Config{}, "", "", fmt.Errorf("--trust-domain is required (or trust_domain in --config), e.g. --trust-domain example.org")
	}
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return server.Config{}, "", "", fmt.Errorf("--trust-domain %q: %v (want a lower-case DNS-like name such as example.org)", c.TrustDomain, err)
	}
	return server.Config{
		TrustDomain: td, DataDir: c.DataDir, BindAddress: c.BindAddress, AdminSocket: c.AdminSocket,
		AdminUIDs: c.AdminUIDs, HealthAddress: c.HealthAddress, StoreDriver: c.Store.Driver, StoreDSN: c.Store.DSN,
		KeyType: c.CA.KeyType, CATTL: time.Duration(c.CA.TTL), JWTKeyTTL: time.Duration(c.CA.JWTKeyTTL),
		DefaultX509TTL: time.Duration(c.DefaultX509TTL), DefaultJWTTTL: time.Duration(c.DefaultJWTTTL),
		AgentTTL: time.Duration(c.AgentTTL), JoinTokenTTL: time.Duration(c.JoinTokenTTL),
		KeyManager: c.KeyManager, UpstreamAuthority: c.UpstreamAuthority,
		NodeAttestors: c.NodeAttestors,
	}, c.Log.Level, c.Log.Format, nil
}
