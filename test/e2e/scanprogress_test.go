package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/signet-id/signet/internal/scan/scantest"
)

// progressTree writes a small tree to scan: three text files, one holding a
// GitHub token, and a binary file, whose skip notice must print cleanly
// above the progress line.
func progressTree(t *testing.T) (dir string, size int) {
	t.Helper()
	dir = t.TempDir()
	for name, content := range map[string]string{
		"app.env":       "GITHUB_TOKEN=" + scantest.Token("ghp_", 36, 17) + "\n",
		"README.md":     "# nothing to see\n",
		"src/main.go":   "package main\n\nfunc main() {}\n",
		"assets/logo.x": "\x00\x01\x02binary",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		size += len(content)
	}
	return dir, size
}

// scanOnPTY runs `signet scan ARGS...` with stderr (and, if both, stdout)
// on a new pseudo-terminal of 120 columns, and returns what the terminal
// received and what went to stdout otherwise.
func scanOnPTY(t *testing.T, both bool, args ...string) (terminal, stdout string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(signetBin, append([]string{"scan"}, args...)...)
	cmd.Env = append(os.Environ(), "SIGNET_FINGERPRINT_KEY=e2e-progress-fingerprint-key")
	cmd.Stderr, cmd.Stdout = tty, &out
	if both {
		cmd.Stdout = tty
	}
	read := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptmx) // ends with EIO once the terminal is closed
		read <- string(b)
	}()
	err = cmd.Run()
	tty.Close()
	terminal = <-read
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("signet scan %v: %v\n%s", args, err, terminal)
	}
	return terminal, out.String()
}

// TestScanProgressOnTerminal checks that a table scan draws its progress on
// a terminal: the final frame has every file of the measured total, the
// finding, the bytes and the time left, notices print on lines of their
// own, and the progress line is erased before the table.
func TestScanProgressOnTerminal(t *testing.T) {
	dir, size := progressTree(t)
	terminal, _ := scanOnPTY(t, true, dir)
	const full = "4/4 files, 1 finding 100%" // the final frame
	for _, want := range []string{full, fmt.Sprintf("(%d/%d B", size, size), ":0s]", "signet scan: skipped " + filepath.Join(dir, "assets/logo.x")} {
		if !strings.Contains(terminal, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, terminal)
		}
	}
	table := strings.Index(terminal, "SEVERITY")
	last := strings.LastIndex(terminal, "files, 1 finding")
	if table < 0 || last > table {
		t.Fatalf("table missing or drawn before the progress ended:\n%q", terminal)
	}
	// Between the last frame and the table: only the erasing of the line.
	if erase := terminal[last:table]; strings.Trim(erase[strings.Index(erase, "\r"):], "\r ") != "" {
		t.Errorf("progress line not erased before the table: %q", erase)
	}
	if strings.Contains(terminal, "ghp_") && !strings.Contains(terminal, "ghp_…") {
		t.Errorf("the token is printed: %q", terminal)
	}
}

// TestScanNoProgressWhenNotForAPerson checks that no progress byte is
// written when stderr is not a terminal, nor for JSON or SARIF output even
// on one.
func TestScanNoProgressWhenNotForAPerson(t *testing.T) {
	dir, _ := progressTree(t)
	progressBytes := func(s string) bool {
		return strings.Contains(s, "files, ") || strings.Contains(s, "finding ") || strings.Contains(s, "\x1b") ||
			strings.Contains(strings.ReplaceAll(s, "\r\n", "\n"), "\r")
	}
	t.Run("piped", func(t *testing.T) {
		for _, format := range []string{"table", "json", ""} {
			args := []string{"scan", dir}
			if format != "" {
				args = append(args, "--format", format)
			}
			cmd := exec.Command(signetBin, args...)
			cmd.Env = append(os.Environ(), "SIGNET_FINGERPRINT_KEY=e2e-progress-fingerprint-key")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			var exit *exec.ExitError
			if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("signet %v = %v, want exit status 1 (a finding)\n%s", args, err, stderr.String())
			}
			if progressBytes(stderr.String()) || progressBytes(stdout.String()) {
				t.Errorf("signet %v piped wrote progress:\nstderr %q\nstdout %q", args, stderr.String(), stdout.String())
			}
			if !strings.Contains(stderr.String(), "signet scan: skipped") {
				t.Errorf("signet %v: notice missing from stderr %q", args, stderr.String())
			}
		}
	})
	for _, format := range []string{"json", "sarif"} {
		t.Run(format+" on a terminal", func(t *testing.T) {
			terminal, stdout := scanOnPTY(t, false, "--format", format, dir)
			if progressBytes(terminal) {
				t.Errorf("--format %s drew progress on the terminal: %q", format, terminal)
			}
			if !strings.Contains(terminal, "signet scan: skipped") || !strings.Contains(stdout, "github-pat") {
				t.Errorf("--format %s: terminal %q, stdout %.200q", format, terminal, stdout)
			}
		})
	}
}
