package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
)

// Set at link time by `make build` and `make release`
// (-X main.version=… -X main.commit=… -X main.buildDate=…). When a binary
// is built without them (go build, go install), buildInfo falls back to
// what the Go toolchain stamped: the module version and the VCS revision
// and commit time (-buildvcs).
var (
	version   = "dev"
	commit    = ""
	buildDate = ""
)

// buildInfo is what `signet version` reports.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"` // RFC 3339, the commit's time for release builds
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
	Modified  bool   `json:"modified,omitempty"`
}

// readBuildInfo merges the link-time stamps with the toolchain's build
// information; the link-time stamps win.
func readBuildInfo() buildInfo {
	bi := buildInfo{Version: version, Commit: commit, BuildDate: buildDate,
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

func newVersionCmd() *cobra.Command {
	var o output
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the signet version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi := readBuildInfo()
			out := cmd.OutOrStdout()
			if o.json {
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
			_, err := fmt.Fprintf(out, "signet %s\n  commit:     %s\n  build date: %s\n  go:         %s\n  platform:   %s\n",
				bi.Version, c, d, bi.GoVersion, bi.Platform)
			return err
		},
	}
	o.addFlags(cmd)
	return cmd
}

// versionString is the version shown by --version.
func versionString() string { return readBuildInfo().Version }
