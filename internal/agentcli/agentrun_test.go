package agentcli

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// agentConfigFrom runs `agent run`'s resolution on a config file and flags.
func agentConfigFrom(t *testing.T, file string, args ...string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte("server_address: server:8081\n"+file), 0o600); err != nil {
		t.Fatal(err)
	}
	var f agentFlags
	cmd := agentRunCmd(&f)
	if err := cmd.ParseFlags(append([]string{"--config", path}, args...)); err != nil {
		t.Fatal(err)
	}
	c, err := f.resolve()
	if err != nil {
		return err
	}
	_, err = f.agentConfig(c, slog.New(slog.DiscardHandler))
	return err
}

func TestAgentAttestorConfig(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(joinTokenEnv, "")
	tests := []struct {
		name, file string
		args       []string
		want       string // "" means success
	}{
		{"no attestor (an SVID may be on disk)", "", nil, ""},
		{"join_token section", "node_attestor:\n  join_token: {token: abc}\n", nil, ""},
		{"join_token section with file", "node_attestor:\n  join_token: {token_file: " + tokenFile + "}\n", nil, ""},
		{"two node attestors", "node_attestor:\n  join_token: {token: abc}\n  x509pop: {}\n", nil,
			"node_attestor: configure exactly one node attestor, not 2 (join_token, x509pop)"},
		{"unknown node attestor", "node_attestor:\n  made_up: {}\n", nil, "node_attestor.made_up: unknown node attestor: use one of "},
		{"bad section key", "node_attestor:\n  join_token: {tokn: abc}\n", nil, "node_attestor.join_token.tokn is not a known key"},
		{"shorthand flag", "", []string{"--join-token", "abc"}, ""},
		{"shorthand key", "join_token: abc\n", nil, ""},
		{"shorthand file", "", []string{"--join-token-file", tokenFile}, ""},
		{"shorthand and section", "node_attestor:\n  join_token: {token: abc}\n", []string{"--join-token", "abc"},
			"--join-token and node_attestor.join_token"},
		{"token and token file", "join_token_file: " + tokenFile + "\n", []string{"--join-token", "abc"},
			"--join-token and --join-token-file (join_token_file): give the join token one way, not both"},
		{"bad token names the flag", "", []string{"--join-token", "a b"}, "--join-token: join_token attestor: join token has a non-printable or space character"},
		{"bad token names the key", "join_token: \"a b\"\n", nil, "--join-token (join_token): join_token attestor"},
		{"missing token file", "", []string{"--join-token-file", "/nonexistent/token"}, "--join-token-file: read join token file"},
		{"workload attestors: unix configured", "workload_attestors:\n  unix: {}\n", nil, ""},
		{"workload attestors: unknown", "workload_attestors:\n  kubernetes: {}\n", nil, "workload_attestors.kubernetes: unknown workload attestor: use one of docker, k8s, systemd, unix"},
		{"workload attestors: k8s, docker, systemd", "workload_attestors:\n  k8s: {skip_kubelet_verification: true}\n  docker: {}\n  systemd: {}\n", nil, ""},
		{"workload attestors: k8s without its CA", "workload_attestors:\n  k8s: {kubelet_ca_path: /nonexistent/ca.crt}\n", nil, "workload_attestors.k8s: kubelet_ca_path: open /nonexistent/ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := agentConfigFrom(t, tt.file, tt.args...)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("agent config = %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("agent config = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// TestAgentUnixAlwaysOn: unix is built even when workload_attestors does
// not list it.
func TestAgentUnixAlwaysOn(t *testing.T) {
	for _, file := range []string{"", "workload_attestors: {}\n", "workload_attestors:\n  unix: {}\n"} {
		var f agentFlags
		cmd := agentRunCmd(&f)
		path := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(path, []byte("server_address: s:1\n"+file), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags([]string{"--config", path}); err != nil {
			t.Fatal(err)
		}
		c, err := f.resolve()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := f.agentConfig(c, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Attestors) != 1 || cfg.Attestors[0].Name() != "unix" {
			t.Errorf("file %q: attestors = %v, want [unix]", file, cfg.Attestors)
		}
	}
}

// TestAgentJoinTokenEnv: $SIGNET_JOIN_TOKEN is the join token when nothing
// else gives one.
func TestAgentJoinTokenEnv(t *testing.T) {
	t.Setenv(joinTokenEnv, "from-env")
	var f agentFlags
	cmd := agentRunCmd(&f)
	if err := cmd.ParseFlags([]string{"--server-address", "s:1"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.resolve()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.agentConfig(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeAttestor == nil || cfg.NodeAttestor.Name() != "join_token" {
		t.Fatalf("node attestor = %v, want join_token from $%s", cfg.NodeAttestor, joinTokenEnv)
	}
	t.Setenv(joinTokenEnv, "bad token")
	if _, err := f.agentConfig(c, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "$"+joinTokenEnv) {
		t.Fatalf("bad $%s: err = %v, want it named", joinTokenEnv, err)
	}
}

// TestAgentConfigErrNamesFlags: the agent's own validation speaks of Go
// fields; agentConfigErr shows the flags and keys instead.
func TestAgentConfigErrNamesFlags(t *testing.T) {
	got := AgentConfigErr(errors.New("invalid agent config: SocketPath: too long\nJoinToken: bad; no valid agent SVID in /x and no --join-token given")).Error()
	for _, want := range []string{"--socket (socket): too long", "--join-token (join_token): bad", "no join token given (--join-token-file"} {
		if !strings.Contains(got, want) {
			t.Errorf("agentConfigErr = %q, want %q", got, want)
		}
	}
}

// TestAgentFlagsOverFile checks the agent's merge the same way.
func TestAgentFlagsOverFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte("server_address: file:8081\nsocket: /file.sock\nsync_interval: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var f agentFlags
	cmd := agentRunCmd(&f)
	if err := cmd.ParseFlags([]string{"--config", path, "--socket", "/flag.sock", "--attest-timeout", "1d"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.resolve()
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if c.ServerAddress != "file:8081" || c.Socket != "/flag.sock" || time.Duration(c.SyncInterval) != 2*time.Second ||
		time.Duration(c.AttestTimeout) != 24*time.Hour || c.DataDir != DefaultAgentDataDir {
		t.Errorf("resolve = %+v", c)
	}
}

func TestIdleProcs(t *testing.T) {
	for _, c := range []struct {
		keep bool
		env  string
		want int
	}{
		{false, "", 1},
		{true, "", 0},
		{false, "4", 0}, // the operator's GOMAXPROCS stays
		{true, "4", 0},
	} {
		if got := idleProcs(c.keep, c.env); got != c.want {
			t.Errorf("idleProcs(keep %v, GOMAXPROCS %q) = %d, want %d", c.keep, c.env, got, c.want)
		}
	}
}
