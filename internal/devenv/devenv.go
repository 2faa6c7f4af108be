// Package devenv runs a complete Signet trust domain in one process: a
// server on an embedded SQLite store and an agent beside it, with the
// current user registered, so a first run takes one command (`signet dev`).
//
// Everything goes through the same paths as a real deployment: the agent
// attests with a join token over TLS, entries are created through the admin
// API on its unix socket, and workloads use the Workload API socket.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signet-id/signet/internal/agent"
	adminv1 "github.com/signet-id/signet/internal/gen/signet/admin/v1"
	commonv1 "github.com/signet-id/signet/internal/gen/signet/common/v1"
	"github.com/signet-id/signet/internal/server"
	"github.com/signet-id/signet/internal/workloadattest"
	"github.com/signet-id/signet/internal/workloadattest/unix"
)

// Config configures a dev environment. Zero values pick defaults.
type Config struct {
	TrustDomain spiffeid.TrustDomain // default example.org
	DataDir     string               // required; server/ and agent/ are created inside
	// X509TTL is the user's SVID lifetime (default 1h).
	X509TTL time.Duration
	// SyncInterval is the agent's (default 1s: dev changes show up at once).
	SyncInterval time.Duration
	Logger       *slog.Logger
}

// Env is a running dev environment.
type Env struct {
	Server     *server.Server
	Agent      *agent.Agent
	UserID     spiffeid.ID // the SPIFFE ID registered for the current user
	UserUID    int
	NodeID     spiffeid.ID
	SocketPath string // Workload API
}

// ServerConfig is the configuration of the server `signet dev` runs: trust
// domain td, state in dataDir (SQLite store, CA keys, admin socket), the
// agent API on 127.0.0.1 at a free port. Tests (internal/testenv) start
// theirs from it too.
func ServerConfig(td spiffeid.TrustDomain, dataDir string, log *slog.Logger) server.Config {
	return server.Config{TrustDomain: td, DataDir: dataDir, BindAddress: "127.0.0.1:0", Logger: log}
}

// AgentConfig is the configuration of the agent `signet dev` runs beside
// srv: it attests with join token (empty: it must hold an SVID in dataDir
// already), bootstraps trust from srv's current bundle, keeps its state in
// dataDir and serves the Workload API on socket, attesting callers with
// the unix workload attestor. Tests (internal/testenv) start theirs from
// it too.
func AgentConfig(srv *server.Server, token, dataDir, socket string, log *slog.Logger) (agent.Config, error) {
	ux, err := unix.New(unix.DefaultConfig(), log)
	if err != nil {
		return agent.Config{}, err
	}
	return agent.Config{
		ServerAddress: srv.Addr().String(),
		TrustBundle:   srv.Bundle().X509Authorities(),
		JoinToken:     token,
		DataDir:       dataDir,
		SocketPath:    socket,
		Attestors:     []workloadattest.Attestor{ux},
		Logger:        log,
	}, nil
}

// Start builds the server and the agent, starts both, registers the
// current user and waits until the agent serves the user's SVID. The
// environment runs until ctx is done; wait for Done to see it stop.
func Start(ctx context.Context, cfg Config) (*Env, <-chan error, error) {
	if cfg.DataDir == "" {
		return nil, nil, errors.New("devenv: DataDir is required")
	}
	if cfg.TrustDomain.IsZero() {
		cfg.TrustDomain = spiffeid.RequireTrustDomainFromString("example.org")
	}
	if cfg.X509TTL == 0 {
		cfg.X509TTL = time.Hour
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create dev data dir: %w", err)
	}
	srv, err := server.New(ctx, ServerConfig(cfg.TrustDomain, filepath.Join(cfg.DataDir, "server"), cfg.Logger))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); done <- srv.Run(ctx) }()
	fail := func(err error) (*Env, <-chan error, error) {
		cancel()
		wg.Wait()
		return nil, nil, err
	}

	env := &Env{
		Server:     srv,
		NodeID:     spiffeid.RequireFromPath(cfg.TrustDomain, "/node/dev"),
		UserUID:    os.Getuid(),
		SocketPath: filepath.Join(cfg.DataDir, "agent.sock"),
	}
	userName := strconv.Itoa(env.UserUID)
	if u, err := user.Current(); err == nil && u.Username != "" {
		userName = u.Username
	}
	if env.UserID, err = spiffeid.FromSegments(cfg.TrustDomain, "user", userName); err != nil {
		return fail(fmt.Errorf("derive user id for %q: %w", userName, err))
	}
	token, err := env.register(ctx, srv.AdminSocket(), cfg.X509TTL)
	if err != nil {
		return fail(err)
	}
	acfg, err := AgentConfig(srv, token, filepath.Join(cfg.DataDir, "agent"), env.SocketPath, cfg.Logger)
	if err != nil {
		return fail(err)
	}
	acfg.SyncInterval = cfg.SyncInterval
	env.Agent, err = agent.New(acfg)
	if err != nil {
		return fail(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); done <- env.Agent.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := env.Agent.WaitReady(wctx); err != nil {
		return fail(fmt.Errorf("agent did not become ready: %w", err))
	}
	stopped := make(chan error, 1)
	go func() {
		err := <-done
		cancel()
		wg.Wait()
		stopped <- err
	}()
	return env, stopped, nil
}

// register creates the node's join token and the current user's entry
// through the admin API, tolerating what an earlier run already created.
func (e *Env) register(ctx context.Context, adminSocket string, ttl time.Duration) (string, error) {
	cc, err := grpc.NewClient("unix://"+adminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", fmt.Errorf("dial admin socket: %w", err)
	}
	defer cc.Close()
	admin := adminv1.NewAdminClient(cc)
	tok, err := admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{SpiffeId: e.NodeID.String(), TtlSeconds: 600})
	if err != nil {
		return "", fmt.Errorf("create join token: %w", err)
	}
	resp, err := admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: []*commonv1.Entry{{
		SpiffeId:       e.UserID.String(),
		ParentId:       e.NodeID.String(),
		Selectors:      []*commonv1.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(e.UserUID)}},
		X509TtlSeconds: int64(ttl / time.Second),
		Labels:         map[string]string{"environment": "dev", "owner": e.UserID.Path()},
	}}})
	if err != nil {
		return "", fmt.Errorf("register current user: %w", err)
	}
	if st := resp.GetResults()[0].GetStatus(); codes.Code(st.GetCode()) != codes.OK && codes.Code(st.GetCode()) != codes.AlreadyExists {
		return "", fmt.Errorf("register current user: %s", st.GetMessage())
	}
	return tok.GetToken(), nil
}
