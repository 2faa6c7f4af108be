package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreDSNFile: store.dsn_file (a mounted Secret) supplies the
// connection string; an empty or missing file, or dsn and dsn_file both
// set, is an error naming the key.
func TestStoreDSNFile(t *testing.T) {
	dir := t.TempDir()
	dsnPath := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnPath, []byte("postgres://signet:s3cret@db:5432/signet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		want       string // the DSN, or the error's text
		wantErr    bool
	}{
		{"from the file", "store: {driver: postgres, dsn_file: " + dsnPath + "}", "postgres://signet:s3cret@db:5432/signet", false},
		{"both set", "store: {driver: postgres, dsn: x, dsn_file: " + dsnPath + "}", "--store-dsn (store.dsn) and --store-dsn-file (store.dsn_file) are both set", true},
		{"empty file", "store: {driver: postgres, dsn_file: " + empty + "}", "(store.dsn_file): " + empty + " is empty", true},
		{"missing file", "store: {driver: postgres, dsn_file: " + filepath.Join(dir, "none") + "}", "(store.dsn_file): open", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "server.yaml")
			if err := os.WriteFile(path, []byte("trust_domain: example.org\n"+tc.file+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var f serverFlags
			if err := serverRunCmd(&f).ParseFlags([]string{"--config", path}); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := f.resolve()
			switch {
			case tc.wantErr && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("resolve() = %v, want an error containing %q", err, tc.want)
			case !tc.wantErr && (err != nil || cfg.StoreDSN != tc.want):
				t.Errorf("resolve() = %q, %v, want %q", cfg.StoreDSN, err, tc.want)
			}
		})
	}
}
