package agentcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/errkind"
)

// NewHealthcheckCmd builds `healthcheck`: the server's admin socket or an
// agent's Workload API socket, over the gRPC health protocol.
func NewHealthcheckCmd() *cobra.Command {
	var (
		admin   string
		agent   string
		timeout time.Duration
		quiet   bool
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Check that the server (default) or an agent (--agent-socket) is serving; exits 0 when healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var err error
			what := "server"
			if agent != "" {
				what = "agent"
				err = checkAgent(ctx, agent)
			} else {
				err = checkHealth(ctx, admin, "admin socket", "")
			}
			if err != nil {
				return fmt.Errorf("%s is not healthy: %w", what, err)
			}
			if !quiet {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is healthy\n", what)
			}
			return nil
		},
	}
	AddAdminSocketFlag(cmd, &admin)
	cmd.Flags().StringVar(&agent, "agent-socket", "", "check the agent serving this Workload API socket instead of the server")
	timeout = 5 * time.Second
	cmd.Flags().Var(config.DurationFlag(&timeout), "timeout", "how long to wait for an answer")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "print nothing; report through the exit code only")
	return cmd
}

// checkAgent asks the Workload API socket's gRPC health service.
func checkAgent(ctx context.Context, socket string) error {
	p, err := filepath.Abs(socket)
	if err != nil {
		return err
	}
	return checkHealth(ctx, p, "Workload API socket", " (the agent has not synced with the server yet)")
}

// checkHealth runs the gRPC health protocol over a unix socket.
func checkHealth(ctx context.Context, socket, what, notServingHint string) error {
	if _, err := os.Stat(socket); err != nil {
		return fmt.Errorf("no %s at %s", what, socket)
	}
	cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return RPCErr(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s%s", resp.GetStatus(), notServingHint)
	}
	return nil
}

// RPCErr turns a gRPC error into the text a user reads: the error kind's
// public message, saying when the server was unavailable.
func RPCErr(err error) error {
	if err == nil {
		return nil
	}
	k := errkind.FromGRPC(err)
	msg, _ := errkind.Public(k)
	if errkind.Of(k) == errkind.Unavailable {
		return fmt.Errorf("server unavailable: %s", msg)
	}
	return errors.New(msg)
}
