package server_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/server"
)

// TestStartupRefusalsCreateNothing: each start-up check refuses before the
// server writes a data dir, an instance id, keys or a database.
func TestStartupRefusalsCreateNothing(t *testing.T) {
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

	goodKEK := kek(t, tmp)
	openKEK := writeFile(t, tmp, "open.kek", strings.Repeat("k", 32), 0o644)
	shortKEK := writeFile(t, tmp, "short.kek", "0123456789", 0o600)
	policyFile := writeFile(t, tmp, "policy.yaml", brokerPolicy, 0o600)
	badPolicy := writeFile(t, tmp, "bad.yaml", "rules:\n  - name: broken\n    credentials: [stripe]\n    when: subject.id == 1\n", 0o600)
	openDSN := writeFile(t, tmp, "open.dsn", "postgres://postgres@127.0.0.1:5432/test", 0o644)
	goodDSN := writeFile(t, tmp, "good.dsn", "postgres://postgres@127.0.0.1:5432/test", 0o600)
	withBroker := func(kekFile, policy, credentials string) func(c *server.Config) {
		return func(c *server.Config) {
			c.Broker = server.BrokerConfig{KEKFile: kekFile, PolicyFile: policy, Credentials: creds(t, credentials)}
		}
	}
	// An ssh credential (whose provider would generate its CA key) next
	// to a refused one: nothing is generated.
	sshKey := filepath.Join(tmp, "ssh-ca.key")

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // dir: the data dir, not yet created
		cfg   func(c *server.Config)
		want  string
	}{
		{"bind address in use", nil, func(c *server.Config) { c.BindAddress = busy.Addr().String() },
			"bind_address " + busy.Addr().String() + " is already in use"},
		{"health address in use", nil, func(c *server.Config) { c.HealthAddress = busy.Addr().String() },
			"health_address " + busy.Addr().String() + " is already in use"},
		{"admin socket too long", nil, func(c *server.Config) { c.AdminSocket = filepath.Join(tmp, strings.Repeat("s", 120)) },
			"bytes long: unix socket paths are limited to 107 bytes on Linux"},
		{"admin socket served by another process", nil, func(c *server.Config) { c.AdminSocket = served },
			"admin_socket " + served + " is in use"},
		{"oidc issuer without a kind", nil, func(c *server.Config) {
			c.OIDCIssuers = map[string]config.OIDCIssuer{"corp": {Issuer: "https://ci.corp.example"}}
		}, "oidc_issuers.corp.kind is required"},
		{"broker unknown provider", nil, withBroker(goodKEK, policyFile, "x: {provider: vault}"),
			`broker.credentials.x: unknown credential provider "vault"`},
		{"broker bad template", nil, withBroker(goodKEK, policyFile,
			"orders-db: {provider: postgres, dsn_file: "+goodDSN+", creation_statements: [\"CREATE ROLE {{name}} PASSWORD '{{password}}'\"]}"),
			"broker.credentials.orders-db.creation_statements[0]: "},
		{"broker missing kek_file", nil, withBroker("", policyFile, "stripe: {provider: static}"),
			"broker.kek_file: required"},
		{"broker kek readable by others", nil, withBroker(openKEK, policyFile, "stripe: {provider: static}"),
			"broker.kek_file: " + openKEK + " has mode 0644"},
		{"broker kek of the wrong size", nil, withBroker(shortKEK, policyFile, "stripe: {provider: static}"),
			"broker.kek_file: " + shortKEK + " holds 10 bytes"},
		{"broker kek missing", nil, withBroker(filepath.Join(tmp, "none.kek"), policyFile, "stripe: {provider: static}"),
			"broker.kek_file: open "},
		{"broker policy does not compile", nil, withBroker(goodKEK, badPolicy, "stripe: {provider: static}"),
			"broker.policy_file: "},
		{"broker dsn_file readable by others", nil, withBroker(goodKEK, policyFile,
			"orders-db: {provider: postgres, dsn_file: "+openDSN+", creation_statements: [\"CREATE ROLE {{name}} LOGIN PASSWORD {{password}}\"]}"),
			"broker.credentials.orders-db.dsn_file: " + openDSN + " has mode 0644"},
		{"broker dsn_file missing", nil, withBroker(goodKEK, policyFile,
			"orders-db: {provider: postgres, dsn_file: "+filepath.Join(tmp, "none.dsn")+", creation_statements: [\"CREATE ROLE {{name}} LOGIN PASSWORD {{password}}\"]}"),
			"broker.credentials.orders-db.dsn_file: "},
		{"broker ssh next to a refused credential", nil, withBroker(goodKEK, policyFile,
			"x: {provider: vault}\nssh: {provider: ssh, ca_key_file: "+sshKey+"}"),
			`broker.credentials.x: unknown credential provider "vault"`},
		{"data dir writable by others", func(t *testing.T, dir string) {
			mkdir(t, dir)
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, nil, "is writable by its group or by others (mode 0777): chmod 700 "},
		{"data dir of another user", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory to another user")
			}
			mkdir(t, dir)
			if err := os.Chown(dir, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, nil, "is owned by uid 12345, not by uid 0"},
		{"data dir is a file", func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "server")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			cfg := server.Config{
				TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
				DataDir:     dir,
				BindAddress: "127.0.0.1:0",
			}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			srv, err := server.New(t.Context(), cfg)
			if err == nil {
				t.Fatalf("server.New succeeded (%v), want %q", srv.Addr(), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("server.New() = %v, want %q", err, tt.want)
			}
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
				entries, _ := os.ReadDir(dir)
				if len(entries) > 0 {
					t.Errorf("a refused start left %d files in the data dir: %v", len(entries), entries)
				}
			} else if tt.setup == nil && err == nil {
				t.Errorf("a refused start created the data dir")
			}
			if _, err := os.Stat(sshKey); err == nil {
				t.Errorf("a refused start generated the ssh CA key %s", sshKey)
			}
		})
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}
