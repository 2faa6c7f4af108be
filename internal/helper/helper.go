// Package helper runs `signet helper`: it sits beside an application that
// reads its certificates, tokens and secrets from files, keeps those files
// fresh from the agent's Workload API and the credential broker, and tells
// the application when they changed.
//
// X.509 files (certificate chain, key, bundle, PKCS#12 keystore) are
// replaced together with one rename (see dataLink); keys and keystores are
// 0600. The helper watches the Workload API, so an SVID rotation or a
// bundle change is written as soon as the agent has it. JWT-SVID files are
// replaced atomically at half of each token's remaining lifetime.
// Credential files are brokered credentials (requested over mTLS with the
// helper's X.509-SVID, see internal/brokerclient) rendered through a
// template (internal/credtemplate), written atomically with mode 0600 and
// replaced with a new lease at two thirds of the current one's lifetime.
//
// After the first complete set of files (every X.509, JWT and credential
// file), and then after every complete change, the on_change action runs
// once: a command, with a timeout, whose exit status is logged, or a
// signal to a process named by a PID file. Writes that land within
// Options.Settle of each other, or while another write is in progress,
// are one change.
//
// Key material, tokens and credentials are never logged.
package helper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/sync/errgroup"

	"github.com/signet-id/signet/internal/atomicfile"
	"github.com/signet-id/signet/internal/brokerclient"
	"github.com/signet-id/signet/internal/credtemplate"
)

// Log keys.
const (
	logKeySPIFFEID   = "spiffe_id"
	logKeyDir        = "dir"
	logKeyFile       = "file"
	logKeyAudience   = "audience"
	logKeyExpires    = "expires_at"
	logKeyErr        = "err"
	logKeyCommand    = "command"
	logKeyExit       = "exit_status"
	logKeyDuration   = "duration"
	logKeyPID        = "pid"
	logKeySignal     = "signal"
	logKeyCredential = "credential"
	logKeyBroker     = "broker"
	logKeyCount      = "count"
)

// DefaultSettle is Options.Settle's default.
const DefaultSettle = 500 * time.Millisecond

// Options are how to run a Helper.
type Options struct {
	// Addr is the Workload API address ("unix:///run/signet/agent.sock").
	Addr string
	// Logger receives one line per change and per failure. Nil discards.
	Logger *slog.Logger
	// Retry is how long to wait before trying the Workload API or the
	// broker again (default one second); the daemon backs off from it to
	// 30 seconds for credentials.
	Retry time.Duration
	// Settle is how long the daemon waits after a write, with no write in
	// progress, before it runs on_change, so that files changed together
	// (an SVID rotation and a credential renewal) get one on_change
	// (default DefaultSettle).
	Settle time.Duration
}

// Helper keeps the files of one Config fresh. Create it with New.
type Helper struct {
	cfg  *Config
	opts Options
	log  *slog.Logger

	tmpls []*credtemplate.Template // of cfg.Credentials, by index

	mu       sync.Mutex // serialises writes and on_change
	lastX509 x509Material
	haveX509 bool

	st sync.Mutex // guards the change state below
	// written holds the sources ("x509", "jwt:<file>", "credential:<file>")
	// written at least once; on_change waits until every source has been.
	written  map[string]bool
	pending  bool // a source was written since on_change last ran
	inflight int  // writes (with their fetches) in progress
	kick     chan struct{}

	// latest is the last X.509 context of the daemon's watch; firstX509
	// is closed when the first arrives.
	latest    atomic.Pointer[workloadapi.X509Context]
	firstX509 chan struct{}
	firstOnce sync.Once
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
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	tmpls, err := parseTemplates(cfg.Credentials)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Helper{cfg: cfg, opts: opts, log: log.With("component", "helper"), tmpls: tmpls, written: map[string]bool{},
		kick: make(chan struct{}, 1), firstX509: make(chan struct{})}, nil
}

