package agentcli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	prettytable "github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"

	"github.com/spf13/cobra"
)

// Defaults shared by the server, the agent and the commands that reach
// them.
const (
	DefaultServerDataDir = "/var/lib/signet/server"
	DefaultAgentDataDir  = "/var/lib/signet/agent"
	DefaultAgentSocket   = "/run/signet/agent.sock"
	AdminSocketEnv       = "SIGNET_ADMIN_SOCKET"
)

// AddOutputFlags registers the output format option of read commands on
// cmd: -o table|json, with --json kept as the alias of -o json; *asJSON
// is true when JSON was asked for. jsonForm describes the JSON form in
// the help ("JSON" when there is nothing more to say).
func AddOutputFlags(cmd *cobra.Command, asJSON *bool, jsonForm string) {
	usage := "output format: table or json"
	if jsonForm != "JSON" {
		usage += " (" + jsonForm + ")"
	}
	cmd.Flags().VarP(outputFlag{asJSON}, "output", "o", usage)
	cmd.Flags().BoolVar(asJSON, "json", false, "print "+jsonForm+" instead of a table (same as -o json)")
}

// outputFlag is the pflag.Value of -o.
type outputFlag struct{ json *bool }

func (f outputFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "table":
		*f.json = false
	case "json":
		*f.json = true
	default:
		return fmt.Errorf("%q is not an output format: use table or json", s)
	}
	return nil
}

func (f outputFlag) String() string {
	if f.json != nil && *f.json {
		return "json"
	}
	return "table"
}

func (f outputFlag) Type() string { return "format" }

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table writes aligned columns; the first row is the header.
func Table(w io.Writer, rows [][]string) error {
	if len(rows) == 0 {
		return nil
	}
	t := prettytable.NewWriter()
	t.SetStyle(tableStyle)
	t.SuppressTrailingSpaces()
	t.AppendHeader(cells(rows[0]))
	for _, r := range rows[1:] {
		t.AppendRow(cells(r))
	}
	_, err := io.WriteString(w, t.Render()+"\n")
	return err
}

// tableStyle is every command's table: a header row, columns two spaces
// apart, no borders, no trailing blanks, cells as given.
var tableStyle = func() prettytable.Style {
	s := prettytable.StyleDefault
	s.Name = "signet"
	s.Box.PaddingLeft, s.Box.PaddingRight = "", "  "
	s.Options = prettytable.Options{}
	s.Format.Header, s.Format.Row, s.Format.Footer = text.FormatDefault, text.FormatDefault, text.FormatDefault
	return s
}()

func cells(r []string) prettytable.Row {
	out := make(prettytable.Row, len(r))
	for i, c := range r {
		out[i] = c
	}
	return out
}

// DefaultAdminSocket is the server's admin socket: $SIGNET_ADMIN_SOCKET,
// else the one in the default server data dir.
func DefaultAdminSocket() string {
	if s := os.Getenv(AdminSocketEnv); s != "" {
		return s
	}
	return DefaultServerDataDir + "/admin.sock"
}

// AddAdminSocketFlag registers --admin-socket (persistent) on cmd.
func AddAdminSocketFlag(cmd *cobra.Command, socket *string) {
	cmd.PersistentFlags().StringVar(socket, "admin-socket", DefaultAdminSocket(),
		"the server's admin socket (env "+AdminSocketEnv+")")
}
