package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/store"
)

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
			`--server-address: "signet.example.org" is not host:port`},
		{"server list with a bad element", nil, []string{"--server-address", "a.internal:8081,b.internal"},
			`--server-address: element 2 of 2: "b.internal" is not host:port`},
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
}
