package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	upstreamdisk "github.com/signet-id/signet/internal/ca/upstream/disk"
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
	f := serverFlags{configPath: p}
	cfg, _, _, err := f.resolve(pflag.NewFlagSet("run", pflag.ContinueOnError))
	if err != nil {
		t.Fatalf("resolve() = %v", err)
	}
	want := upstreamdisk.Config{CertFile: "/etc/signet/up.crt", KeyFile: "/etc/signet/up.key", BundleFile: "/etc/signet/roots.crt"}
	if cfg.UpstreamDisk == nil || cfg.UpstreamDisk.CertFile != want.CertFile || cfg.UpstreamDisk.KeyFile != want.KeyFile ||
		cfg.UpstreamDisk.BundleFile != want.BundleFile {
		t.Errorf("resolve().UpstreamDisk = %+v, want %+v", cfg.UpstreamDisk, want)
	}

	if err := os.WriteFile(p, []byte("trust_domain: example.org\nupstream_authority: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.resolve(pflag.NewFlagSet("run", pflag.ContinueOnError)); err == nil || !strings.Contains(err.Error(), "use disk") {
		t.Errorf("resolve(empty upstream_authority) = %v, want an error naming disk", err)
	}

	if err := os.WriteFile(p, []byte("trust_domain: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, _, _, err := f.resolve(pflag.NewFlagSet("run", pflag.ContinueOnError)); err != nil || cfg.UpstreamDisk != nil {
		t.Errorf("resolve(no upstream_authority) = %+v, %v; want nil", cfg.UpstreamDisk, err)
	}
}
