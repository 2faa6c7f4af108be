package main

import (
	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/agentcli"
)

// Set at link time by `make build` and `make release`
// (-X main.version=… -X main.commit=… -X main.buildDate=…); see
// agentcli.Build for what an unstamped build reports.
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

// stamp is this binary's link-time stamps.
func stamp() agentcli.Build {
	return agentcli.Build{Program: "signet", Version: version, Commit: commit, BuildDate: buildDate}
}

func newVersionCmd() *cobra.Command { return agentcli.NewVersionCmd(stamp()) }

// versionString is the version shown by --version.
func versionString() string { return agentcli.ReadBuildInfo(stamp()).Version }
