package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/scan"
	"github.com/signet-id/signet/internal/scan/scantest"
)

// runScan runs `signet scan args...` and returns its output and exit code.
func runScan(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "fingerprint.key")
	if err := os.WriteFile(key, []byte("scan-command-test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(scan.FingerprintKeyEnv, "")
	var out, errOut bytes.Buffer
	cmd := newScanCmd()
	cmd.SetArgs(append([]string{"--fingerprint-key-file", key}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	var ee *exitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.code
		if ee.err != nil {
			errOut.WriteString("signet: " + ee.err.Error() + "\n")
		}
	default:
		t.Fatalf("scan %v: error %v is not an *exitError", args, err)
	}
	return out.String(), errOut.String(), code
}

func writeFile(t *testing.T, dir, rel, content string) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScanExitCodes(t *testing.T) {
	clean := t.TempDir()
	writeFile(t, clean, "main.go", "package main\n\nfunc main() {}\n")
	writeFile(t, clean, "logo.dat", "\x00\x01binary")
	leaky := t.TempDir()
	writeFile(t, leaky, "app.env", "GITHUB_TOKEN="+scantest.Token("ghp_", 36, 7)+"\n")
	badBaseline := writeFile(t, t.TempDir(), "baseline.json", "{not json")
	missing := filepath.Join(clean, "missing")

	tests := []struct {
		name       string
		args       []string
		want       int
		wantStderr []string // substrings, in order
		noStderr   bool
	}{
		{"clean", []string{"-q", clean}, 0, nil, true},
		{"clean with skip notice", []string{clean}, 0, []string{"signet scan: skipped " + filepath.Join(clean, "logo.dat") + ": binary file"}, false},
		{"findings", []string{leaky}, 1, nil, true},
		{"missing path", []string{missing}, 2, []string{"signet scan: " + missing + ": stat: no such file or directory", "signet: scan: some items"}, false},
		{"findings and an error", []string{leaky, missing}, 2, []string{missing}, false},
		{"not a git repository", []string{"--git", clean}, 2, []string{"signet scan: " + clean + ": not a git repository"}, false},
		{"malformed baseline", []string{"--baseline", badBaseline, clean}, 2, []string{badBaseline + ": parse baseline"}, false},
		{"bad format", []string{"--format", "xml", clean}, 2, []string{`unknown format "xml"`}, false},
		{"bad size", []string{"--max-file-size", "ten", clean}, 2, []string{"parse size"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runScan(t, tt.args...)
			if code != tt.want {
				t.Errorf("scan %v: exit %d, want %d; stderr:\n%s", tt.args, code, tt.want, stderr)
			}
			if tt.noStderr && stderr != "" {
				t.Errorf("scan %v: stderr %q, want none", tt.args, stderr)
			}
			rest := stderr
			for _, s := range tt.wantStderr {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Errorf("scan %v: stderr %q lacks %q", tt.args, stderr, s)
					break
				}
				rest = rest[i+len(s):]
			}
		})
	}
}

func TestScanOutputFormats(t *testing.T) {
	dir := t.TempDir()
	token := scantest.Token("ghp_", 36, 8)
	writeFile(t, dir, "app.env", "GITHUB_TOKEN="+token+"\n")

	stdout, _, code := runScan(t, dir) // not a terminal: JSON
	if code != 1 {
		t.Fatalf("scan: exit %d, want 1", code)
	}
	var rep scan.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("scan: default output off a terminal is not the JSON report: %v", err)
	}
	if rep.Version != 1 || len(rep.Findings) != 1 || rep.Findings[0].RuleID != "github-pat" || rep.Stats.Files != 1 {
		t.Errorf("scan JSON report = %+v, want version 1 with one github-pat finding in one file", rep)
	}

	for format, want := range map[string]string{"table": "SEVERITY", "json": `"findings"`, "sarif": `"version": "2.1.0"`} {
		stdout, _, code := runScan(t, "--format", format, dir)
		if code != 1 || !strings.Contains(stdout, want) {
			t.Errorf("scan --format %s: exit %d, output lacks %q:\n%s", format, code, want, stdout)
		}
		if strings.Contains(stdout, token) {
			t.Errorf("scan --format %s printed the secret", format)
		}
	}
}

func TestScanBaselineAndEnv(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "app.env", "GITHUB_TOKEN="+scantest.Token("ghp_", 36, 9)+"\n")
	stdout, _, code := runScan(t, "--format", "json", dir)
	if code != 1 {
		t.Fatalf("scan: exit %d, want 1", code)
	}
	baseline := writeFile(t, t.TempDir(), "baseline.json", stdout)
	if _, stderr, code := runScan(t, "--baseline", baseline, dir); code != 0 {
		t.Errorf("scan --baseline: exit %d, want 0 (all findings known); stderr:\n%s", code, stderr)
	}

	t.Setenv("SIGNET_TEST_DB_PASSWORD", scantest.Token("", 20, 10))
	stdout, _, code = runScan(t, "--env", "--format", "json")
	if code != 1 || !strings.Contains(stdout, `"env:SIGNET_TEST_DB_PASSWORD"`) {
		t.Errorf("scan --env: exit %d, want 1 with a finding at env:SIGNET_TEST_DB_PASSWORD:\n%s", code, stdout)
	}
}

// TestScanVerboseSkips checks that --verbose lists every item left out,
// with its reason, and that the JSON summary counts them by reason.
func TestScanVerboseSkips(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "main.go", "package main\n")
	writeFile(t, dir, ".git/config", "[core]\n")
	writeFile(t, dir, "logo.png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	stdout, stderr, code := runScan(t, "--verbose", "--format", "json", dir)
	if code != 0 {
		t.Fatalf("scan --verbose: exit %d, want 0; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"signet scan: skipped " + filepath.Join(dir, ".git") + " (excluded)\n",
		"signet scan: skipped " + filepath.Join(dir, "logo.png") + " (binary): binary file, contents not scanned\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("scan --verbose: stderr lacks %q:\n%s", want, stderr)
		}
	}
	if n := strings.Count(stderr, "logo.png"); n != 1 {
		t.Errorf("scan --verbose: logo.png named %d times on stderr, want once:\n%s", n, stderr)
	}
	var rep struct {
		Stats struct {
			Skipped   int64            `json:"skipped"`
			SkippedBy map[string]int64 `json:"skipped_by"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"binary": 1, "excluded": 1}; rep.Stats.Skipped != 2 || !maps.Equal(rep.Stats.SkippedBy, want) {
		t.Errorf("scan JSON stats: skipped %d by %v, want 2 by %v", rep.Stats.Skipped, rep.Stats.SkippedBy, want)
	}
	if _, stderr, code := runScan(t, "--verbose", "--quiet", dir); code != 2 || !strings.Contains(stderr, "--quiet and --verbose") {
		t.Errorf("scan --verbose --quiet: exit %d, stderr %q; want 2 naming both flags", code, stderr)
	}
}
