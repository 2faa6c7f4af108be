package main

import (
	"fmt"
	"strings"

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
		newHealthcheckCmd(),
		newDevCmd(),
		newVersionCmd(),
		newInventoryCmd(),
		newCoverageCmd(),
		newAuditCmd(),
		newScanCmd(),
		newHelperCmd(),
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

// strict makes every command of the tree refuse what it does not know: a
// command group given an unknown subcommand fails (cobra would print help
// and exit 0), and a flag error names the command's help.
func strict(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see: %s --help)", err, cmd.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRunE
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// groupRunE runs a command group: without arguments it shows the group's
// help; with any it fails, naming the subcommands.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	msg := fmt.Sprintf("unknown command %q for %q: use one of %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, ", "))
	}
	return fmt.Errorf("%s", msg)
}
