package main

import (
	"github.com/signet-id/signet/internal/agentcli"
	"github.com/spf13/cobra"
)

func newAgentCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent, or manage attested agents on the server",
		// The attested agents are the nodes: `signet node list` means
		// `signet agent list`.
		SuggestFor: []string{"node", "nodes"},
	}
	run := agentcli.NewAgentRunCmd(stamp())
	admin := newAgentAdminCmds(&conn)
	for _, c := range admin {
		conn.addFlags(c)
	}
	cmd.AddCommand(append([]*cobra.Command{run, newAgentLabelCmd()}, admin...)...)
	return cmd
}
