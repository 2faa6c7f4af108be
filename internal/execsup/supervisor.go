// Package execsup supervises the command `signet exec` runs. It starts the
// child with brokered credentials in its environment — and nowhere else:
// nothing is written to disk and no value is logged — fetches fresh
// credentials before the leases expire and restarts the child with them
// (a restart signal, a grace period, then SIGKILL), forwards the signals it
// is handed to the child, and reports the child's exit status.
//
// Credentials turns --credential and --env flags into a Source; Supervisor
// runs the child over any Source.
package execsup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Log keys.
const (
	logKeyPID      = "pid"
	logKeyLeases   = "lease_ids"
	logKeyExpires  = "expires_at"
	logKeyExit     = "exit_status"
	logKeySignal   = "signal"
	logKeyGrace    = "grace"
	logKeyErr      = "err"
	logKeyRetryIn  = "retry_in"
	logKeyCommand  = "command"
	logKeyRestarts = "restarts"
)

// Renewal timing.
const (
	// minRenewWait is the least time between two fetches, so a lease
	// shorter than it (or a clock far off) cannot make a restart loop.
	minRenewWait = time.Second
	// retryMin and retryMax bound the back-off after a failed renewal.
	retryMin = time.Second
	retryMax = time.Minute
)

// Forwarded are the signals a Supervisor passes on to its child: subscribe
// to them with signal.Notify and hand the channel over as Config.Signals.
var Forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// terminating are the forwarded signals that ask for the end: one received
// while the child is being restarted means the new child is not started.
var terminating = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT}

// ParseSignal reads a signal name as --restart-signal takes it: SIGTERM,
// TERM or term.
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	if s := unix.SignalNum(n); s != 0 && s != syscall.SIGSTOP {
		return s, nil
	}
	return 0, fmt.Errorf("--restart-signal %q: want a signal name such as SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 or SIGKILL", name)
}

// Clock is the supervisor's source of time; internal/testenv/testclock is
// a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Grant is one fetch of the credentials.
type Grant struct {
	// Env are the child's credential variables, NAME=VALUE; they replace
	// variables of the same name in Config.Environ.
	Env []string
	// Leases are the lease IDs, for the log (they are not secret).
	Leases []string
	// RenewAt is when to fetch again; Expires when the first lease ends.
	RenewAt, Expires time.Time
}

// Source fetches the credentials; *Credentials is one. Fetch may be called
// while the child runs, from another goroutine than Run's.
type Source interface {
	Fetch(ctx context.Context) (*Grant, error)
}

// Config configures a Supervisor.
type Config struct {
	// Path is the executable (resolved with exec.LookPath); Args the
	// child's argv, Args[0] its name as the child sees it. Required.
	Path string
	Args []string
	// Environ is the child's environment before the credential variables
	// (typically os.Environ()).
	Environ []string
	// Source provides the credentials; required.
	Source Source
	// RestartSignal asks the child to stop before a restart; zero: SIGTERM.
	RestartSignal syscall.Signal
	// Grace is how long the child may take to stop after RestartSignal
	// before it is killed; zero kills it right after the signal.
	Grace time.Duration
	// Signals, when not nil, carries signals to forward to the child.
	Signals <-chan os.Signal
	// Stdin, Stdout and Stderr are the child's; nil is /dev/null.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Logger receives one record per start, renewal, failure and exit,
	// never a credential value. Nil discards.
	Logger *slog.Logger
	// Clock times renewals and the grace period; nil is the system clock.
	Clock Clock
}

// Supervisor runs one command with fresh credentials. Create it with New;
// Run it once.
type Supervisor struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
}

// New checks cfg and returns its Supervisor.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Path == "" || len(cfg.Args) == 0 {
		return nil, errors.New("execsup: no command")
	}
	if cfg.Source == nil {
		return nil, errors.New("execsup: no credential source")
	}
	if cfg.Grace < 0 {
		return nil, fmt.Errorf("--grace %s: must not be negative", cfg.Grace)
	}
	if cfg.RestartSignal == 0 {
		cfg.RestartSignal = syscall.SIGTERM
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, clock: cfg.Clock}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	return s, nil
}

// child is one run of the command.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
	err  error         // Wait's error, set before done is closed
}

