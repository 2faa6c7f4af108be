package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/devenv"
)

func newDevCmd() *cobra.Command {
	var (
		dataDir, trustDomain, logLevel string
		fresh                          bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a server and an agent in one process, with the current user registered",
		Long: `Runs a complete trust domain for development: a server on an embedded store, an agent
attested to it, and a registration entry giving the current user (unix:uid) a SPIFFE ID.
It prints the Workload API socket to export; then ` + "`signet svid fetch`" + ` in another shell
shows your SVID. Not for production: everything lives in one data dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			td, err := spiffeid.TrustDomainFromString(trustDomain)
			if err != nil {
				return fmt.Errorf("--trust-domain %q: %v", trustDomain, err)
			}
			if fresh {
				if err := os.RemoveAll(dataDir); err != nil {
					return fmt.Errorf("--fresh: %w", err)
				}
			}
			log, err := newLogger(os.Stderr, logLevel, "text")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			env, stopped, err := devenv.Start(ctx, devenv.Config{TrustDomain: td, DataDir: dataDir, Logger: log})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, `Signet dev environment is running (trust domain %s).
  Workload API socket:  %s
  Admin socket:         %s
  Agent API:            %s
  Your identity:        %s  (selector unix:uid:%d)

In another shell:
  export SPIFFE_ENDPOINT_SOCKET=unix://%s
  export %s=%s
  signet svid fetch

Press Ctrl-C to stop.
`, td.Name(), env.SocketPath, env.Server.AdminSocket(), env.Server.Addr(), env.UserID, env.UserUID,
				env.SocketPath, adminSocketEnv, env.Server.AdminSocket())
			return <-stopped
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", filepath.Join(os.TempDir(), fmt.Sprintf("signet-dev-%d", os.Getuid())), "where the dev server and agent keep their state")
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "example.org", "trust domain of the dev environment")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	cmd.Flags().BoolVar(&fresh, "fresh", false, "delete the data dir first")
	return cmd
}
