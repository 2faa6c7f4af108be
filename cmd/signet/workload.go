package main

import (
	"context"
	"net/url"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/agentcli"
)

// workloadConn is agentcli.WorkloadConn (the --socket and --timeout flags of
// commands that talk to the agent's Workload API) for signet's own
// broker-client commands.
type workloadConn struct{ agentcli.WorkloadConn }

func (w *workloadConn) addFlags(cmd *cobra.Command) { w.AddFlags(cmd) }

func (w *workloadConn) brokerURL(cmd *cobra.Command, flag string) (*url.URL, error) {
	return w.BrokerURL(cmd, flag)
}

func (w *workloadConn) client(cmd *cobra.Command) (context.Context, *workloadapi.Client, func(), error) {
	return w.Client(cmd)
}

func workloadErr(err error) error { return agentcli.WorkloadErr(err) }

// newSVIDCmd is the node-side `svid` command (fetch) plus the admin
// commands revoke and revocations, which the slim agent binary leaves out.
func newSVIDCmd() *cobra.Command {
	cmd := agentcli.NewSVIDCmd()
	cmd.Short = "Fetch this process's X509-SVIDs from the Workload API; revoke SVIDs (admin)"
	cmd.AddCommand(newSVIDRevokeCmds()...)
	return cmd
}

func newJWTCmd() *cobra.Command { return agentcli.NewJWTCmd() }