// Once writes every configured file once, runs on_change once and
// returns. It retries an unreachable or unready agent or broker until ctx
// is done, then returns the last reason; the broker's refusal and a
// template that does not fit its credential fail at once.
func (h *Helper) Once(ctx context.Context) error {
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(h.opts.Addr))
	if err != nil {
		return fmt.Errorf("workload api at %s: %w", h.opts.Addr, err)
	}
	defer c.Close()
	var x *workloadapi.X509Context
	if h.cfg.X509 != nil || len(h.cfg.Credentials) > 0 {
		if err := retry(ctx, h.opts.Retry, func() error {
			x, err = c.FetchX509Context(ctx)
			if err != nil {
				return fmt.Errorf("fetch x509-svid from %s: %w", h.opts.Addr, err)
			}
			if h.cfg.X509 == nil {
				return nil
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
	if len(h.cfg.Credentials) > 0 {
		var u *url.URL
		if err := retry(ctx, h.opts.Retry, func() (err error) {
			u, err = h.brokerURL(ctx)
			return err
		}); err != nil {
			return err
		}
		bc, err := brokerclient.New(u, contextSource{x})
		if err != nil {
			return err
		}
		defer bc.Close()
		for i := range h.cfg.Credentials {
			if err := retry(ctx, h.opts.Retry, func() error {
				_, err := h.writeCredential(ctx, bc, i)
				return err
			}); err != nil {
				return err
			}
		}
	}
	return h.onChange(ctx)
}

// retry calls f until it succeeds, fails with a *permanentError, or ctx
// is done; then it returns f's last error.
func retry(ctx context.Context, wait time.Duration, f func() error) error {
	for {
		err := f()
		if err == nil || isPermanent(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Run keeps the files fresh until ctx is done, then returns nil. Failures
// to reach the agent or the broker, or to write, are logged and retried; a
// template that does not fit its credential at the first render ends Run
// with that error.
func (h *Helper) Run(ctx context.Context) error {
	c, err := workloadapi.New(ctx, workloadapi.WithAddr(h.opts.Addr))
	if err != nil {
		return fmt.Errorf("workload api at %s: %w", h.opts.Addr, err)
	}
	defer c.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { h.onChangeLoop(gctx); return nil })
	if h.cfg.X509 != nil || len(h.cfg.Credentials) > 0 {
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
	if len(h.cfg.Credentials) > 0 {
		g.Go(func() error { return h.credentialsLoop(gctx) })
	}
	return g.Wait()
}

type watcher struct {
	h   *Helper
	ctx context.Context
}

// OnX509ContextUpdate keeps the context for the broker client and writes
// the X.509 files when anything they hold changed.
func (w watcher) OnX509ContextUpdate(x *workloadapi.X509Context) {
	w.h.latest.Store(x)
	w.h.firstOnce.Do(func() { close(w.h.firstX509) })
	if w.h.cfg.X509 == nil {
		return
	}
	w.h.begin()
	changed, err := w.h.writeX509(x)
	w.h.done("x509", changed)
	if err != nil {
		w.h.log.Error("x509 files not updated", slog.String(logKeyErr, err.Error()))
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
		h.begin()
		exp, err := h.writeJWT(ctx, c, j)
		h.done("jwt:"+j.File, err == nil)
		wait := h.opts.Retry
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Error("jwt file not updated", slog.String(logKeyFile, j.File), slog.String(logKeyErr, err.Error()))
		} else {
			wait = max(time.Until(exp)/2, h.opts.Retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// begin records that a write (with the fetch before it) started: on_change
// waits for it.
func (h *Helper) begin() {
	h.st.Lock()
	h.inflight++
	h.st.Unlock()
}

// done records that a write of source ended, having written when wrote,
// and wakes onChangeLoop.
func (h *Helper) done(source string, wrote bool) {
	h.st.Lock()
	h.inflight--
	if wrote {
		h.written[source] = true
		h.pending = true
	}
	h.st.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// busy reports whether a write is in progress.
func (h *Helper) busy() bool {
	h.st.Lock()
	defer h.st.Unlock()
	return h.inflight > 0
}

// takeChange reports whether on_change is due: something was written
// since it last ran, and every configured source has been written at
// least once. It clears the pending change.
func (h *Helper) takeChange() bool {
	h.st.Lock()
	defer h.st.Unlock()
	if !h.pending || len(h.written) < h.sources() {
		return false
	}
	h.pending = false
	return true
}

// onChangeLoop runs on_change once per change until ctx is done: after a
// write, it waits until Settle has passed with no other write ended and
// none in progress, so files written together get one on_change.
func (h *Helper) onChangeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		}
		t := time.NewTimer(h.opts.Settle)
	settle:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-h.kick:
				t.Reset(h.opts.Settle)
			case <-t.C:
				if !h.busy() {
					break settle
				}
				t.Reset(h.opts.Settle)
			}
		}
		if h.takeChange() {
			if err := h.onChange(ctx); err != nil {
				h.log.Error("on_change failed", slog.String(logKeyErr, err.Error()))
			}
		}
	}
}

func (h *Helper) sources() int {
	n := len(h.cfg.JWT) + len(h.cfg.Credentials)
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
