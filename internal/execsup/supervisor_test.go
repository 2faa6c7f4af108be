package execsup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testenv"
	"github.com/signet-id/signet/internal/testenv/testclock"
)

// source hands out SECRET=value-N on its Nth fetch, with a 90 s lease
// renewed at 60 s on clock (long enough, in steps of a second, for a new
// child to record its start before the next renewal); fail says which
// fetches fail.
type source struct {
	clock *testclock.Clock
	fail  map[int]bool
	mu    sync.Mutex
	n     int
}

func (s *source) Fetch(context.Context) (*Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.fail[s.n] {
		return nil, fmt.Errorf("fetch %d: broker unavailable", s.n)
	}
	now := s.clock.Now()
	return &Grant{Env: []string{fmt.Sprintf("SECRET=value-%d", s.n)}, Leases: []string{fmt.Sprintf("lease-%d", s.n)},
		RenewAt: now.Add(60 * time.Second), Expires: now.Add(90 * time.Second)}, nil
}

// childScript records, one line each in $LOG, its start (pid and
// $SECRET) and every trapped signal; traps are extra shell lines, set
// before the start record so a test that saw it can signal the child.
func childScript(traps string) string {
	return traps + `
echo "start $$ $SECRET" >> "$LOG"
while :; do sleep 0.05; done
`
}

const (
	trapTerm = `trap 'echo "term $$" >> "$LOG"; exit 0' TERM`
	trapUSR1 = `trap 'echo "usr1 $$" >> "$LOG"' USR1`
	trapHUP  = `trap 'echo "hup $$" >> "$LOG"' HUP`
)

// harness runs a Supervisor over /bin/sh -c script in a goroutine.
type harness struct {
	t     *testing.T
	clock *testclock.Clock
	src   *source
	log   string // the child's record
	sigs  chan os.Signal
	logs  *testenv.LogBuffer // the supervisor's log
	done  chan struct{}
	code  int
	err   error
}

// newHarness runs script; the source's fetches numbered in fail fail.
func newHarness(t *testing.T, script string, cfg Config, fail ...int) *harness {
	t.Helper()
	clock := testclock.New(time.Now())
	src := &source{clock: clock, fail: map[int]bool{}}
	for _, n := range fail {
		src.fail[n] = true
	}
	h := &harness{t: t, clock: clock, src: src, log: filepath.Join(t.TempDir(), "child.log"),
		sigs: make(chan os.Signal, 4), logs: &testenv.LogBuffer{}, done: make(chan struct{})}
	if cfg.Source == nil {
		cfg.Source = h.src
	}
	cfg.Path, cfg.Args = "/bin/sh", []string{"sh", "-c", script}
	cfg.Environ = append(cfg.Environ, "LOG="+h.log, "SECRET=inherited")
	cfg.Signals, cfg.Clock = h.sigs, clock
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	if cfg.Grace == 0 {
		// Beyond what stepping the fake clock reaches while a child
		// runs its trap: only TestGraceThenKill wants the kill.
		cfg.Grace = time.Hour
	}
	return h.run(cfg, t.Context())
}

// run starts Run; the test's end cancels ctx and moves the clock past
// any grace period until Run returned.
func (h *harness) run(cfg Config, ctx context.Context) *harness {
	s, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(h.done)
		h.code, h.err = s.Run(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		if err := testenv.Poll(20*time.Second, func() error {
			select {
			case <-h.done:
				return nil
			default:
				h.clock.Add(time.Hour)
				return errors.New("Run has not returned")
			}
		}); err != nil {
			h.t.Error(err)
		}
		if h.t.Failed() {
			h.t.Logf("supervisor log:\n%s\nchild log:\n%s", h.logs.String(), h.lines())
		}
	})
	return h
}

// lines is the child's record so far.
func (h *harness) lines() string {
	b, _ := os.ReadFile(h.log)
	return string(b)
}

// starts lists the "start PID SECRET" records.
func (h *harness) starts() [][]string {
	var out [][]string
	for _, l := range strings.Split(h.lines(), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "start" {
			out = append(out, f[1:])
		}
	}
	return out
}

// has waits, moving the fake clock by step, until the record holds n lines
// starting with prefix.
func (h *harness) has(step time.Duration, n int, prefix string) {
	h.t.Helper()
	testenv.Advance(h.t, h.clock, step, 15*time.Second, fmt.Sprintf("%d %q records", n, prefix), func() error {
		if got := strings.Count("\n"+h.lines(), "\n"+prefix); got < n {
			return fmt.Errorf("%d of them in %q", got, h.lines())
		}
		return nil
	})
}

// wait returns Run's results.
func (h *harness) wait() (int, error) {
	h.t.Helper()
	select {
	case <-h.done:
		return h.code, h.err
	case <-time.After(15 * time.Second):
		h.t.Fatalf("Run did not return; child record:\n%s", h.lines())
		return 0, nil
	}
}

