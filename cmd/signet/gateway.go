package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/agentcli"
	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/gateway"
)

func newGatewayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "SPIFFE mTLS in front of and out of an application that cannot do it",
	}
	cmd.AddCommand(newGatewayRunCmd())
	return cmd
}

func newGatewayRunCmd() *cobra.Command {
	var (
		configPath, logLevel, logFormat string
		timeout                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run --config gateway.yaml",
		Short: "Serve the ingress and egress routes of gateway.yaml with the SVID the agent issues this process",
		Long: `Ingress routes terminate SPIFFE mTLS (TLS 1.3), authorize the peer's SPIFFE ID with
CEL allow rules and forward to the application (protocol http adds
X-Forwarded-Client-Spiffe-Id; tcp copies bytes). Egress tcp routes carry the
application's plain connections over SPIFFE mTLS to an upstream with a given
SPIFFE ID. Egress postgres routes let the application log in with nothing and
log in upstream as a database user leased from the broker (broker_url, else
$SIGNET_BROKER_URL, else the URL the agent learned), renewed in the background;
egress http routes add a brokered credential as a header to each request to an
https upstream. See docs/gateway.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return fmt.Errorf("--config is required: the gateway.yaml to run (see docs/gateway.md)")
			}
			cfg, err := gateway.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			addr, err := agentcli.HelperAddr(cfg.AgentSocket)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sctx, cancel := context.WithTimeout(ctx, timeout)
			src, err := workloadapi.NewX509Source(sctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
			cancel()
			if err != nil {
				return fmt.Errorf("no X.509-SVID from the agent at %s within --timeout %s: %w (is the agent running, and is there an entry for this process?)", addr, timeout, err)
			}
			defer src.Close()
			// Ingress refuses revoked peers: the agent pushes its revocations.
			revs := gateway.NewAgentRevocations(addr, log)
			go revs.Run(ctx)
			select {
			case <-revs.Ready():
			case <-time.After(timeout):
				log.Warn("no SVID revocations from the agent yet: refusing revoked peers once they arrive")
			case <-ctx.Done():
				return nil
			}
			g, err := gateway.New(cfg, src, gateway.Options{Logger: log, LearnedBrokerURL: brokerclient.FromAgent(addr), Revoked: revs.Revoked})
			if err != nil {
				return err
			}
			return g.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "gateway.yaml (required)")
	timeout = time.Minute
	fl.Var(config.DurationFlag(&timeout), "timeout", "how long to wait for the gateway's first SVID from the agent")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&logFormat, "log-format", "", "text or json (default: text on a terminal, else json)")
	return cmd
}
