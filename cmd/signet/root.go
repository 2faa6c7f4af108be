package main

import (
	"github.com/spf13/cobra"
)

// newRootCmd builds the command tree. Each command group lives in its own
// file as a newXxxCmd constructor; this is the one place they are listed.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "signet",
		Short:         "Workload identity for everything: SPIFFE IDs and short-lived credentials",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServerCmd(),
		newAgentCmd(),
		newEntryCmd(),
		newTokenCmd(),
		newBundleCmd(),
		newAuthorityCmd(),
		newSVIDCmd(),
		newJWTCmd(),
		newHealthcheckCmd(),
		newDevCmd(),
		newVersionCmd(),
		newInventoryCmd(),
		newCoverageCmd(),
		newAuditCmd(),
		newScanCmd(),
	)
	return root
}