// exitCode is the child's exit status, 128+N when signal N ended it.
func (c *child) exitCode() int {
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return c.cmd.ProcessState.ExitCode()
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig unless the child is gone.
func (c *child) signal(sig os.Signal) {
	if !c.exited() {
		_ = c.cmd.Process.Signal(sig)
	}
}

type fetchResult struct {
	g   *Grant
	err error
}

// Run fetches the credentials, starts the child and supervises it until it
// exits, returning its exit status (128+N when killed by signal N). An
// error means the child could not be started or waited for, or the first
// fetch failed (the child never ran); it is the Source's error as is, so
// callers can tell a refusal (brokerclient.IsDenied) from the rest. A
// failed renewal keeps the child running and is retried with back-off.
// When ctx ends, the child is stopped as for a restart and Run returns
// ctx's error with its status. A terminating signal (SIGINT, SIGTERM,
// SIGQUIT) during the first fetch ends Run with 128+N before any child
// ran; other signals then have no child to go to and are dropped. Run
// blocks; it is not safe to call twice.
func (s *Supervisor) Run(ctx context.Context) (int, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, code, err := s.first(fctx)
	if g == nil {
		return code, err
	}
	c, err := s.start(g)
	if err != nil {
		return 0, err
	}
	renew := s.clock.After(s.waitUntil(g.RenewAt))
	var fetched chan fetchResult // non-nil while a fetch runs
	backoff, restarts := retryMin, 0
	for {
		select {
		case <-ctx.Done():
			s.stop(ctx, c, s.cfg.RestartSignal)
			return c.exitCode(), ctx.Err()
		case sig := <-s.cfg.Signals:
			c.signal(sig)
		case <-c.done:
			return s.exited(c)
		case <-renew:
			renew, fetched = nil, make(chan fetchResult, 1)
			go func(out chan<- fetchResult) {
				g, err := s.cfg.Source.Fetch(fctx)
				out <- fetchResult{g, err}
			}(fetched)
		case r := <-fetched:
			fetched = nil
			if c.exited() {
				return s.exited(c)
			}
			if r.err != nil {
				// Back off, but try at least once more before the lease
				// ends; once it has, back off alone.
				wait := backoff
				if left := s.until(g.Expires); left > 0 {
					wait = min(backoff, max(left/2, 100*time.Millisecond))
				}
				backoff = min(2*backoff, retryMax)
				s.log.Error("credentials not renewed; the command keeps running with the current ones",
					slog.String(logKeyErr, r.err.Error()), slog.Duration(logKeyRetryIn, wait), slog.Time(logKeyExpires, g.Expires))
				renew = s.clock.After(wait)
				continue
			}
			g, backoff = r.g, retryMin
			restarts++
			s.log.Info("credentials renewed; restarting the command", slog.Any(logKeyLeases, g.Leases),
				slog.Time(logKeyExpires, g.Expires), slog.Int(logKeyRestarts, restarts))
			if quit := s.stop(ctx, c, s.cfg.RestartSignal); quit {
				code, err := s.exited(c)
				if err == nil && ctx.Err() != nil {
					err = ctx.Err()
				}
				return code, err
			}
			if c, err = s.start(g); err != nil {
				return 0, err
			}
			renew = s.clock.After(s.waitUntil(g.RenewAt))
		}
	}
}

// first runs the first fetch, watching for signals meanwhile: a nil grant
// means Run ends with code and err.
func (s *Supervisor) first(ctx context.Context) (*Grant, int, error) {
	fetched := make(chan fetchResult, 1)
	go func() {
		g, err := s.cfg.Source.Fetch(ctx)
		fetched <- fetchResult{g, err}
	}()
	for {
		select {
		case r := <-fetched:
			if r.g == nil && r.err == nil {
				r.err = errors.New("execsup: the credential source returned no grant")
			}
			return r.g, 0, r.err
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case sig := <-s.cfg.Signals:
			if n, ok := sig.(syscall.Signal); ok && slices.Contains(terminating, sig) {
				s.log.Info("signal before the command started; not starting it", slog.String(logKeySignal, n.String()))
				return nil, 128 + int(n), nil
			}
		}
	}
}

// until is the time left to t on the supervisor's clock.
func (s *Supervisor) until(t time.Time) time.Duration { return t.Sub(s.clock.Now()) }

// waitUntil is how long to wait for a renewal due at t: never under
// minRenewWait.
func (s *Supervisor) waitUntil(t time.Time) time.Duration { return max(s.until(t), minRenewWait) }

// environ is the child's environment: Config.Environ without the
// variables the grant sets, then the grant's.
func (s *Supervisor) environ(g *Grant) []string {
	set := make(map[string]bool, len(g.Env))
	for _, kv := range g.Env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	env := slices.DeleteFunc(slices.Clone(s.cfg.Environ), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return set[k]
	})
	return append(env, g.Env...)
}

func (s *Supervisor) start(g *Grant) (*child, error) {
	cmd := &exec.Cmd{Path: s.cfg.Path, Args: s.cfg.Args, Env: s.environ(g),
		Stdin: s.cfg.Stdin, Stdout: s.cfg.Stdout, Stderr: s.cfg.Stderr}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.cfg.Args[0], err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	s.log.Info("command started", slog.String(logKeyCommand, s.cfg.Args[0]), slog.Int(logKeyPID, cmd.Process.Pid),
		slog.Any(logKeyLeases, g.Leases), slog.Time(logKeyExpires, g.Expires))
	return c, nil
}

// exited reports the end of a child whose done is closed.
func (s *Supervisor) exited(c *child) (int, error) {
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) && c.cmd.ProcessState == nil {
		return 0, fmt.Errorf("wait for %s: %w", s.cfg.Args[0], c.err)
	}
	code := c.exitCode()
	s.log.Info("command exited", slog.String(logKeyCommand, s.cfg.Args[0]), slog.Int(logKeyExit, code))
	return code, nil
}

// stop sends sig to the child, waits Grace, then kills it; it returns once
// the child is gone. Signals keep being forwarded meanwhile; quit reports
// whether one of them asked for the end (or ctx ended), so that no new
// child should be started.
func (s *Supervisor) stop(ctx context.Context, c *child, sig syscall.Signal) (quit bool) {
	c.signal(sig)
	grace := s.clock.After(s.cfg.Grace)
	done := ctx.Done()
	for {
		select {
		case <-c.done:
			return quit || ctx.Err() != nil
		case fwd := <-s.cfg.Signals:
			c.signal(fwd)
			quit = quit || slices.Contains(terminating, fwd)
		case <-done:
			done, quit = nil, true
		case <-grace:
			grace = nil
			if !c.exited() {
				s.log.Warn("command did not stop within the grace period; killing it", slog.String(logKeySignal, sig.String()),
					slog.Duration(logKeyGrace, s.cfg.Grace))
				_ = c.cmd.Process.Kill()
			}
		}
	}
}
