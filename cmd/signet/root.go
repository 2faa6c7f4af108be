package main

import (
	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/agentcli"
)

// newRootCmd builds the command tree. Each command group lives in its own
// file as a newXxxCmd constructor; this is the one place they are listed.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "signet",
		Short:         "Workload identity for everything: SPIFFE IDs and short-lived credentials",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("signet {{.Version}}\n")
	root.AddCommand(
		newServerCmd(),
		newAgentCmd(),
		newEntryCmd(),
		newTokenCmd(),
		newBundleCmd(),
		newFederationCmd(),
		newAuthorityCmd(),
		newSVIDCmd(),
		newJWTCmd(),
		agentcli.NewHealthcheckCmd(),
		newDevCmd(),
		newVersionCmd(),
		newInventoryCmd(),
		newCoverageCmd(),
		newAuditCmd(),
		newScanCmd(),
		agentcli.NewHelperCmd(),
		newGatewayCmd(),
		newPolicyCmd(),
		newCICmd(),
		newDoctorCmd(),
		newSecretCmd(),
		newLeaseCmd(),
		newCredentialCmd(),
		newExecCmd(),
		newSSHCmd(),
		newCompletionCmd(),
	)
	strict(root)
	return root
}

// strict makes every command of the tree refuse what it does not know
// (agentcli.Strict).
func strict(root *cobra.Command) { agentcli.Strict(root) }