func TestRunExitStatus(t *testing.T) {
	for script, want := range map[string]int{
		"exit 0":        0,
		"exit 7":        7,
		"kill -KILL $$": 128 + 9,
		"kill -TERM $$": 128 + 15,
	} {
		t.Run(script, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, script, Config{})
			if code, err := h.wait(); err != nil || code != want {
				t.Fatalf("Run() over sh -c %q = %d, %v; want %d", script, code, err, want)
			}
		})
	}
}

func TestRunEnvironment(t *testing.T) {
	var out bytes.Buffer
	h := newHarness(t, `env`, Config{Stdout: &out, Environ: []string{"KEEP=me"}})
	if code, err := h.wait(); err != nil || code != 0 {
		t.Fatalf("Run() = %d, %v", code, err)
	}
	env := strings.Split(strings.TrimSpace(out.String()), "\n")
	count := map[string]int{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		count[k]++
	}
	for _, want := range []string{"SECRET=value-1", "KEEP=me"} {
		if !strings.Contains("\n"+out.String(), "\n"+want+"\n") {
			t.Errorf("child environment lacks %s:\n%s", want, out.String())
		}
	}
	if count["SECRET"] != 1 {
		t.Errorf("child environment has SECRET %d times, want once (the grant's replaces the inherited one):\n%s", count["SECRET"], out.String())
	}
	if strings.Contains(h.logs.String(), "value-1") {
		t.Errorf("the supervisor logged the credential value:\n%s", h.logs.String())
	}
}

func TestRenewRestartsTheChild(t *testing.T) {
	h := newHarness(t, childScript(trapTerm), Config{})
	h.has(time.Second, 2, "start")
	starts := h.starts()
	if starts[0][1] != "value-1" || starts[1][1] != "value-2" || starts[0][0] == starts[1][0] {
		t.Fatalf("starts = %v; want a first child with value-1, then another with value-2", starts)
	}
	if !strings.Contains(h.lines(), "term "+starts[0][0]) {
		t.Errorf("the first child was not asked to stop with SIGTERM:\n%s", h.lines())
	}
	h.sigs <- syscall.SIGTERM
	if code, err := h.wait(); err != nil || code != 0 {
		t.Fatalf("Run() after SIGTERM = %d, %v; want the child's 0", code, err)
	}
	if strings.Contains(h.logs.String(), "value-") {
		t.Errorf("the supervisor logged a credential value:\n%s", h.logs.String())
	}
}

func TestRestartSignal(t *testing.T) {
	h := newHarness(t, childScript(trapTerm+"\n"+`trap 'echo "hup $$" >> "$LOG"; exit 0' HUP`), Config{RestartSignal: syscall.SIGHUP})
	h.has(time.Second, 2, "start")
	if l := h.lines(); !strings.Contains(l, "hup ") || strings.Contains(l, "term ") {
		t.Fatalf("restart with --restart-signal SIGHUP: child record\n%s\nwant a hup and no term", l)
	}
}

func TestGraceThenKill(t *testing.T) {
	h := newHarness(t, childScript(`trap 'echo "term $$" >> "$LOG"' TERM`), Config{Grace: 2 * time.Minute})
	h.has(time.Second, 1, "term") // renewal: asked to stop, ignores it
	if n := len(h.starts()); n != 1 {
		t.Fatalf("a new child started while the old one was in its grace period: %d starts", n)
	}
	h.has(2*time.Second, 2, "start") // killed after the grace period, restarted
	if !strings.Contains(h.logs.String(), "did not stop within the grace period") {
		t.Errorf("no kill in the supervisor's log:\n%s", h.logs.String())
	}
	if starts := h.starts(); starts[1][1] == "value-1" {
		t.Errorf("restarted child has %s, want a renewed value", starts[1][1])
	}
}

func TestForwardSignals(t *testing.T) {
	h := newHarness(t, childScript(trapUSR1+"\n"+trapHUP+"\n"+`trap 'echo "int $$" >> "$LOG"; exit 5' INT`), Config{})
	h.has(0, 1, "start")
	h.sigs <- syscall.SIGUSR1
	h.has(0, 1, "usr1")
	h.sigs <- syscall.SIGHUP
	h.has(0, 1, "hup")
	h.sigs <- syscall.SIGINT
	if code, err := h.wait(); err != nil || code != 5 {
		t.Fatalf("Run() after a forwarded SIGINT = %d, %v; want the child's 5", code, err)
	}
	if n := len(h.starts()); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
}

func TestRenewalFailureKeepsTheChild(t *testing.T) {
	h := newHarness(t, childScript(trapTerm), Config{}, 2)
	h.has(time.Second, 2, "start")
	starts := h.starts()
	if starts[1][1] != "value-3" {
		t.Fatalf("starts = %v; want the second child from the third fetch (the second failed)", starts)
	}
	if strings.Count(h.lines(), "term ") != 1 {
		t.Errorf("the failed renewal stopped the child:\n%s", h.lines())
	}
	if !strings.Contains(h.logs.String(), "fetch 2: broker unavailable") {
		t.Errorf("the failed renewal is not in the log:\n%s", h.logs.String())
	}
	h.sigs <- syscall.SIGTERM
	h.wait()
}

