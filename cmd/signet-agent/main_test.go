package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// execute runs the signet-agent command tree on args.
func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestCommands: the slim binary has the node-side commands, and no admin,
// server or scanner command.
func TestCommands(t *testing.T) {
	var names []string
	for _, c := range newRootCmd().Commands() {
		names = append(names, c.Name())
	}
	for _, want := range []string{"run", "svid", "jwt", "healthcheck", "helper", "version"} {
		if !slices.Contains(names, want) {
			t.Errorf("signet-agent lacks %q (has %v)", want, names)
		}
	}
	for _, banned := range []string{"server", "entry", "scan", "token", "dev", "agent"} {
		if slices.Contains(names, banned) {
			t.Errorf("signet-agent has %q: it belongs to signet", banned)
		}
	}
}

// TestRunIsAgentRun: `signet-agent run` takes `signet agent run`'s flags and
// refuses the same way without a server address.
func TestRunIsAgentRun(t *testing.T) {
	_, err := execute(t, "run", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--server-address is required") {
		t.Fatalf("run without --server-address = %v, want it named", err)
	}
	_, err = execute(t, "run", "--sync-interval", "soon")
	if err == nil || !strings.Contains(err.Error(), "--sync-interval") {
		t.Fatalf("run --sync-interval soon = %v, want the flag named", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := execute(t, "version", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var bi map[string]any
	if err := json.Unmarshal([]byte(out), &bi); err != nil || bi["version"] == "" || bi["go_version"] == nil {
		t.Fatalf("version --json = %q (%v)", out, err)
	}
	out, err = execute(t, "version")
	if err != nil || !strings.HasPrefix(out, "signet-agent ") {
		t.Fatalf("version = %q, %v; want it to name signet-agent", out, err)
	}
	if _, err := execute(t, "bogus"); err == nil || !strings.Contains(err.Error(), "use one of") {
		t.Fatalf("unknown command = %v, want the commands listed", err)
	}
}
