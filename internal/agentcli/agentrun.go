package agentcli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/agent"
	"github.com/signet-id/signet/internal/builtin/agentside"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/healthz"
	"github.com/signet-id/signet/internal/keyfile"
	"github.com/signet-id/signet/internal/memtrim"
	"github.com/signet-id/signet/internal/nodeattest"
	"github.com/signet-id/signet/internal/nodeattest/jointoken"
	"github.com/signet-id/signet/internal/plugin"
	"github.com/signet-id/signet/internal/preflight"
	"github.com/signet-id/signet/internal/telemetry"
	"github.com/signet-id/signet/internal/workloadattest"
)

// agentFlags are `agent run`'s flags: --config, and one flag per key of
// the configuration file (config.Agent's flag tags).
type agentFlags struct {
	configPath string
	flags      *config.Flags[config.Agent]
	build      Build
}

// joinTokenEnv holds a join token for `agent run`, so that it shows in
// neither ps nor a config file.
const joinTokenEnv = "SIGNET_JOIN_TOKEN"

// agentDefaults are what `agent run` uses for keys neither a flag nor the
// file sets; shown in help.
func agentDefaults() config.Agent {
	return config.Agent{
		DataDir: DefaultAgentDataDir, Socket: DefaultAgentSocket,
		SyncInterval: config.Duration(agent.DefaultSyncInterval), AttestTimeout: config.Duration(agent.DefaultAttestTimeout),
		Log: config.Log{Level: "info"},
	}
}

// NewAgentRunCmd builds `agent run`: signet's `agent run` and the slim
// signet-agent's. b is the binary's link-time stamps; the agent reports
// its version to the server.
func NewAgentRunCmd(b Build) *cobra.Command { return agentRunCmd(&agentFlags{build: b}) }

