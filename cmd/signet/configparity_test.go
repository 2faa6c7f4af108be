package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-id/signet/internal/agentcli"
	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/config"
)

// yamlPaths lists every key of a config struct as dotted YAML paths.
func yamlPaths(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			yamlPaths(f.Type, prefix+name+".", out)
			continue
		}
		out[prefix+name] = true
	}
}

// flagKey is the config key a run flag stands for: its name with '_' for
// '-', nested keys written as in the file.
func flagKey(flag string) string {
	for _, section := range []string{"store", "ca", "log", "http-tls", "broker", "ui-tls", "ui-oidc"} {
		if rest, ok := strings.CutPrefix(flag, section+"-"); ok {
			return strings.ReplaceAll(section, "-", "_") + "." + strings.ReplaceAll(rest, "-", "_")
		}
	}
	return strings.ReplaceAll(flag, "-", "_")
}

// TestRunFlagsMatchConfigKeys: a config file may hold everything the flags
// hold, and the other way round. Each flag of `server run` and `agent run`
// maps to a key of the YAML file (its name with '_' for '-', nested keys
// written as in the file), and each key has that flag, except the plugin
// sections, which are structured and file-only.
func TestRunFlagsMatchConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		cmd      *cobra.Command
		cfg      any
		fileOnly []string
	}{
		{newServerRunCmd(), config.Server{}, []string{"node_attestors", "key_manager", "upstream_authority", "oidc_issuers", "broker.credentials"}},
		{agentcli.NewAgentRunCmd(stamp()), config.Agent{}, []string{"node_attestor", "workload_attestors"}},
	} {
		keys := map[string]bool{}
		yamlPaths(reflect.TypeOf(tc.cfg), "", keys)
		flags := map[string]bool{}
		tc.cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "config" || f.Name == "help" {
				return
			}
			key := flagKey(f.Name)
			flags[key] = true
			if !keys[key] {
				t.Errorf("%s --%s has no config file key %q", tc.cmd.CommandPath(), f.Name, key)
			}
		})
		for _, k := range tc.fileOnly {
			if !keys[k] {
				t.Errorf("%s: file-only key %q is not a config key", tc.cmd.CommandPath(), k)
			}
			if flags[k] {
				t.Errorf("%s: plugin section %q has a flag", tc.cmd.CommandPath(), k)
			}
			delete(keys, k)
		}
		for k := range keys {
			if !flags[k] {
				t.Errorf("%s: config key %q has no flag --%s", tc.cmd.CommandPath(), k, strings.NewReplacer("_", "-", ".", "-").Replace(k))
			}
		}
	}
}

// TestServerFlagsOverFile: a flag given explicitly beats the file; the file
// beats the defaults; defaults fill only what neither sets.
func TestServerFlagsOverFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.yaml")
	file := `trust_domain: file.example
data_dir: /from/file
store: {driver: postgres, dsn: "postgres://db/signet"}
ca: {jwt_key_ttl: 2d}
join_token_ttl: 10m
node_attestors:
  join_token: {}
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	var f serverFlags
	cmd := serverRunCmd(&f)
	if err := cmd.ParseFlags([]string{"--config", path, "--data-dir", "/from/flag", "--ca-ttl", "3d", "--admin-uids", "7,8", "--admin-uids", "9"}); err != nil {
		t.Fatal(err)
	}
	cfg, c, err := f.resolve()
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"trust domain (file)", cfg.TrustDomain.Name(), "file.example"},
		{"data dir (flag over file)", cfg.DataDir, "/from/flag"},
		{"store driver (file over default)", cfg.StoreDriver, "postgres"},
		{"bind address (default)", cfg.BindAddress, "0.0.0.0:8081"},
		{"ca ttl (flag, days)", cfg.CATTL, 72 * time.Hour},
		{"jwt key ttl (file, days)", cfg.JWTKeyTTL, 48 * time.Hour},
		{"join token ttl (file)", cfg.JoinTokenTTL, 10 * time.Minute},
		{"admin uids (flag, repeated)", cfg.AdminUIDs, []uint32{7, 8, 9}},
		{"node attestors (file)", len(cfg.NodeAttestors), 1},
		{"log level (default)", c.Log.Level, "info"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// TestREADMEConfigExamples: the configuration examples of the README
// decode strictly, and their plugin sections build.
func TestREADMEConfigExamples(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(data), "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("README has %d YAML examples, want a server and an agent one", len(blocks))
	}
	for _, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		switch {
		case strings.Contains(b, "policy.yaml"):
			if _, err := policy.Parse("README policy example", []byte(b)); err != nil {
				t.Errorf("README policy example: %v", err)
			}
		case strings.Contains(b, "server.yaml"):
			var c config.Server
			if err := config.Decode([]byte(b), &c); err != nil {
				t.Errorf("README server example: %v", err)
			}
		case strings.Contains(b, "agent.yaml"):
			var c config.Agent
			if err := config.Decode([]byte(b), &c); err != nil {
				t.Errorf("README agent example: %v", err)
				continue
			}
			if _, err := agentcli.WorkloadAttestors(c.WorkloadAttestors, slog.New(slog.DiscardHandler)); err != nil {
				t.Errorf("README agent example: workload_attestors: %v", err)
			}
		default:
			t.Errorf("README YAML example names no file:\n%s", b)
		}
	}
}
