package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/credtemplate"
)

// execForwarded are the signals `signet exec` passes on to its child.
var execForwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP}

// execSignals are the signals --restart-signal accepts.
var execSignals = map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGHUP": syscall.SIGHUP,
	"SIGQUIT": syscall.SIGQUIT, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGKILL": syscall.SIGKILL}

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

// execEnv is one --env NAME=TEMPLATE.
type execEnv struct {
	name string
	tmpl *credtemplate.Template
}

func newExecCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec --credential NAME --env VAR={{.field}} ... -- COMMAND [ARG...]",
		Short: "Run a command with brokered credentials in its environment, restarting it with fresh ones before they expire",
		Long: `Fetch the credentials from the broker with this workload's SVID, start COMMAND
with the --env variables rendered from them (Go templates over the credential's
fields: {{.username}}, {{.password}}, {{.value}}, {{.access_token}}, {{.lease_id}},
{{.expires_at}}; with several --credential, {{.orders_db.username}}: the name with
- as _). Before the leases expire (at 2/3 of their life) fresh credentials are
fetched and the command restarted: --restart-signal, --grace, then SIGKILL.
Signals are forwarded; the command's exit status is signet's (128+N for a signal).
The credentials are only in the command's environment: never on disk or in logs.
See docs/exec.md.`,
		Example: "  signet exec --credential orders-db --env PGUSER={{.username}} --env PGPASSWORD={{.password}} -- ./legacy-report",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd, &f, args)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false) // the command's own flags are its own
	f.wl.addFlags(cmd)
	fl.StringVar(&f.broker, "broker", "", "the broker's base URL, https://HOST:PORT (env "+brokerclient.EnvURL+")")
	fl.StringArrayVar(&f.credentials, "credential", nil, "credential to fetch (repeatable; required)")
	fl.StringArrayVar(&f.envs, "env", nil, "NAME=TEMPLATE: a variable of the command's environment (repeatable)")
	fl.StringArrayVar(&f.contexts, "context", nil, "task context as key=value (repeatable), sent as request_context")
	fl.Var(config.DurationFlag(&f.ttl), "ttl", "lease lifetime to ask for (default: the credential's default_ttl)")
	fl.StringVar(&f.restartSig, "restart-signal", "SIGTERM", "signal asking the command to stop before a restart")
	f.grace = 10 * time.Second
	fl.Var(config.DurationFlag(&f.grace), "grace", "how long the command may take to stop before SIGKILL")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "", "text or json (default: text on a terminal, else json)")
	return cmd
}

// execPlan is a validated exec invocation.
type execPlan struct {
	creds   []string
	envs    []execEnv
	context map[string]string
	ttl     time.Duration
	sig     syscall.Signal
	grace   time.Duration
	argv    []string
}

func parseExec(f *execFlags, args []string) (*execPlan, error) {
	p := &execPlan{ttl: f.ttl, grace: f.grace, argv: args}
	if len(f.credentials) == 0 {
		return nil, errors.New("--credential is required: the brokered credential to put in the command's environment")
	}
	seen := map[string]bool{}
	for _, c := range f.credentials {
		if c == "" || seen[c] {
			return nil, fmt.Errorf("--credential %q: empty or given twice", c)
		}
		seen[c] = true
	}
	p.creds = f.credentials
	if len(f.envs) == 0 {
		return nil, errors.New("--env is required: NAME=TEMPLATE, e.g. PGPASSWORD={{.password}}")
	}
	names := map[string]bool{}
	for _, e := range f.envs {
		name, text, ok := strings.Cut(e, "=")
		if !ok || !validEnvName(name) {
			return nil, fmt.Errorf("--env %q: want NAME=TEMPLATE with NAME of letters, digits and _ (not starting with a digit)", e)
		}
		if names[name] {
			return nil, fmt.Errorf("--env %s is given twice", name)
		}
		names[name] = true
		t, err := credtemplate.Parse("--env "+name, text)
		if err != nil {
			return nil, err
		}
		p.envs = append(p.envs, execEnv{name: name, tmpl: t})
	}
	var err error
	if p.context, err = contextMap(f.contexts); err != nil {
		return nil, err
	}
	sig, ok := execSignals[strings.ToUpper(f.restartSig)]
	if !ok {
		return nil, fmt.Errorf("--restart-signal %q: use one of %s", f.restartSig, strings.Join(slices.Sorted(maps.Keys(execSignals)), ", "))
	}
	p.sig = sig
	if f.grace < 0 {
		return nil, errors.New("--grace must not be negative")
	}
	return p, nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// execGrant is one fetch of every credential.
type execGrant struct {
	results []*brokerclient.Result
	// renewAt is 2/3 into the shortest lease's life; expires its end.
	renewAt, expires time.Time
}

// fetch gets every credential once.
func (p *execPlan) fetch(ctx context.Context, bc *brokerclient.Client) (*execGrant, error) {
	g := &execGrant{}
	now := time.Now()
	for _, name := range p.creds {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := bc.Get(rctx, brokerclient.Request{Credential: name, Context: p.context, TTL: p.ttl})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", name, err)
		}
		exp := res.Expiry()
		if exp.IsZero() {
			return nil, fmt.Errorf("credential %s: the broker sent no valid expires_at", name)
		}
		if g.expires.IsZero() || exp.Before(g.expires) {
			g.expires = exp
		}
		g.results = append(g.results, res)
	}
	g.renewAt = now.Add(g.expires.Sub(now) * 2 / 3)
	return g, nil
}

