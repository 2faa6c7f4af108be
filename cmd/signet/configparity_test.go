package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// TestRunFlagsHaveConfigKeys: a config file may hold everything the flags
// hold. Each flag of `server run` and `agent run` maps to a key of the YAML
// file (its name with '_' for '-', nested keys written as in the file).
func TestRunFlagsHaveConfigKeys(t *testing.T) {
	nested := map[string]string{
		"store-driver": "store.driver", "store-dsn": "store.dsn", "ca-key-type": "ca.key_type", "ca-ttl": "ca.ttl",
		"log-level": "log.level", "log-format": "log.format",
	}
	for _, tc := range []struct {
		cmd *cobra.Command
		cfg any
	}{{newServerRunCmd(), config.Server{}}, {newAgentRunCmd(), config.Agent{}}} {
		keys := map[string]bool{}
		yamlPaths(reflect.TypeOf(tc.cfg), "", keys)
		tc.cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "config" || f.Name == "help" {
				return
			}
			key, ok := nested[f.Name]
			if !ok {
				key = strings.ReplaceAll(f.Name, "-", "_")
			}
			if !keys[key] {
				t.Errorf("%s --%s has no config file key %q", tc.cmd.CommandPath(), f.Name, key)
			}
		})
	}
}
