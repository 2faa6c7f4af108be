package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-id/signet/internal/config"
)

// doctorCheck is one finding of signet doctor: a check that passed, or a
// problem with the command or change that fixes it.
type doctorCheck struct {
	// Check names what was looked at: "config", "data_dir", "key_file"…
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Fix is the command or change that mends a problem; empty when OK.
	Fix string `json:"fix,omitempty"`
}

// doctorReport is what signet doctor prints, for one role.
type doctorReport struct {
	Role     string        `json:"role"` // "server" or "agent"
	Config   string        `json:"config,omitempty"`
	Healthy  bool          `json:"healthy"`
	Problems int           `json:"problems"`
	Checks   []doctorCheck `json:"checks"`
}

func (r *doctorReport) ok(check, format string, args ...any) {
	r.Checks = append(r.Checks, doctorCheck{Check: check, OK: true, Detail: fmt.Sprintf(format, args...)})
}

// problem records a problem: detail says what is wrong, fix what to do.
func (r *doctorReport) problem(check, detail, fix string) {
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") } // one line each
	r.Checks = append(r.Checks, doctorCheck{Check: check, Detail: flat(detail), Fix: flat(fix)})
}

// problemErr records err as a problem. Errors of internal/preflight and
// internal/keyfile end in ": <what to do>"; that part becomes the fix.
func (r *doctorReport) problemErr(check string, err error, fix string) {
	msg := err.Error()
	if fix == "" {
		if i := strings.LastIndex(msg, ": "); i > 0 && hasFixVerb(msg[i+2:]) {
			msg, fix = msg[:i], msg[i+2:]
		}
	}
	r.problem(check, msg, fix)
}

// hasFixVerb reports whether s reads as an instruction (the tail of a
// preflight or keyfile error), not as a further cause.
func hasFixVerb(s string) bool {
	for _, v := range []string{"chmod ", "chown ", "run ", "remove ", "stop ", "choose ", "give ", "create "} {
		if strings.HasPrefix(s, v) {
			return true
		}
	}
	return false
}

func (r *doctorReport) finish() {
	r.Problems = 0
	for _, c := range r.Checks {
		if !c.OK {
			r.Problems++
		}
	}
	r.Healthy = r.Problems == 0
}

// doctor holds what the checks read besides the machine: the clock, and
// the timeout of each network probe.
type doctor struct {
	now     func() time.Time
	timeout time.Duration
}

func newDoctorCmd() *cobra.Command {
	var (
		asServer, asAgent bool
		configPath        string
		out               output
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check a server's or an agent's setup and say how to fix each problem",
		Long: `doctor checks what makes a server or an agent fail, without changing anything:

  server: configuration, data dir ownership and modes, key file modes, store
          reachability and migration level, authority expiry and rotation, the
          clock, and whether the listening addresses can be bound
  agent:  configuration, data dir, the persisted agent SVID, whether the server
          is reachable and trusted (with the exact TLS error), the Workload API
          socket, and the node attestor's prerequisites (TPM device, metadata
          service, token files)

Each problem is one line with its fix. The exit status is 0 when everything is
healthy and 1 otherwise.`,
		Example: `  signet doctor --server --config /etc/signet/server.yaml
  signet doctor --agent --config /etc/signet/agent.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asServer && asAgent {
				return errors.New("--server and --agent: check one role at a time")
			}
			role, err := doctorRole(asServer, asAgent, configPath)
			if err != nil {
				return err
			}
			d := &doctor{now: time.Now, timeout: 5 * time.Second}
			var rep *doctorReport
			if role == "server" {
				rep = d.server(cmd, configPath)
			} else {
				rep = d.agent(cmd, configPath)
			}
			rep.finish()
			if out.json {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				err = writeDoctorText(cmd.OutOrStdout(), rep)
			}
			if err != nil {
				return err
			}
			if !rep.Healthy {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asServer, "server", false, "check the server's setup")
	fl.BoolVar(&asAgent, "agent", false, "check the agent's setup")
	fl.StringVar(&configPath, "config", "", "the server's or agent's YAML configuration file (default: the built-in defaults)")
	out.addFlagsFor(cmd, "the report as JSON")
	return cmd
}

// doctorRole picks the role to check: the flag given, else what the config
// file is (an agent's names server_address), else the one whose default
// data dir exists on this machine.
func doctorRole(asServer, asAgent bool, configPath string) (string, error) {
	switch {
	case asServer:
		return "server", nil
	case asAgent:
		return "agent", nil
	case configPath != "":
		if c, err := config.LoadAgent(configPath); err == nil && c.ServerAddress != "" {
			return "agent", nil
		}
		return "server", nil // its checks report what is wrong with the file
	}
	_, serr := os.Stat(defaultServerDataDir)
	_, aerr := os.Stat(defaultAgentDataDir)
	switch {
	case serr == nil && aerr != nil:
		return "server", nil
	case aerr == nil && serr != nil:
		return "agent", nil
	}
	return "", errors.New("give --server or --agent (and --config FILE): there is no configuration to tell which role to check")
}

// doctorFlags binds a role's defaults on a flag set no user sets, so that
// Merge fills what the config file leaves out, as `run` would.
func doctorFlags[T any](defaults T) *config.Flags[T] {
	return config.BindFlags(pflag.NewFlagSet("doctor", pflag.ContinueOnError), defaults)
}

// writeDoctorText prints one line per check, problems with their fix, and a
// summary.
func writeDoctorText(w io.Writer, r *doctorReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "signet doctor: %s", r.Role)
	if r.Config != "" {
		fmt.Fprintf(&b, " (%s)", r.Config)
	}
	b.WriteString("\n")
	for _, c := range r.Checks {
		if c.OK {
			fmt.Fprintf(&b, "ok       %-10s %s\n", c.Check, c.Detail)
			continue
		}
		fmt.Fprintf(&b, "PROBLEM  %-10s %s", c.Check, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(&b, " -- fix: %s", c.Fix)
		}
		b.WriteString("\n")
	}
	switch r.Problems {
	case 0:
		b.WriteString("healthy\n")
	case 1:
		b.WriteString("1 problem\n")
	default:
		fmt.Fprintf(&b, "%d problems\n", r.Problems)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
