package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/internal/server"
)

// TestServerConfigUpstreamAuthority: the upstream_authority block of the
// config file reaches server.Config; an empty block is an error.
func TestServerConfigUpstreamAuthority(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "server.yaml")
	yaml := "trust_domain: example.org\nupstream_authority:\n  disk:\n    cert_file: /etc/signet/up.crt\n" +
		"    key_file: /etc/signet/up.key\n    bundle_file: /etc/signet/roots.crt\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	resolve := func() (server.Config, error) {
		var f serverFlags
		cmd := serverRunCmd(&f)
		if err := cmd.ParseFlags([]string{"--config", p}); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := f.resolve()
		return cfg, err
	}
	cfg, err := resolve()
	if err != nil {
		t.Fatalf("resolve() = %v", err)
	}
	disk, ok := cfg.UpstreamAuthority["disk"]
	if !ok {
		t.Fatalf("resolve().UpstreamAuthority = %v, want the disk section", cfg.UpstreamAuthority)
	}
	var got struct {
		CertFile   string `yaml:"cert_file"`
		KeyFile    string `yaml:"key_file"`
		BundleFile string `yaml:"bundle_file"`
	}
	if err := disk.Decode(&got); err != nil || got.CertFile != "/etc/signet/up.crt" || got.KeyFile != "/etc/signet/up.key" ||
		got.BundleFile != "/etc/signet/roots.crt" {
		t.Errorf("resolve().UpstreamAuthority.disk = %+v, %v", got, err)
	}

	if err := os.WriteFile(p, []byte("trust_domain: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := resolve(); err != nil || len(cfg.UpstreamAuthority) != 0 {
		t.Errorf("resolve(no upstream_authority) = %+v, %v; want none", cfg.UpstreamAuthority, err)
	}
}
