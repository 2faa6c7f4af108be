package agentcli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
)

// Build is a binary's link-time stamps: each main package (signet,
// signet-agent) has them set by `make build` and `make release`
// (-X main.version=… -X main.commit=… -X main.buildDate=…) and passes them
// here. Empty fields (go build, go install) fall back to what the Go
// toolchain stamped: the module version and the VCS revision and commit
// time (-buildvcs).
type Build struct {
	Program   string // the binary's name, shown by version ("signet", "signet-agent")
	Version   string // "dev" or "" when not stamped
	Commit    string
	BuildDate string
}

// BuildInfo is what `version` reports.
type BuildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"` // RFC 3339, the commit's time for release builds
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
	Modified  bool   `json:"modified,omitempty"`
}

// ReadBuildInfo merges the link-time stamps with the toolchain's build
// information; the link-time stamps win.
func ReadBuildInfo(b Build) BuildInfo {
	if b.Version == "" {
		b.Version = "dev"
	}
	bi := BuildInfo{Version: b.Version, Commit: b.Commit, BuildDate: b.BuildDate,
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	if bi.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		bi.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if bi.Commit == "" {
				bi.Commit = s.Value
			}
		case "vcs.time":
			if bi.BuildDate == "" {
				bi.BuildDate = s.Value
			}
		case "vcs.modified":
			bi.Modified = s.Value == "true"
		}
	}
	return bi
}

// NewVersionCmd builds `version` for the binary stamped b.
func NewVersionCmd(b Build) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the " + b.Program + " version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := ReadBuildInfo(b)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(bi)
			}
			c, d := bi.Commit, bi.BuildDate
			if c == "" {
				c = "unknown"
			}
			if bi.Modified {
				c += " (modified)"
			}
			if d == "" {
				d = "unknown"
			} else if t, err := time.Parse(time.RFC3339, d); err == nil {
				d = t.UTC().Format(time.RFC3339)
			}
			_, err := fmt.Fprintf(out, "%s %s\n  commit:     %s\n  build date: %s\n  go:         %s\n  platform:   %s\n",
				b.Program, bi.Version, c, d, bi.GoVersion, bi.Platform)
			return err
		},
	}
	AddOutputFlags(cmd, &asJSON, "JSON")
	return cmd
}
