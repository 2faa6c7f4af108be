package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newCompletionCmd is `signet completion SHELL`: cobra's generators for
// bash, zsh, fish and PowerShell. It replaces cobra's default completion
// command so the shells are named in one place and an unknown one fails
// with the list.
func newCompletionCmd() *cobra.Command {
	shells := []string{"bash", "zsh", "fish", "powershell"}
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script for a shell. For example:

  bash:        source <(signet completion bash)
               (or: signet completion bash > /etc/bash_completion.d/signet)
  zsh:         signet completion zsh > "${fpath[1]}/_signet"
  fish:        signet completion fish > ~/.config/fish/completions/signet.fish
  powershell:  signet completion powershell | Out-String | Invoke-Expression`,
		ValidArgs:             shells,
		DisableFlagsInUseLine: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("give one shell: bash, zsh, fish or powershell")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return fmt.Errorf("unknown shell %q: use bash, zsh, fish or powershell", args[0])
		},
	}
}