// agentRunCmd builds `agent run` over f, which holds its flags.
func agentRunCmd(f *agentFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent: attest this node, sync its entries and serve the Workload API",
		Example: `  signet agent run --server-address signet.example.org:8081 --trust-bundle bundle.pem \
      --join-token-file /etc/signet/join-token --socket /run/signet/agent.sock --data-dir /var/lib/signet/agent
  SIGNET_JOIN_TOKEN=… signet agent run --config /etc/signet/agent.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.resolve()
			if err != nil {
				return err
			}
			if err := f.preflight(c); err != nil {
				return err
			}
			log, err := NewLogger(os.Stderr, c.Log.Level, c.Log.Format)
			if err != nil {
				return err
			}
			cfg, err := f.agentConfig(c, log)
			if err != nil {
				return err
			}
			var reg *prometheus.Registry
			if c.HealthAddress != "" {
				reg = prometheus.NewRegistry()
				cfg.Registerer = reg
			}
			tracing, flush, err := StartTracing(cmd.Context(), "signet-agent", log)
			if err != nil {
				return err
			}
			defer flush()
			cfg.TracerProvider = tracing.Provider()
			a, err := agent.New(cfg)
			if err != nil {
				return AgentConfigErr(err)
			}
			var health *healthz.Server
			if c.HealthAddress != "" {
				// Synced says what a degraded agent waits for (its first sync,
				// or the server to re-establish an expired agent SVID).
				ready := map[string]healthz.Check{"synced": a.Synced}
				if health, err = healthz.Listen(c.HealthAddress,
					telemetry.HTTPHandler(cfg.TracerProvider, "health", healthz.Handler(ready, reg)), log); err != nil {
					return fmt.Errorf("%s: %w", f.flags.Name("health-address"), err)
				}
				defer health.Close()
			}
			if !c.KeepStartupMemory {
				go releaseMemory(cmd.Context(), a, log)
			}
			return AgentConfigErr(runAgent(cmd.Context(), a, health))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "YAML configuration file; flags given explicitly override its keys")
	f.flags = config.BindFlags(fl, agentDefaults())
	return cmd
}

// AgentSettings is `agent run`'s configuration as `signet doctor --agent`
// reads it: the same file-then-flags merge and the same agent.Config.
type AgentSettings struct{ f *agentFlags }

// AgentDefaults are `agent run`'s defaults for keys neither a flag nor the
// file sets.
func AgentDefaults() config.Agent { return agentDefaults() }

// NewAgentSettings reads configPath (may be empty) and the flags given
// explicitly in flags, as `agent run` would.
func NewAgentSettings(configPath string, flags *config.Flags[config.Agent]) *AgentSettings {
	return &AgentSettings{f: &agentFlags{configPath: configPath, flags: flags}}
}

// Resolve is `agent run`'s merged configuration.
func (s *AgentSettings) Resolve() (config.Agent, error) { return s.f.resolve() }

// AgentConfig is the agent.Config `agent run` would build from c.
func (s *AgentSettings) AgentConfig(c config.Agent, log *slog.Logger) (agent.Config, error) {
	return s.f.agentConfig(c, log)
}

// Flags are the settings' flags, for naming them in messages.
func (s *AgentSettings) Flags() *config.Flags[config.Agent] { return s.f.flags }

// resolve merges the config file and the flags given explicitly.
func (f *agentFlags) resolve() (config.Agent, error) {
	var c config.Agent
	if f.configPath != "" {
		fc, err := config.LoadAgent(f.configPath)
		if err != nil {
			return c, err
		}
		c = *fc
	}
	f.flags.Merge(&c)
	if c.ServerAddress == "" {
		return c, fmt.Errorf("--server-address is required (or server_address in --config), e.g. signet.example.org:8081")
	}
	return c, nil
}

// preflight checks what would make the agent fail after it has started
// creating state (its data dir, its SVID, a spent join token): a data dir
// someone else may write, a socket path that is too long or served by
// another agent, a health address in use, a malformed server address.
func (f *agentFlags) preflight(c config.Agent) error {
	if _, err := agent.ParseServerAddresses(c.ServerAddress); err != nil {
		return fmt.Errorf("%s: %w", f.flags.Name("server-address"), err)
	}
	if err := preflight.DataDir(f.flags.Name("data-dir"), c.DataDir); err != nil {
		return err
	}
	if err := preflight.SocketPath(f.flags.Name("socket"), c.Socket); err != nil {
		return err
	}
	if c.HealthAddress != "" {
		if err := preflight.TCPFree(f.flags.Name("health-address"), c.HealthAddress); err != nil {
			return err
		}
	}
	return nil
}

// agentConfig builds the agent's configuration from the merged file: the
// trust bundle, the node attestor and the workload attestors.
func (f *agentFlags) agentConfig(c config.Agent, log *slog.Logger) (agent.Config, error) {
	cfg := agent.Config{
		ServerAddress: c.ServerAddress, TrustDomain: c.TrustDomain,
		DataDir: c.DataDir, SocketPath: c.Socket, SyncInterval: time.Duration(c.SyncInterval), Logger: log,
		AttestTimeout: time.Duration(c.AttestTimeout), Version: ReadBuildInfo(f.build).Version,
		IdleProcs: idleProcs(c.KeepGOMAXPROCS, os.Getenv("GOMAXPROCS")),
	}
	var err error
	if c.TrustBundle != "" {
		if cfg.TrustBundle, err = ReadPEMCerts(c.TrustBundle); err != nil {
			return cfg, fmt.Errorf("%s: %w", f.flags.Name("trust-bundle"), err)
		}
	}
	if cfg.NodeAttestor, err = f.nodeAttestor(c, log); err != nil {
		return cfg, err
	}
	if cfg.Attestors, err = WorkloadAttestors(c.WorkloadAttestors, log); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// idleProcs is the agent's IdleProcs: one P while it only serves (a
// Workload API call then wakes fewer threads: BENCHMARKS.md, "Workload API
// on one P"), unless keep_gomaxprocs is set or the GOMAXPROCS environment
// variable is, whose value the operator chose for the whole process.
func idleProcs(keep bool, env string) int {
	if keep || env != "" {
		return 0
	}
	return 1
}

// nodeAttestor builds the one node attestor the agent uses: the
// node_attestor section's, or join_token from the shorthands --join-token,
// --join-token-file or $SIGNET_JOIN_TOKEN. None is fine when the data dir
// already holds an agent SVID; the agent says so otherwise.
func (f *agentFlags) nodeAttestor(c config.Agent, log *slog.Logger) (nodeattest.Attestor, error) {
	reg, err := agentside.NodeAttestors()
	if err != nil {
		return nil, err
	}
	names := c.NodeAttestor.Names()
	shorthand := ""
	switch {
	case c.JoinToken != "":
		shorthand = f.flags.Name("join-token")
	case c.JoinTokenFile != "":
		shorthand = f.flags.Name("join-token-file")
	}
	switch {
	case len(names) > 1:
		return nil, fmt.Errorf("%s: configure exactly one node attestor, not %d (%s); known: %s",
			agentside.Key, len(names), strings.Join(names, ", "), strings.Join(reg.Names(), ", "))
	case c.JoinToken != "" && c.JoinTokenFile != "":
		return nil, fmt.Errorf("%s and %s: give the join token one way, not both",
			f.flags.Name("join-token"), f.flags.Name("join-token-file"))
	case len(names) == 1 && shorthand != "":
		return nil, fmt.Errorf("%s and %s.%s: %s is a shorthand for the join_token node attestor; give one of the two",
			shorthand, agentside.Key, names[0], shorthand)
	case len(names) == 1:
		n := c.NodeAttestor[names[0]]
		a, err := reg.Build(agentside.AttestorDeps{Log: log}, names[0], &n)
		if errors.Is(err, plugin.ErrDisabled) {
			return nil, fmt.Errorf("%s.%s is disabled by its settings: the agent needs one node attestor", agentside.Key, names[0])
		}
		return a, err
	case c.JoinToken != "":
		a, err := jointoken.New(c.JoinToken)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", shorthand, err)
		}
		return a, nil
	case c.JoinTokenFile != "":
		tok, err := jointoken.ReadTokenFile(c.JoinTokenFile)
		if err == nil {
			var a *jointoken.Attestor
			if a, err = jointoken.New(tok); err == nil {
				return a, nil
			}
		}
		return nil, fmt.Errorf("%s: %w", shorthand, err)
	case os.Getenv(joinTokenEnv) != "":
		a, err := jointoken.New(strings.TrimSpace(os.Getenv(joinTokenEnv)))
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", joinTokenEnv, err)
		}
		return a, nil
	}
	return nil, nil
}

// WorkloadAttestors builds the configured workload attestors; unix is
// always on, with its defaults when the section does not list it.
func WorkloadAttestors(sections config.Plugins, log *slog.Logger) ([]workloadattest.Attestor, error) {
	reg, err := agentside.WorkloadAttestors()
	if err != nil {
		return nil, err
	}
	all := config.Plugins{"unix": yaml.Node{}}
	maps.Copy(all, sections)
	return reg.BuildAll(agentside.WorkloadDeps{Log: log}, all)
}

// agentFieldNames maps agent.Config's Go field names, which its validation
// errors use, to the flags (and keys) of `agent run`.
var agentFieldNames = strings.NewReplacer(
	"ServerAddress", "--server-address (server_address)",
	"TrustBundle", "--trust-bundle (trust_bundle)",
	"TrustDomain", "--trust-domain (trust_domain)",
	"NodeAttestor", "node_attestor",
	"JoinToken", "--join-token (join_token)",
	"DataDir", "--data-dir (data_dir)",
	"SocketPath", "--socket (socket)",
	"SyncInterval", "--sync-interval (sync_interval)",
	"AttestTimeout", "--attest-timeout (attest_timeout)",
	"no --join-token given", "no join token given (--join-token-file, $"+joinTokenEnv+", --join-token or node_attestor)",
)

// AgentConfigErr rewords the agent's errors to name flags and keys, not Go
// fields.
func AgentConfigErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if out := agentFieldNames.Replace(msg); out != msg {
		return errors.New(out)
	}
	return err
}

// runAgent runs the agent, and its health endpoints when given, until a
// signal or the agent stops.
func runAgent(parent context.Context, a *agent.Agent, health *healthz.Server) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if health == nil {
		return a.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- health.Run(ctx) }()
	err := a.Run(ctx)
	cancel()
	if herr := <-done; err == nil {
		err = herr
	}
	return err
}

// releaseQuiet is how long the Workload API stays quiet before the agent
// pages out again the code that serving it read back in. The usage text
// of keep_startup_memory (internal/config) names it.
const releaseQuiet = 30 * time.Second

// releaseMemory waits until a is ready (its first sync complete,
// every SVID it made due held) and then pages out the binary's code and
// data that only start-up touched (package memtrim): package
// initialisation and the first sync. The code the agent goes on to run is
// read back at its first use. Once the Workload API has been quiet for
// releaseQuiet it pages out again what ran once after that (the first
// sync's tail, listeners starting), and then each time the API has
// served calls and been quiet for as long, what serving read back in: a
// page the agent still uses costs a fault to read back, one it does not
// stays out. An agent that stops first releases nothing.
func releaseMemory(ctx context.Context, a *agent.Agent, log *slog.Logger) {
	if a.WaitReady(ctx) != nil {
		return
	}
	r, err := memtrim.Release()
	if err != nil {
		log.Info("kept start-up memory: the binary cannot be paged out here", slog.Any("error", err))
		return
	}
	log.Info("released start-up memory", releaseAttrs(r)...)
	a.WhenWorkloadQuiet(ctx, releaseQuiet, func() {
		r, err := memtrim.Release()
		if err != nil {
			log.Warn("could not page out the binary again", slog.Any("error", err))
			return
		}
		log.Debug("released memory again: the workload api was quiet", releaseAttrs(r)...)
	})
}

// releaseAttrs are a memtrim.Release's log fields: resident and
// file-backed memory before and after (kB), and how long it took.
func releaseAttrs(r memtrim.Result) []any {
	return []any{
		slog.Int64("rss_kb_before", r.Before.RSS), slog.Int64("rss_kb_after", r.After.RSS),
		slog.Int64("file_kb_before", r.Before.File), slog.Int64("file_kb_after", r.After.File),
		slog.Float64("took_ms", float64(r.Took.Microseconds())/1000),
	}
}

// ReadPEMCerts reads every CERTIFICATE block of a PEM file.
func ReadPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := keyfile.Read(path)
	if err != nil {
		return nil, err
	}
	certs, err := keyfile.Certificates(path, data)
	if err != nil {
		return nil, fmt.Errorf("%w: create it with: signet bundle show > bundle.pem", err)
	}
	return certs, nil
}
