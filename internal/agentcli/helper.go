package agentcli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/helper"
)

// NewHelperCmd builds `helper` (helper run).
func NewHelperCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "helper",
		Short: "Keep SVID and credential files fresh for an application that reads them from disk",
	}
	cmd.AddCommand(newHelperRunCmd())
	return cmd
}

func newHelperRunCmd() *cobra.Command {
	var (
		configPath, logLevel, logFormat string
		once                            bool
		timeout                         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run --config helper.yaml [--once]",
		Short: "Write X.509-SVIDs, bundles, keystores, JWT-SVIDs and brokered credentials to files and reload the application on change",
		Long: `Write the files helper.yaml names from the agent's Workload API and the credential
broker and keep them fresh: X.509 files are replaced together on every rotation or
bundle change, JWT files at half their token's lifetime, credential files (rendered
through their template) with a new lease at two thirds of the current one's, and
on_change runs once after each complete change.
With --once, write everything once (and run on_change once), then exit: 0 when
every file was written, non-zero with the reason otherwise (init containers, cron).
The broker is broker_url, else $SIGNET_BROKER_URL, else the URL the agent learned
from its server. See docs/helper.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return fmt.Errorf("--config is required: the helper.yaml to run (see docs/helper.md)")
			}
			cfg, err := helper.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log, err := NewLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return err
			}
			addr, err := HelperAddr(cfg.AgentSocket)
			if err != nil {
				return err
			}
			h, err := helper.New(cfg, helper.Options{Addr: addr, Logger: log})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if once {
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				if err := h.Once(ctx); err != nil {
					return fmt.Errorf("helper --once: %w", err)
				}
				return nil
			}
			return h.Run(ctx)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configPath, "config", "", "helper.yaml (required)")
	fl.BoolVar(&once, "once", false, "write every file once, run on_change once and exit")
	timeout = time.Minute
	fl.Var(config.DurationFlag(&timeout), "timeout", "with --once: how long to keep trying an unreachable or unready agent or broker")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&logFormat, "log-format", "", "text or json (default: text on a terminal, else json)")
	return cmd
}

// HelperAddr resolves the Workload API address: agent_socket (a path, or
// a unix:// address), else
// $SPIFFE_ENDPOINT_SOCKET, else the agent's default socket.
func HelperAddr(socket string) (string, error) {
	switch {
	case strings.HasPrefix(socket, "unix://"):
		return socket, nil
	case socket != "":
		p, err := filepath.Abs(socket)
		if err != nil {
			return "", fmt.Errorf("agent_socket: %w", err)
		}
		return "unix://" + p, nil
	case os.Getenv(endpointEnv) != "":
		return os.Getenv(endpointEnv), nil
	}
	return "unix://" + DefaultAgentSocket, nil
}