func TestRenewalBacksOffAfterExpiry(t *testing.T) {
	var fail []int
	for n := 2; n < 100; n++ {
		fail = append(fail, n)
	}
	h := newHarness(t, childScript(trapTerm), Config{}, fail...)
	h.has(0, 1, "start")
	// Retries come closer as the lease's end nears, then back off to a
	// minute once it has passed, instead of hammering the broker.
	testenv.Advance(t, h.clock, time.Second, 15*time.Second, "a retry a minute later", func() error {
		if !strings.Contains(h.logs.String(), "retry_in=1m0s") {
			return errors.New("no retry_in=1m0s in the log")
		}
		return nil
	})
	if n := len(h.starts()); n != 1 {
		t.Errorf("%d starts; failed renewals must not restart the child", n)
	}
}

func TestFirstFetchFails(t *testing.T) {
	h := newHarness(t, childScript(""), Config{}, 1)
	_, err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "fetch 1: broker unavailable") {
		t.Fatalf("Run() = %v, want the source's error", err)
	}
	if _, statErr := os.Stat(h.log); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("the child ran although the first fetch failed: %s", h.lines())
	}
}

// stuck is a Source whose fetches wait for their context.
type stuck struct{}

func (stuck) Fetch(ctx context.Context) (*Grant, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestSignalDuringFirstFetch(t *testing.T) {
	h := newHarness(t, childScript(""), Config{Source: stuck{}})
	h.sigs <- syscall.SIGHUP // no child to go to: dropped
	h.sigs <- syscall.SIGTERM
	if code, err := h.wait(); err != nil || code != 128+15 {
		t.Fatalf("Run() after SIGTERM during the first fetch = %d, %v; want 143", code, err)
	}
	if _, err := os.Stat(h.log); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a child ran: %s", h.lines())
	}
}

func TestTerminatingSignalDuringRestart(t *testing.T) {
	h := newHarness(t, childScript(trapUSR1+"\n"+`trap 'echo "int $$" >> "$LOG"; exit 9' INT`),
		Config{RestartSignal: syscall.SIGUSR1, Grace: time.Hour})
	h.has(time.Second, 1, "usr1") // the restart asked, the child stays
	h.sigs <- syscall.SIGINT
	if code, err := h.wait(); err != nil || code != 9 {
		t.Fatalf("Run() = %d, %v; want the child's 9", code, err)
	}
	if n := len(h.starts()); n != 1 {
		t.Errorf("a new child started after SIGINT during the restart: %d starts", n)
	}
}

func TestContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	clock := testclock.New(time.Now())
	h := &harness{t: t, clock: clock, src: &source{clock: clock}, log: filepath.Join(t.TempDir(), "child.log"),
		logs: &testenv.LogBuffer{}, done: make(chan struct{})}
	h.run(Config{Path: "/bin/sh", Args: []string{"sh", "-c", childScript(trapTerm)}, Environ: []string{"LOG=" + h.log},
		Source: h.src, Clock: clock, Grace: time.Hour}, ctx)
	h.has(0, 1, "start")
	cancel()
	code, err := h.wait()
	if !errors.Is(err, context.Canceled) || code != 0 {
		t.Fatalf("Run() after cancel = %d, %v; want 0 and context.Canceled", code, err)
	}
	if !strings.Contains(h.lines(), "term ") {
		t.Errorf("the child was not stopped with the restart signal:\n%s", h.lines())
	}
}

func TestStartFails(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(time.Now())
	s, err := New(Config{Path: notExec, Args: []string{"script"}, Source: &source{clock: clock}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "start script") {
		t.Fatalf("Run() of a file that is not executable = %v, want a start error", err)
	}
}

func TestNew(t *testing.T) {
	src := &source{}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no command", Config{Source: src}, "no command"},
		{"no source", Config{Path: "/bin/true", Args: []string{"true"}}, "no credential source"},
		{"negative grace", Config{Path: "/bin/true", Args: []string{"true"}, Source: src, Grace: -time.Second}, "--grace -1s: must not be negative"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("New(%s) = %v, want an error with %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "TERM": syscall.SIGTERM, "hup": syscall.SIGHUP,
		"sigusr2": syscall.SIGUSR2, "SIGKILL": syscall.SIGKILL} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "SIGNOPE", "15", "SIGSTOP"} {
		if _, err := ParseSignal(in); err == nil || !strings.Contains(err.Error(), "want a signal name such as SIGTERM") {
			t.Errorf("ParseSignal(%q) = %v, want an error listing signal names", in, err)
		}
	}
}