// environ renders the --env variables over g and returns the command's
// environment: signet's own, with those set (replacing inherited ones).
func (p *execPlan) environ(g *execGrant) ([]string, error) {
	fields := func(r *brokerclient.Result) map[string]any {
		return credtemplate.Fields(r.LeaseID, r.Credential, r.ExpiresAt, r.Data)
	}
	data := fields(g.results[0])
	if len(g.results) > 1 {
		data = map[string]any{}
		for _, r := range g.results {
			data[strings.ReplaceAll(r.Credential, "-", "_")] = fields(r)
		}
	}
	set := map[string]bool{}
	var add []string
	for _, e := range p.envs {
		v, err := e.tmpl.Execute(data)
		if err != nil {
			return nil, err
		}
		if strings.IndexByte(string(v), 0) >= 0 {
			return nil, fmt.Errorf("--env %s: the rendered value holds a NUL byte", e.name)
		}
		set[e.name] = true
		add = append(add, e.name+"="+string(v))
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return set[k]
	})
	return append(env, add...), nil
}

func runExec(cmd *cobra.Command, f *execFlags, args []string) error {
	p, err := parseExec(f, args)
	if err != nil {
		return err
	}
	log, err := newLogger(cmd.ErrOrStderr(), f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	log = log.With("component", "exec")
	// The one place exec resolves the broker URL.
	u, err := brokerclient.ResolveURL(cmd.Context(), "--broker", f.broker, nil)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(p.argv[0])
	if err != nil {
		return fmt.Errorf("command %q: %w", p.argv[0], err)
	}
	// Signals are caught from here on, so none is lost while starting.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, execForwarded...)
	defer signal.Stop(sigs)

	addr, _, err := f.wl.addr()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(cmd.Context(), f.wl.timeout)
	src, err := workloadapi.NewX509Source(sctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	cancel()
	if err != nil {
		return fmt.Errorf("workload api at %s: %w", addr, workloadErr(err))
	}
	defer src.Close()
	bc, err := brokerclient.New(u, src)
	if err != nil {
		return err
	}
	defer bc.Close()
	ctx := cmd.Context()
	g, err := p.fetch(ctx, bc)
	if err != nil {
		if brokerclient.IsDenied(err) {
			return &exitError{code: 1, err: err}
		}
		return err
	}
	env, err := p.environ(g)
	if err != nil {
		return err
	}
	s := &supervisor{plan: p, path: path, log: log, sigs: sigs}
	code, err := s.run(ctx, bc, g, env)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// supervisor runs the child and restarts it on renewal.
type supervisor struct {
	plan  *execPlan
	path  string
	log   *slog.Logger
	sigs  chan os.Signal
	child *exec.Cmd
	done  chan error
}

func (s *supervisor) start(env []string) error {
	c := exec.Command(s.path, s.plan.argv[1:]...)
	c.Args[0] = s.plan.argv[0]
	c.Env = env
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.plan.argv[0], err)
	}
	s.child, s.done = c, make(chan error, 1)
	go func(done chan error) { done <- c.Wait() }(s.done)
	s.log.Info("command started", slog.Int("pid", c.Process.Pid))
	return nil
}

// exitCode is the child's exit status, 128+N for death by signal N.
func exitCode(c *exec.Cmd) int {
	ws, ok := c.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return c.ProcessState.ExitCode()
}

// stop asks the child to stop with the restart signal, waits the grace
// period, then kills it; it returns once the child is gone. Forwarded
// signals keep being forwarded meanwhile.
func (s *supervisor) stop() {
	_ = s.child.Process.Signal(s.plan.sig)
	t := time.NewTimer(s.plan.grace)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case sig := <-s.sigs:
			_ = s.child.Process.Signal(sig)
		case <-t.C:
			s.log.Warn("command did not stop within --grace; killing it", slog.Duration("grace", s.plan.grace))
			_ = s.child.Process.Kill()
		}
	}
}

func (s *supervisor) run(ctx context.Context, bc *brokerclient.Client, g *execGrant, env []string) (int, error) {
	if err := s.start(env); err != nil {
		return 0, err
	}
	backoff := time.Second
	renew := time.NewTimer(time.Until(g.renewAt))
	defer renew.Stop()
	for {
		select {
		case sig := <-s.sigs:
			_ = s.child.Process.Signal(sig)
		case err := <-s.done:
			code := exitCode(s.child)
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				return 0, fmt.Errorf("wait for %s: %w", s.plan.argv[0], err)
			}
			s.log.Info("command exited", slog.Int("exit_status", code))
			return code, nil
		case <-renew.C:
			ng, err := s.plan.fetch(ctx, bc)
			if err == nil {
				var nenv []string
				if nenv, err = s.plan.environ(ng); err == nil {
					s.log.Info("credentials renewed; restarting the command", slog.Time("expires_at", ng.expires))
					s.stop()
					if err := s.start(nenv); err != nil {
						return 0, err
					}
					g, backoff = ng, time.Second
					renew.Reset(time.Until(g.renewAt))
					continue
				}
			}
			// Keep the running command and try again, backing off but not
			// past the lease's end.
			wait := min(backoff, max(time.Until(g.expires)/2, 100*time.Millisecond))
			backoff = min(2*backoff, time.Minute)
			s.log.Error("credentials not renewed; retrying", slog.String("err", err.Error()), slog.Duration("retry_in", wait),
				slog.Time("expires_at", g.expires))
			renew.Reset(wait)
		}
	}
}
