package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/devenv"
)

// Agent is a real agent running against the Env's server, its Run in the
// background until Stop (or the test's end).
type Agent struct {
	*agent.Agent
	// Config is the configuration it was started with (Logger unset when
	// RunAgent provided it).
	Config agent.Config
	// Logs holds its log lines (they also go to the test log).
	Logs *LogBuffer

	env    *Env
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, set before done is closed
}

// AgentOption adjusts an agent's configuration before it starts.
type AgentOption func(*agent.Config)

// AgentConfig returns the configuration of a new agent for nodeID, as
// `signet dev` builds it (devenv.AgentConfig), with a fresh join token for
// nodeID, its own data dir and socket, and intervals short enough for
// tests: sync every 50ms, retries backing off to at most 200ms.
func (e *Env) AgentConfig(nodeID string) agent.Config {
	e.T.Helper()
	e.agents++
	dir := filepath.Join(e.DataDir, fmt.Sprintf("agent%d", e.agents))
	cfg, err := devenv.AgentConfig(e.Server, e.JoinToken(nodeID), dir, dir+".sock", nil)
	if err != nil {
		e.T.Fatalf("agent config: %v", err)
	}
	cfg.SyncInterval = 50 * time.Millisecond
	cfg.MaxBackoff = 200 * time.Millisecond
	cfg.RPCTimeout = 5 * time.Second
	return cfg
}

// StartAgent starts an agent that attests as nodeID with a join token (see
// AgentConfig), after opts adjusted its configuration.
func (e *Env) StartAgent(nodeID string, opts ...AgentOption) *Agent {
	e.T.Helper()
	cfg := e.AgentConfig(nodeID)
	for _, o := range opts {
		o(&cfg)
	}
	return e.RunAgent(cfg)
}

// RunAgent starts an agent with cfg as it is (to restart one on its data
// dir, for example). Its logs go to Logs and the test log, at debug level,
// unless cfg has a Logger. It is stopped when the test ends.
func (e *Env) RunAgent(cfg agent.Config) *Agent {
	e.T.Helper()
	logs := &LogBuffer{}
	run := cfg
	if run.Logger == nil {
		run.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{e.T}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := agent.New(run)
	if err != nil {
		e.T.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &Agent{Agent: a, Config: cfg, Logs: logs, env: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		ra.err = a.Run(ctx)
		close(ra.done)
	}()
	e.T.Cleanup(func() { _ = ra.Stop() })
	return ra
}

// Stop cancels the agent's Run and returns its result once it returned
// (at once when it already had). It fails the test if Run does not return
// within 10 seconds.
func (a *Agent) Stop() error {
	a.env.T.Helper()
	a.cancel()
	return a.Wait(10 * time.Second)
}

// Wait waits for Run to return by itself and returns its result. It fails
// the test if Run has not returned within timeout.
func (a *Agent) Wait(timeout time.Duration) error {
	a.env.T.Helper()
	select {
	case <-a.done:
		return a.err
	default:
	}
	select {
	case <-a.done:
		return a.err
	case <-time.After(timeout):
		a.env.T.Fatalf("agent Run did not return within %s", timeout)
		return nil
	}
}

// Done returns a channel closed when Run has returned.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Restarted returns the configuration to start the agent again on its data
// dir: the same, without the join token.
func (a *Agent) Restarted() agent.Config {
	cfg := a.Config
	cfg.JoinToken = ""
	cfg.Registerer = nil
	return cfg
}

// AwaitReady waits, within a generous deadline, until the agent has
// synced, and fails the test if it does not.
func (a *Agent) AwaitReady() {
	a.env.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Agent.WaitReady(ctx); err != nil {
		a.env.T.Fatalf("agent WaitReady: %v", err)
	}
}
