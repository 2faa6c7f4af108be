package agentcli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-id/signet/internal/suggest"
)

// Strict makes every command of the tree refuse what it does not know: a
// command group given an unknown subcommand fails (cobra would print help
// and exit 0), and a flag error names the command's help.
func Strict(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if name, ok := strings.CutPrefix(err.Error(), "unknown flag: --"); ok {
			if s := closestFlag(cmd, name); s != "" {
				return fmt.Errorf("%w: did you mean --%s? (see: %s --help)", err, s, cmd.CommandPath())
			}
		}
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

// closestFlag returns the name of the flag of cmd (its own or inherited)
// that name probably misspells, or "".
func closestFlag(cmd *cobra.Command, name string) string {
	var names []string
	add := func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	}
	cmd.LocalFlags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	return suggest.Closest(name, names)
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
