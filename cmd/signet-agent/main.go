// Command signet-agent is Signet's slim node-side binary: the agent (node
// attestation, sync, SVID cache, the Workload API and workload attestors)
// and the commands a node needs beside it (svid and jwt fetch, helper,
// healthcheck, version). It links no store, CA, SQL driver, scanner,
// console or policy engine (internal/deptest checks it), so that every
// node pays only for the agent. Its commands are the same constructors as
// signet's: `signet-agent run` is `signet agent run`.
//
// Release builds (make build, make release, the Dockerfile) use the
// Makefile's AGENT_TAGS (grpcnotrace: no golang.org/x/net/trace, no
// html/template); a plain `go build` works too and links a little more.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/agentcli"
)

// Set at link time by `make build` and `make release`
// (-X main.version=… -X main.commit=… -X main.buildDate=…).
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the CLI with args and returns the process exit code.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "signet-agent: "+err.Error())
		return 1
	}
	return 0
}

// newRootCmd builds the command tree: `run` is `signet agent run`, the
// others are signet's commands of the same names.
func newRootCmd() *cobra.Command {
	b := agentcli.Build{Program: "signet-agent", Version: version, Commit: commit, BuildDate: buildDate}
	root := &cobra.Command{
		Use:           "signet-agent",
		Short:         "The Signet node agent: attests this node, serves the SPIFFE Workload API",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       agentcli.ReadBuildInfo(b).Version,
	}
	root.SetVersionTemplate("signet-agent {{.Version}}\n")
	runCmd := agentcli.NewAgentRunCmd(b)
	runCmd.Example = "  signet-agent run --config /etc/signet/agent.yaml"
	root.AddCommand(
		runCmd,
		agentcli.NewSVIDCmd(),
		agentcli.NewJWTCmd(),
		agentcli.NewHealthcheckCmd(),
		agentcli.NewHelperCmd(),
		agentcli.NewVersionCmd(b),
	)
	agentcli.Strict(root)
	return root
}
