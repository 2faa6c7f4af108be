package testenv

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/server"
)

// Broker describes a server's credential broker for a test.
type Broker struct {
	// Policy is policy.yaml.
	Policy string
	// Credentials is the broker.credentials mapping (YAML); {{dir}}
	// stands for the directory Files are written to.
	Credentials string
	// Files are written, mode 0600, to a fresh directory before the
	// server starts (a DSN file, say); {{dir}} as in Credentials.
	Files map[string]string
}

// WithBroker configures the server's broker as b describes, with a fresh
// KEK, and its HTTPS listener on 127.0.0.1:0 (the token endpoint) unless
// another option sets one.
func WithBroker(t testing.TB, b Broker) Option {
	t.Helper()
	dir := t.TempDir()
	expand := func(s string) string { return strings.ReplaceAll(s, "{{dir}}", dir) }
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, content := range b.Files {
		write(name, expand(content))
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	var creds config.Plugins
	if err := yaml.Unmarshal([]byte(expand(b.Credentials)), &creds); err != nil {
		t.Fatalf("broker credentials: %v", err)
	}
	cfg := server.BrokerConfig{KEKFile: write("broker.kek", string(kek)), PolicyFile: write("policy.yaml", b.Policy), Credentials: creds}
	return func(c *server.Config) {
		if c.HTTPAddress == "" {
			c.HTTPAddress = "127.0.0.1:0"
		}
		c.Broker = cfg
	}
}
