// Package helper runs `signet helper`: it sits beside an application that
// reads its certificates and tokens from files, keeps those files fresh
// from the agent's Workload API, and tells the application when they
// changed.
//
// X.509 files (certificate chain, key, bundle, PKCS#12 keystore) are
// replaced together with one rename (see dataLink); keys and keystores are
// 0600. The helper watches the Workload API, so an SVID rotation or a
// bundle change is written as soon as the agent has it. JWT-SVID files are
// replaced atomically at half of each token's remaining lifetime. After
// the first complete set of files (every X.509 file and every JWT file),
// and then after every complete change (all X.509 files in place, or one
// JWT file replaced), the on_change action runs once: a command, with a timeout, whose exit status
// is logged, or a signal to a process named by a PID file.
//
// Key material and tokens are never logged.
package helper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/sync/errgroup"

	"github.com/signet-id/signet/internal/atomicfile"
)

// Log keys.
const (
	logKeySPIFFEID = "spiffe_id"
	logKeyDir      = "dir"
	logKeyFile     = "file"
	logKeyAudience = "audience"
	logKeyExpires  = "expires_at"
	logKeyErr      = "err"
	logKeyCommand  = "command"
	logKeyExit     = "exit_status"
	logKeyDuration = "duration"
	logKeyPID      = "pid"
	logKeySignal   = "signal"
)

// Options are how to run a Helper.
type Options struct {
	// Addr is the Workload API address ("unix:///run/signet/agent.sock").
	Addr string
	// Logger receives one line per change and per failure. Nil discards.
	Logger *slog.Logger
	// Retry is how long to wait before trying the Workload API again
	// (default one second).
	Retry time.Duration
}

// Helper keeps the files of one Config fresh. Create it with New.
type Helper struct {
	cfg  *Config
	opts Options
	log  *slog.Logger

	mu       sync.Mutex // serialises writes and on_change
	lastX509 x509Material
	haveX509 bool
	// written holds the sources ("x509", "jwt:<file>") written at least
	// once; on_change waits until every source has been.
	written map[string]bool
}

// New returns a Helper for a validated cfg.
func New(cfg *Config, opts Options) (*Helper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Addr == "" {
		return nil, errors.New("helper: no Workload API address")
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Helper{cfg: cfg, opts: opts, log: log.With("component", "helper"), written: map[string]bool{}}, nil
}

// Once writes every configured file once, runs on_change once and
// returns. It retries an unreachable or unready agent until ctx is done,
// then returns the last reason.
func (h *Helper) Once(ctx context.Context) error {
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(h.opts.Addr))
	if err != nil {
		return fmt.Errorf("workload api at %s: %w", h.opts.Addr, err)
	}
	defer c.Close()
	if h.cfg.X509 != nil {
		if err := retry(ctx, h.opts.Retry, func() error {
			x, err := c.FetchX509Context(ctx)
			if err != nil {
				return fmt.Errorf("fetch x509-svid from %s: %w", h.opts.Addr, err)
			}
			_, err = h.writeX509(x)
			return err
		}); err != nil {
			return err
		}
	}
	for _, j := range h.cfg.JWT {
		if err := retry(ctx, h.opts.Retry, func() error {
			_, err := h.writeJWT(ctx, c, j)
			return err
		}); err != nil {
			return err
		}
	}
	return h.onChange(ctx)
}

// retry calls f until it succeeds or ctx is done; then it returns f's last
// error.
func retry(ctx context.Context, wait time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Run keeps the files fresh until ctx is done, then returns nil. Failures
// to reach the agent or to write are logged and retried.
func (h *Helper) Run(ctx context.Context) error {
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(h.opts.Addr))
	if err != nil {
		return fmt.Errorf("workload api at %s: %w", h.opts.Addr, err)
	}
	defer c.Close()
	g, gctx := errgroup.WithContext(ctx)
	if h.cfg.X509 != nil {
		g.Go(func() error {
			err := c.WatchX509Context(gctx, watcher{h: h, ctx: gctx})
			if gctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch x509-svids: %w", err)
		})
	}
	for _, j := range h.cfg.JWT {
		g.Go(func() error { h.jwtLoop(gctx, c, j); return nil })
	}
	return g.Wait()
}

type watcher struct {
	h   *Helper
	ctx context.Context
}

// OnX509ContextUpdate writes the update and runs on_change when anything
// the files hold changed.
func (w watcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	changed, err := w.h.writeX509(x)
	if err != nil {
		w.h.log.Error("x509 files not updated", slog.String(logKeyErr, err.Error()))
		return
	}
	if changed {
		if err := w.h.changed(w.ctx, "x509"); err != nil {
			w.h.log.Error("on_change failed", slog.String(logKeyErr, err.Error()))
		}
	}
}

