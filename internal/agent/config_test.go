package agent

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func validConfig(t *testing.T, ca *testCA) Config {
	dir := t.TempDir()
	return Config{
		ServerAddress: "127.0.0.1:8081",
		TrustBundle:   []*x509.Certificate{ca.cert},
		JoinToken:     "tok-123",
		DataDir:       filepath.Join(dir, "data"),
		SocketPath:    filepath.Join(dir, "api.sock"),
	}
}

func TestConfigValidation(t *testing.T) {
	ca := newTestCA(t, "example.org")
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   []string // substrings of the error; nil = valid
	}{
		{"valid", func(*Config) {}, nil},
		{"no server", func(c *Config) { c.ServerAddress = "" }, []string{"ServerAddress: required"}},
		{"server without port", func(c *Config) { c.ServerAddress = "example.org" }, []string{"ServerAddress:", "not host:port"}},
		{"server bad port", func(c *Config) { c.ServerAddress = "example.org:99999" }, []string{"ServerAddress:", "port from 1 to 65535"}},
		{"server no host", func(c *Config) { c.ServerAddress = ":8081" }, []string{"ServerAddress:"}},
		{"bad trust domain", func(c *Config) { c.TrustDomain = "Not Valid" }, []string{"TrustDomain:"}},
		{"nil bundle cert", func(c *Config) { c.TrustBundle = []*x509.Certificate{nil} }, []string{"TrustBundle[0]: nil certificate"}},
		{"bad token", func(c *Config) { c.JoinToken = "has space" }, []string{"JoinToken:"}},
		{"no data dir", func(c *Config) { c.DataDir = "" }, []string{"DataDir: required"}},
		{"no socket", func(c *Config) { c.SocketPath = "" }, []string{"SocketPath: required"}},
		{"long socket", func(c *Config) { c.SocketPath = "/" + strings.Repeat("s", 200) }, []string{"SocketPath:", "107-byte limit"}},
		{"negative interval", func(c *Config) { c.SyncInterval = -time.Second }, []string{"SyncInterval: -1s is negative"}},
		{"negative timeout", func(c *Config) { c.RPCTimeout = -time.Second }, []string{"RPCTimeout:"}},
		{"everything at once", func(c *Config) { c.ServerAddress, c.DataDir, c.SocketPath = "", "", "" },
			[]string{"ServerAddress: required", "DataDir: required", "SocketPath: required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t, ca)
			tc.modify(&cfg)
			_, err := New(cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New() = nil, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() = %q, want it to contain %q", err, w)
				}
			}
			if cfg.JoinToken != "" && strings.Contains(err.Error(), cfg.JoinToken) {
				t.Errorf("New() error %q contains the join token", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	ca := newTestCA(t, "example.org")
	a, err := New(validConfig(t, ca))
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.SyncInterval != DefaultSyncInterval || a.cfg.MaxBackoff != DefaultMaxBackoff || a.cfg.RPCTimeout != DefaultRPCTimeout {
		t.Errorf("defaults = %s/%s/%s, want %s/%s/%s", a.cfg.SyncInterval, a.cfg.MaxBackoff, a.cfg.RPCTimeout,
			DefaultSyncInterval, DefaultMaxBackoff, DefaultRPCTimeout)
	}
	if len(a.cfg.Attestors) != 1 || a.cfg.Attestors[0].Name() != "unix" {
		t.Errorf("default attestors = %v, want [unix]", a.cfg.Attestors)
	}
	if a.TrustDomain().Name() != "example.org" {
		t.Errorf("TrustDomain() = %s, want example.org (from the bootstrap CA)", a.TrustDomain())
	}
}

func TestConfigMetricsRegisteredOnce(t *testing.T) {
	ca := newTestCA(t, "example.org")
	reg := prometheus.NewRegistry()
	cfg := validConfig(t, ca)
	cfg.Registerer = reg
	if _, err := New(cfg); err != nil {
		t.Fatalf("New() = %v", err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "register agent metrics") {
		t.Errorf("second New() on one registry = %v, want a registration error", err)
	}
}

func TestTrustDomainFromCerts(t *testing.T) {
	a := newTestCA(t, "example.org")
	a2 := newTestCA(t, "example.org")
	b := newTestCA(t, "other.org")
	plain := newTestCA(t, "example.org")
	plain.cert = &x509.Certificate{Raw: plain.cert.Raw} // no URI SAN
	for _, tc := range []struct {
		name    string
		certs   []*x509.Certificate
		want    string
		wantErr string
	}{
		{"one", []*x509.Certificate{a.cert}, "example.org", ""},
		{"two of one domain", []*x509.Certificate{a.cert, a2.cert}, "example.org", ""},
		{"skips certs without spiffe SAN", []*x509.Certificate{plain.cert, a.cert}, "example.org", ""},
		{"ambiguous", []*x509.Certificate{a.cert, b.cert}, "", "several trust domains"},
		{"none", []*x509.Certificate{plain.cert}, "", "no spiffe:// URI SAN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td, err := trustDomainFromCerts(tc.certs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("trustDomainFromCerts() = %v, %v; want error containing %q", td, err, tc.wantErr)
				}
				return
			}
			if err != nil || td.Name() != tc.want {
				t.Fatalf("trustDomainFromCerts() = %v, %v; want %s", td, err, tc.want)
			}
		})
	}
}

func TestResolveTrustDomain(t *testing.T) {
	ca := newTestCA(t, "example.org")
	other := newTestCA(t, "other.org")

	cfg := validConfig(t, ca)
	cfg.TrustDomain = "explicit.org"
	cfg.TrustBundle = []*x509.Certificate{ca.cert, other.cert} // ambiguous, but TrustDomain wins
	a, err := New(cfg)
	if err != nil || a.TrustDomain().Name() != "explicit.org" {
		t.Fatalf("New(explicit TrustDomain) = %v; trust domain %v, want explicit.org", err, a)
	}

	cfg = validConfig(t, ca)
	cfg.TrustBundle = []*x509.Certificate{ca.cert, other.cert}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "several trust domains") {
		t.Errorf("New(ambiguous bundle) = %v, want an ambiguity error", err)
	}

	// No bundle and no trust domain: taken from the persisted agent SVID.
	cfg = validConfig(t, ca)
	cfg.TrustBundle = nil
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "TrustDomain: required") {
		t.Errorf("New(no bundle, empty data dir) = %v, want TrustDomain required", err)
	}
	dir, err := openDataDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.saveAgentSVID(newAgentSVID(t, ca, time.Now(), time.Hour)); err != nil {
		t.Fatal(err)
	}
	dir.Close()
	a, err = New(cfg)
	if err != nil || a.TrustDomain() != spiffeid.RequireTrustDomainFromString("example.org") {
		t.Fatalf("New(persisted svid) = %v, want trust domain example.org", err)
	}
	// Run refuses without any bundle to trust.
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "TrustBundle: required") {
		t.Errorf("Run() without any bundle = %v, want TrustBundle required", err)
	}
}
