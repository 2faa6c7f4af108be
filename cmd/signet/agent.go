package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/builtin"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/healthz"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

func newAgentCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent, or manage attested agents on the server",
	}
	run := newAgentRunCmd()
	admin := newAgentAdminCmds(&conn)
	for _, c := range admin {
		conn.addFlags(c)
	}
	cmd.AddCommand(append([]*cobra.Command{run, newAgentLabelCmd()}, admin...)...)
	return cmd
}

type agentFlags struct {
	configPath string
	file       config.Agent
}

func newAgentRunCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: attest this node, sync its entries and serve the Workload API",
		Example: `  signet agent run --server-address signet.example.org:8081 --trust-bundle bundle.pem \
      --join-token "$TOKEN" --socket /run/signet/agent.sock --data-dir /var/lib/signet/agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.resolve(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := newLogger(os.Stderr, c.Log.Level, c.Log.Format)
			if err != nil {
				return err
			}
			cfg := agent.Config{
				ServerAddress: c.ServerAddress, TrustDomain: c.TrustDomain, JoinToken: c.JoinToken,
				DataDir: c.DataDir, SocketPath: c.Socket, SyncInterval: time.Duration(c.SyncInterval), Logger: log,
				AttestTimeout: time.Duration(c.AttestTimeout),
			}
			if c.TrustBundle != "" {
				if cfg.TrustBundle, err = readPEMCerts(c.TrustBundle); err != nil {
					return fmt.Errorf("--trust-bundle: %w", err)
				}
			}
			if cfg.NodeAttestor, err = nodeAttestorFromFile(c.NodeAttestor, log); err != nil {
				return err
			}
			ux, err := unix.New(unix.DefaultConfig(), log)
			if err != nil {
				return err
			}
			cfg.Attestors = []workloadattest.Attestor{ux}
			var reg *prometheus.Registry
			if c.HealthAddress != "" {
				reg = prometheus.NewRegistry()
				cfg.Registerer = reg
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			var health *healthz.Server
			if c.HealthAddress != "" {
				ready := map[string]healthz.Check{"synced": func(context.Context) error {
					if !a.Ready() {
						return errors.New("not synced with the server yet")
					}
					return nil
				}}
				if health, err = healthz.Listen(c.HealthAddress, healthz.Handler(ready, reg)); err != nil {
					return err
				}
				defer health.Close()
			}
			return runAgent(cmd.Context(), a, health)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "YAML configuration file; flags override its fields")
	fl.StringVar(&f.file.ServerAddress, "server-address", "", "the server's agent API, host:port")
	fl.StringVar(&f.file.TrustBundle, "trust-bundle", "", "PEM trust bundle to bootstrap trust in the server (from `signet bundle show`)")
	fl.StringVar(&f.file.TrustDomain, "trust-domain", "", "trust domain (default: read from the trust bundle)")
	fl.StringVar(&f.file.JoinToken, "join-token", "", "single-use join token (needed only until the agent holds an SVID)")
	fl.StringVar(&f.file.DataDir, "data-dir", defaultAgentDataDir, "directory for the agent's SVID and state")
	fl.StringVar(&f.file.Socket, "socket", defaultAgentSocket, "Workload API unix socket")
	fl.StringVar(&f.file.HealthAddress, "health-address", "", "serve /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:8083")
	fl.DurationVar((*time.Duration)(&f.file.SyncInterval), "sync-interval", 0, "how often to sync with the server (default 5s)")
	fl.DurationVar((*time.Duration)(&f.file.AttestTimeout), "attest-timeout", 0, "how long to keep trying an unreachable server before the first attestation fails (default 1m)")
	fl.StringVar(&f.file.Log.Level, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.file.Log.Format, "log-format", "", "text or json (default: text on a terminal, else json)")
	return cmd
}

func (f *agentFlags) resolve(fl *pflag.FlagSet) (config.Agent, error) {
	c := f.file
	if f.configPath != "" {
		fc, err := config.LoadAgent(f.configPath)
		if err != nil {
			return c, err
		}
		merged := *fc
		overrides := map[string]func(){
			"server-address": func() { merged.ServerAddress = c.ServerAddress }, "trust-bundle": func() { merged.TrustBundle = c.TrustBundle },
			"trust-domain": func() { merged.TrustDomain = c.TrustDomain }, "join-token": func() { merged.JoinToken = c.JoinToken },
			"data-dir": func() { merged.DataDir = c.DataDir }, "socket": func() { merged.Socket = c.Socket },
			"sync-interval": func() { merged.SyncInterval = c.SyncInterval }, "attest-timeout": func() { merged.AttestTimeout = c.AttestTimeout }, "log-level": func() { merged.Log.Level = c.Log.Level },
			"log-format": func() { merged.Log.Format = c.Log.Format }, "health-address": func() { merged.HealthAddress = c.HealthAddress },
		}
		for name, apply := range overrides {
			if fl.Changed(name) {
				apply()
			}
		}
		if merged.DataDir == "" {
			merged.DataDir = defaultAgentDataDir
		}
		if merged.Socket == "" {
			merged.Socket = defaultAgentSocket
		}
		c = merged
	}
	if c.ServerAddress == "" {
		return c, fmt.Errorf("--server-address is required (or server_address in --config), e.g. signet.example.org:8081")
	}
	if c.JoinToken == "" {
		c.JoinToken = os.Getenv("SIGNET_JOIN_TOKEN")
	}
	return c, nil
}

// nodeAttestorFromFile builds the node attestor of the node_attestor
// section (nil when the section is absent: a join token, if any, is used).
func nodeAttestorFromFile(section config.Plugins, log *slog.Logger) (nodeattest.Attestor, error) {
	names := section.Names()
	switch len(names) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%s: configure exactly one node attestor, not %d (%s)", builtin.NodeAttestorKey, len(names), strings.Join(names, ", "))
	}
	reg, err := builtin.NodeAttestors()
	if err != nil {
		return nil, err
	}
	n := section[names[0]]
	a, err := reg.Build(builtin.AttestorDeps{Log: log}, names[0], &n)
	if err != nil {
		return nil, fmt.Errorf("invalid agent configuration:\n%w", err)
	}
	return a, nil
}

// runAgent runs the agent, and its health endpoints when given, until a
// signal or the agent stops.
func runAgent(parent context.Context, a *agent.Agent, health *healthz.Server) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if health == nil {
		return a.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- health.Run(ctx) }()
	err := a.Run(ctx)
	cancel()
	if herr := <-done; err == nil {
		err = herr
	}
	return err
}

// readPEMCerts reads every CERTIFICATE block of a PEM file.
func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %v", path, len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM CERTIFICATE blocks: create it with `signet bundle show > bundle.pem`", path)
	}
	return certs, nil
}