// OnX509ContextWatchError logs; go-spiffe retries the watch.
func (w watcher) OnX509ContextWatchError(err error) {
	if w.ctx.Err() == nil {
		w.h.log.Warn("workload api watch failed; retrying", slog.String(logKeyErr, err.Error()))
	}
}

// writeX509 writes the default SVID of x, its trust domain's bundle and the
// keystore, unless they are what was last written. It reports whether it
// wrote.
func (h *Helper) writeX509(x *workloadapi.X509Context) (bool, error) {
	svid := x.DefaultSVID()
	b, err := x.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return false, fmt.Errorf("no bundle for %s: %w", svid.ID.TrustDomain(), err)
	}
	m, err := materialOf(svid, b.X509Authorities())
	if err != nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.haveX509 && m.equal(h.lastX509) {
		return false, nil
	}
	if err := h.cfg.X509.write(m); err != nil {
		return false, err
	}
	h.lastX509, h.haveX509 = m, true
	h.log.Info("x509 files written", slog.String(logKeySPIFFEID, svid.ID.String()),
		slog.String(logKeyDir, h.cfg.X509.Dir), slog.Time(logKeyExpires, svid.Certificates[0].NotAfter))
	return true, nil
}

// writeJWT fetches a JWT-SVID for j and writes it; it returns the token's
// expiry.
func (h *Helper) writeJWT(ctx context.Context, c *workloadapi.Client, j JWT) (time.Time, error) {
	svid, err := c.FetchJWTSVID(ctx, jwtsvid.Params{Audience: j.Audience})
	if err != nil {
		return time.Time{}, fmt.Errorf("fetch jwt-svid for audience %q from %s: %w", j.Audience, h.opts.Addr, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := atomicfile.WriteFile(j.File, []byte(svid.Marshal()+"\n"), 0o600); err != nil {
		return time.Time{}, err
	}
	h.log.Info("jwt file written", slog.String(logKeySPIFFEID, svid.ID.String()), slog.String(logKeyAudience, j.Audience),
		slog.String(logKeyFile, j.File), slog.Time(logKeyExpires, svid.Expiry))
	return svid.Expiry, nil
}

// jwtLoop keeps j's file fresh: a new token at half of the current one's
// remaining lifetime, retrying failures every Retry.
func (h *Helper) jwtLoop(ctx context.Context, c *workloadapi.Client, j JWT) {
	for {
		exp, err := h.writeJWT(ctx, c, j)
		wait := h.opts.Retry
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Error("jwt file not updated", slog.String(logKeyFile, j.File), slog.String(logKeyErr, err.Error()))
		} else {
			if err := h.changed(ctx, "jwt:"+j.File); err != nil {
				h.log.Error("on_change failed", slog.String(logKeyErr, err.Error()))
			}
			wait = max(time.Until(exp)/2, h.opts.Retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// changed records that source was written and runs on_change, unless
// some configured source has not been written yet: the first run waits for
// the first complete set of files.
func (h *Helper) changed(ctx context.Context, source string) error {
	h.mu.Lock()
	h.written[source] = true
	complete := len(h.written) == h.sources()
	h.mu.Unlock()
	if !complete {
		return nil
	}
	return h.onChange(ctx)
}

func (h *Helper) sources() int {
	n := len(h.cfg.JWT)
	if h.cfg.X509 != nil {
		n++
	}
	return n
}

// onChange runs the configured action once; nil when there is none.
func (h *Helper) onChange(ctx context.Context) error {
	o := h.cfg.OnChange
	if o == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if o.Signal != "" {
		return h.signal(o)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, o.Command[0], o.Command[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	cmdline := strings.Join(o.Command, " ")
	switch {
	case err == nil:
		h.log.Info("on_change ran", slog.String(logKeyCommand, cmdline), slog.Int(logKeyExit, 0), slog.Duration(logKeyDuration, took))
		return nil
	case ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("on_change.command %q: killed after on_change.timeout %s", cmdline, o.timeout())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		h.log.Warn("on_change ran", slog.String(logKeyCommand, cmdline), slog.Int(logKeyExit, ee.ExitCode()), slog.Duration(logKeyDuration, took))
		return fmt.Errorf("on_change.command %q: exit status %d", cmdline, ee.ExitCode())
	}
	return fmt.Errorf("on_change.command %q: %w", cmdline, err)
}

func (h *Helper) signal(o *OnChange) error {
	raw, err := os.ReadFile(o.PIDFile)
	if err != nil {
		return fmt.Errorf("on_change.pid_file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("on_change.pid_file: %s does not hold a process ID (a number above 1)", o.PIDFile)
	}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(signals[o.Signal])
	}
	if err != nil {
		return fmt.Errorf("on_change.signal %s to pid %d (from %s): %w", o.Signal, pid, o.PIDFile, err)
	}
	h.log.Info("on_change signalled", slog.String(logKeySignal, o.Signal), slog.Int(logKeyPID, pid))
	return nil
}
