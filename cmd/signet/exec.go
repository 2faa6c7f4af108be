package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/execsup"
)

// execFlags are the flags of `signet exec`.
type execFlags struct {
	wl          workloadConn
	broker      string
	credentials []string
	envs        []string
	contexts    []string
	ttl         time.Duration
	restartSig  string
	grace       time.Duration
	logLevel    string
	logFormat   string
}

func newExecCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec --credential NAME --env VAR=TEMPLATE ... -- COMMAND [ARG...]",
		Short: "Run a command with brokered credentials in its environment, restarting it with fresh ones before they expire",
		Long: `Fetch the credentials from the broker with this workload's SVID and start COMMAND
with the --env variables rendered from them: Go templates over the credential's
fields ({{.username}}, {{.password}}, {{.value}}, {{.access_token}}, {{.lease_id}},
{{.expires_at}}); with several --credential, each credential's fields are under
its name with - (and any other character but letters, digits and _) as _:
{{.orders_db.username}}. A field the credential lacks fails before COMMAND starts.
At 2/3 of the shortest lease's life fresh credentials are fetched and COMMAND
restarted: --restart-signal, up to --grace, then SIGKILL. SIGINT, SIGTERM, SIGHUP,
SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are forwarded to COMMAND; its exit status
is signet's (128+N when signal N ended it). The credentials are only in COMMAND's
environment: never written to disk, never logged. See docs/broker.md.`,
		Example: "  signet exec --credential orders-db --env PGUSER={{.username}} --env PGPASSWORD={{.password}} -- ./legacy-report",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false) // flags after COMMAND are its own
	f.wl.addFlags(cmd)
	fl.StringVar(&f.broker, "broker", "", "the broker's base URL, https://HOST:PORT (default: $"+brokerURLEnv+", else the URL the agent learned from its server)")
	fl.StringArrayVar(&f.credentials, "credential", nil, "credential to fetch (repeatable; at least one)")
	fl.StringArrayVar(&f.envs, "env", nil, "NAME=TEMPLATE: a variable of COMMAND's environment (repeatable; at least one)")
	fl.StringArrayVar(&f.contexts, "context", nil, "task context as key=value (repeatable), sent as request_context")
	fl.Var(config.DurationFlag(&f.ttl), "ttl", "lease lifetime to ask for (default: the credential's default_ttl)")
	fl.StringVar(&f.restartSig, "restart-signal", "SIGTERM", "signal asking COMMAND to stop before a restart")
	f.grace = 10 * time.Second
	fl.Var(config.DurationFlag(&f.grace), "grace", "how long COMMAND may take to stop after --restart-signal before SIGKILL")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "", "text or json (default: text on a terminal, else json)")
	return cmd
}

// runExec wires `signet exec`: flags checked and COMMAND found before the
// agent or the broker is asked anything.
func runExec(cmd *cobra.Command, f *execFlags, args []string) error {
	envs := make([]execsup.Env, 0, len(f.envs))
	for _, e := range f.envs {
		env, err := execsup.ParseEnv(e)
		if err != nil {
			return err
		}
		envs = append(envs, env)
	}
	kvs, err := contextMap(f.contexts)
	if err != nil {
		return err
	}
	sig, err := execsup.ParseSignal(f.restartSig)
	if err != nil {
		return err
	}
	var base *url.URL // resolved below, once the command is known to exist
	creds, err := execsup.NewCredentials(execsup.CredentialsConfig{Names: f.credentials, Envs: envs, Context: kvs, TTL: f.ttl,
		Getter: execsup.GetterFunc(func(ctx context.Context, r brokerclient.Request) (*brokerclient.Result, error) {
			return fetchCredential(ctx, cmd, &f.wl, base, r)
		})})
	if err != nil {
		return err
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		// The shell's statuses: 127 not found, 126 not executable.
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = 127
		}
		return &exitError{code: code, err: fmt.Errorf("command %q: %w", args[0], err)}
	}
	log, err := newLogger(cmd.ErrOrStderr(), f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	// Signals are caught from here on, so that none sent while the
	// credentials are fetched ends signet without reaching the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, execsup.Forwarded...)
	defer signal.Stop(sigs)
	if base, err = f.wl.brokerURL(cmd, f.broker); err != nil {
		return err
	}
	sup, err := execsup.New(execsup.Config{Path: path, Args: args, Environ: os.Environ(), Source: creds,
		RestartSignal: sig, Grace: f.grace, Signals: sigs,
		Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
		Logger: log.With("component", "exec")})
	if err != nil {
		return err
	}
	code, err := sup.Run(cmd.Context())
	if err != nil {
		if brokerclient.IsDenied(err) {
			return &exitError{code: 1, err: err}
		}
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}
