package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/broker/policy"
)

const cliPolicy = `rules:
  - name: etl-reads-orders
    credentials: [orders-db]
    when: >
      subject.id == "spiffe://example.org/etl" &&
      "aws_iid:tag:env:prod" in node.selectors &&
      context.ticket.startsWith("CHG-")
    ttl: 10m
  - name: ops-short
    credentials: ["*"]
    when: >
      subject.path.startsWith("/ops/") && request.ttl <= duration("5m") &&
      node.labels.zone == "eu-1" && node.attestation_method == "x509pop" &&
      "unix:uid:0" in subject.selectors && context.change.risk == "low" &&
      request.time.getHours() < 18
`

// policyCLI runs `signet policy test args...` and returns stdout, the error
// text and the exit code.
func policyCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	out, _, err := execCLI(t, append([]string{"policy", "test"}, args...)...)
	if err == nil {
		return out, "", 0
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		t.Fatalf("policy test %v: error %v is not an *exitError", args, err)
	}
	msg := ""
	if ee.err != nil {
		msg = ee.err.Error()
	}
	return out, msg, ee.code
}

func writePolicyFiles(t *testing.T) (policyFile, configFile string) {
	t.Helper()
	dir := t.TempDir()
	policyFile = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(cliPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	configFile = filepath.Join(dir, "server.yaml")
	cfg := "trust_domain: example.org\nbroker:\n  kek_file: /nonexistent\n  policy_file: " + policyFile + "\n  credentials:\n    orders-db: {provider: postgres}\n"
	if err := os.WriteFile(configFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return policyFile, configFile
}

func TestPolicyTestAllowDeny(t *testing.T) {
	pf, cf := writePolicyFiles(t)
	etl := []string{"--spiffe-id", "spiffe://example.org/etl", "--credential", "orders-db", "--node-selector", "aws_iid:tag:env:prod"}
	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout
	}{
		{"allow", append([]string{"--policy", pf, "--context", "ticket=CHG-1"}, etl...), 0,
			[]string{`allow: rule "etl-reads-orders" allows credential "orders-db" for spiffe://example.org/etl (ttl at most 10m0s)`}},
		{"allow via config", append([]string{"--config", cf, "--context", "ticket=CHG-1"}, etl...), 0,
			[]string{`allow: rule "etl-reads-orders"`}},
		{"deny without context", append([]string{"--policy", pf}, etl...), 1,
			[]string{`deny: no rule allows credential "orders-db"`, `failed: context.ticket.startsWith("CHG-"): no such key: ticket`,
				`rule ops-short: false`, `false:  subject.path.startsWith("/ops/")`}},
		{"deny wrong ticket", append([]string{"--policy", pf, "--context-json", `{"ticket":"INC-7"}`}, etl...), 1,
			[]string{`false:  context.ticket.startsWith("CHG-")`}},
		{"deny wrong node", []string{"--policy", pf, "--spiffe-id", "spiffe://example.org/etl", "--credential", "orders-db", "--context", "ticket=CHG-1"}, 1,
			[]string{`false:  "aws_iid:tag:env:prod" in node.selectors`}},
		{"deny unknown credential", []string{"--policy", pf, "--spiffe-id", "spiffe://example.org/web", "--credential", "stripe"}, 1,
			[]string{`deny: no rule allows credential "stripe" for spiffe://example.org/web`, `rule ops-short: false`}},
		{"ops all inputs", []string{"--policy", pf, "--spiffe-id", "spiffe://example.org/ops/backup", "--credential", "stripe",
			"--ttl", "5m", "--node-label", "zone=eu-1", "--attestation-method", "x509pop", "--selector", "unix:uid:0",
			"--context-json", `{"change":{"risk":"low"}}`, "--time", "2026-12-01T10:00:00Z", "--node-id", "spiffe://example.org/agent/1"}, 0,
			[]string{`allow: rule "ops-short"`}},
		{"ops ttl too long at night", []string{"--policy", pf, "--spiffe-id", "spiffe://example.org/ops/backup", "--credential", "stripe",
			"--ttl", "1d", "--node-label", "zone=eu-1", "--attestation-method", "x509pop", "--selector", "unix:uid:0",
			"--context-json", `{"change":{"risk":"low"}}`, "--time", "2026-12-01T20:00:00Z"}, 1,
			[]string{`false:  request.ttl <= duration("5m")`, `false:  request.time.getHours() < 18`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, msg, code := policyCLI(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit code = %d (%s), want %d\n%s", code, msg, tt.code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestPolicyTestJSON(t *testing.T) {
	pf, _ := writePolicyFiles(t)
	out, msg, code := policyCLI(t, "--policy", pf, "--spiffe-id", "spiffe://example.org/etl", "--credential", "orders-db", "--time", "2026-12-01T10:00:00Z", "--json")
	if code != 1 {
		t.Fatalf("exit code = %d (%s), want 1", code, msg)
	}
	var d policy.Decision
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("--json output is not a decision: %v\n%s", err, out)
	}
	if d.Allowed || d.Credential != "orders-db" || len(d.Rules) != 2 || d.Rules[0].Result != policy.ResultFalse {
		t.Errorf("decision = %+v", d)
	}
	if !strings.Contains(out, `"expr": "\"aws_iid:tag:env:prod\" in node.selectors"`) || strings.Contains(out, `\u0026`) {
		t.Errorf("--json output lacks the readable clause:\n%s", out)
	}
	out2, _, code := policyCLI(t, "--policy", pf, "--spiffe-id", "spiffe://example.org/etl", "--credential", "orders-db", "--time", "2026-12-01T10:00:00Z", "-o", "json")
	if code != 1 || out2 != out {
		t.Errorf("-o json differs from --json")
	}
}

func TestPolicyTestBadInput(t *testing.T) {
	pf, _ := writePolicyFiles(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: typo\n    credentials: [x]\n    when: subject.idd == \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noPolicyCfg := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(noPolicyCfg, []byte("trust_domain: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--spiffe-id", "spiffe://example.org/etl", "--credential", "orders-db"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no policy", ok, "no policy: give --policy FILE, or --config"},
		{"both policy and config", append([]string{"--policy", pf, "--config", noPolicyCfg}, ok...), "flags --policy and --config both name a policy"},
		{"config without policy_file", append([]string{"--config", noPolicyCfg}, ok...), "has no broker.policy_file"},
		{"missing config", append([]string{"--config", filepath.Join(dir, "none.yaml")}, ok...), "--config: open"},
		{"missing policy", append([]string{"--policy", filepath.Join(dir, "none.yaml")}, ok...), "read policy: open"},
		{"policy does not compile", append([]string{"--policy", bad}, ok...), bad + `:4:18: rule "typo": when: undeclared reference to 'subject.idd'`},
		{"no spiffe id", []string{"--policy", pf, "--credential", "x"}, "--spiffe-id is required"},
		{"bad spiffe id", []string{"--policy", pf, "--spiffe-id", "https://x", "--credential", "x"}, `--spiffe-id "https://x" is not a SPIFFE ID`},
		{"no credential", []string{"--policy", pf, "--spiffe-id", "spiffe://example.org/etl"}, "--credential is required"},
		{"bad context", append([]string{"--policy", pf, "--context", "ticket"}, ok...), `--context "ticket" is not KEY=VALUE`},
		{"duplicate context", append([]string{"--policy", pf, "--context", "a=1", "--context", "a=2"}, ok...), `--context: key "a" is given twice`},
		{"context json not an object", append([]string{"--policy", pf, "--context-json", `["a"]`}, ok...), "--context-json: context is an array, not a JSON object"},
		{"context in both", append([]string{"--policy", pf, "--context-json", `{"a":1}`, "--context", "a=2"}, ok...), `key "a" is also in --context-json`},
		{"context too big", append([]string{"--policy", pf, "--context", "a=" + strings.Repeat("x", policy.MaxContextSize)}, ok...), "--context: context is"},
		{"bad selector", append([]string{"--policy", pf, "--selector", "unix"}, ok...), `--selector "unix" is not a selector`},
		{"bad node selector", append([]string{"--policy", pf, "--node-selector", ":x"}, ok...), `--node-selector ":x" is not a selector`},
		{"bad node label", append([]string{"--policy", pf, "--node-label", "=x"}, ok...), `--node-label "=x" is not KEY=VALUE`},
		{"bad node id", append([]string{"--policy", pf, "--node-id", "agent-1"}, ok...), `--node-id "agent-1" is not a SPIFFE ID`},
		{"bad ttl", append([]string{"--policy", pf, "--ttl", "soon"}, ok...), `invalid argument "soon" for "--ttl"`},
		{"bad time", append([]string{"--policy", pf, "--time", "tomorrow"}, ok...), `--time "tomorrow" is not an RFC 3339 time`},
		{"unknown flag", append([]string{"--policy", pf, "--frob"}, ok...), "unknown flag: --frob (see: signet policy test --help)"},
		{"argument", append([]string{"--policy", pf, "extra"}, ok...), `unknown command "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, msg, code := policyCLI(t, tt.args...)
			if code != 2 {
				t.Fatalf("exit code = %d, want 2 (bad input); error %q\n%s", code, msg, out)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.want)
			}
			if out != "" {
				t.Errorf("bad input printed a decision:\n%s", out)
			}
		})
	}
}

// TestPolicyTestExitStatus checks the process exit status through run, as
// main reports it.
func TestPolicyTestExitStatus(t *testing.T) {
	pf, _ := writePolicyFiles(t)
	base := []string{"policy", "test", "--policy", pf, "--spiffe-id", "spiffe://example.org/etl", "--credential", "orders-db", "--node-selector", "aws_iid:tag:env:prod", "--json"}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = devnull, devnull
	defer func() { os.Stdout, os.Stderr = stdout, stderr }()
	for _, tt := range []struct {
		args []string
		want int
	}{
		{append(base, "--context", "ticket=CHG-1"), 0},
		{base, 1},
		{append(base, "--context", "ticket"), 2},
		{append(base, "--ttl"), 2},
	} {
		if got := run(tt.args); got != tt.want {
			t.Errorf("run(%v) = %d, want %d", tt.args, got, tt.want)
		}
	}
}
