package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecBadInput covers what `signet exec` refuses before asking the
// agent or the broker anything (the socket named does not exist).
func TestExecBadInput(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "report")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "none.sock")
	for _, tc := range []struct {
		name     string
		args     []string
		wantErr  string
		wantCode int // exitError's code; 0: a plain error
	}{
		{"no credential", []string{"--env", "X={{.value}}", "--", "true"}, "--credential is required", 0},
		{"no env", []string{"--credential", "stripe", "--", "true"}, "--env is required", 0},
		{"no command", []string{"--credential", "stripe", "--env", "X={{.value}}"}, "requires at least 1 arg", 0},
		{"bad env", []string{"--credential", "stripe", "--env", "X-Y={{.value}}", "--", "true"}, `--env "X-Y={{.value}}": want NAME=TEMPLATE`, 0},
		{"bad template", []string{"--credential", "stripe", "--env", "X={{.value", "--", "true"}, "--env X:1: unclosed action", 0},
		{"bad context", []string{"--credential", "stripe", "--env", "X={{.value}}", "--context", "ticket", "--", "true"}, `--context "ticket": want key=value`, 0},
		{"bad signal", []string{"--credential", "stripe", "--env", "X={{.value}}", "--restart-signal", "SIGNOPE", "--", "true"}, `--restart-signal "SIGNOPE": want a signal name`, 0},
		{"bad grace", []string{"--credential", "stripe", "--env", "X={{.value}}", "--grace", "soon", "--", "true"}, `invalid argument "soon" for "--grace"`, 0},
		{"command not found", []string{"--credential", "stripe", "--env", "X={{.value}}", "--", "no-such-command-here"}, `command "no-such-command-here"`, 127},
		{"command not executable", []string{"--credential", "stripe", "--env", "X={{.value}}", "--", notExec}, `command "` + notExec + `"`, 126},
		{"no agent", []string{"--credential", "stripe", "--env", "X={{.value}}", "--broker", "https://127.0.0.1:1", "--", "true"}, "no Workload API socket at " + sock, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"exec", "--socket", sock}, tc.args...)
			_, _, err := execCLI(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("signet %s = %v, want an error with %q", strings.Join(args, " "), err, tc.wantErr)
			}
			code := 0
			if ee := (*exitError)(nil); errors.As(err, &ee) {
				code = ee.code
			}
			if code != tc.wantCode {
				t.Errorf("exit status %d, want %d (0: a plain error, which exits 1)", code, tc.wantCode)
			}
		})
	}
}
