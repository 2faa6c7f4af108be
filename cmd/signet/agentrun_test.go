package main

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/store"
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

// TestAgentStartupRefusalsCreateNothing: `agent run` refuses a bad data
// dir, socket or health address before it creates state or spends its
// join token.
func TestAgentStartupRefusalsCreateNothing(t *testing.T) {
	c := newCLIEnv(t, store.DriverSQLite)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tmp := t.TempDir()
	served := filepath.Join(tmp, "served.sock")
	sl, err := net.Listen("unix", served)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	token := strings.TrimSpace(c.mustRun(t, "token", "create", "--spiffe-id", "spiffe://example.org/node/pre"))

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		args  []string
		want  string
	}{
		{"socket too long", nil, []string{"--socket", filepath.Join(tmp, strings.Repeat("s", 120))},
			"bytes long: unix socket paths are limited to 107 bytes on Linux"},
		{"socket served by another agent", nil, []string{"--socket", served}, "--socket " + served + " is in use"},
		{"health address in use", nil, []string{"--health-address", busy.Addr().String()},
			"--health-address " + busy.Addr().String() + " is already in use"},
		{"data dir writable by others", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o770); err != nil {
				t.Fatal(err)
			}
		}, nil, "--data-dir " + "DIR is writable by its group or by others (mode 0770)"},
		{"data dir of another user", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory to another user")
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, nil, "is owned by uid 12345"},
		{"server address not host:port", nil, []string{"--server-address", "signet.example.org"},
			`--server-address "signet.example.org": want host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "agent")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			args := append([]string{"agent", "run", "--server-address", c.env.Server.Addr().String(), "--join-token", token,
				"--data-dir", dir, "--socket", filepath.Join(t.TempDir(), "agent.sock")}, tt.args...)
			_, _, err := execCLI(t, args...)
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("agent run = %v, want %q", err, want)
			}
			if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
				t.Errorf("a refused start left files in the data dir: %v", entries)
			} else if tt.setup == nil && err == nil {
				t.Error("a refused start created the data dir")
			}
		})
	}
	if out := c.mustRun(t, "token", "list"); !strings.Contains(out, "spiffe://example.org/node/pre") {
		t.Errorf("a refused start spent the join token:\n%s", out)
	}
}

// TestAgentErrorsNameFlags: the agent's own validation speaks of Go
// fields; agent run shows the flags and keys instead.
func TestAgentErrorsNameFlags(t *testing.T) {
	dir := t.TempDir()
	_, _, err := execCLI(t, "agent", "run", "--server-address", "127.0.0.1:1", "--trust-domain", "Bad..Domain",
		"--data-dir", filepath.Join(dir, "agent"), "--socket", filepath.Join(dir, "agent.sock"))
	if err == nil || !strings.Contains(err.Error(), "--trust-domain (trust_domain)") || strings.Contains(err.Error(), "TrustDomain") {
		t.Errorf("agent run --trust-domain Bad..Domain = %v", err)
	}
	got := agentConfigErr(errors.New("invalid agent config: SocketPath: too long\nJoinToken: bad; no valid agent SVID in /x and no --join-token given")).Error()
	for _, want := range []string{"--socket (socket): too long", "--join-token (join_token): bad", "no join token given (--join-token-file"} {
		if !strings.Contains(got, want) {
			t.Errorf("agentConfigErr = %q, want %q", got, want)
		}
	}
}
