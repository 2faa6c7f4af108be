package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sshRules = `rules:
  - name: deployer-deploys
    credentials: [prod-ssh]
    when: subject.path == "/deployer"
    ssh:
      principals: [deploy]
      extensions: []
      force_command: /usr/local/bin/deploy --prod
  - name: ops-logs-in
    credentials: [prod-ssh, staging-ssh]
    when: subject.path == "/ops"
    ssh: {extensions: [permit-pty]}
  - name: anyone-else
    credentials: [prod-ssh]
    when: subject.path == "/plain"
`

func TestSSHRuleKey(t *testing.T) {
	p, err := Parse("p.yaml", []byte(sshRules))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subject string
		want    *SSH
	}{
		{"spiffe://example.org/deployer", &SSH{Principals: []string{"deploy"}, Extensions: []string{}, ForceCommand: "/usr/local/bin/deploy --prod"}},
		{"spiffe://example.org/ops", &SSH{Extensions: []string{"permit-pty"}}},
		{"spiffe://example.org/plain", nil},
		{"spiffe://example.org/nobody", nil},
	}
	for _, tt := range tests {
		for _, d := range []Decision{p.Decide(context.Background(), input(tt.subject, "prod-ssh")), p.Evaluate(context.Background(), input(tt.subject, "prod-ssh"))} {
			if diff := cmp.Diff(tt.want, d.SSH); diff != "" {
				t.Errorf("Decide(%s).SSH (-want +got):\n%s", tt.subject, diff)
			}
		}
	}
	// extensions: [] (grant none) stays distinct from leaving extensions out.
	d := p.Decide(context.Background(), input("spiffe://example.org/deployer", "prod-ssh"))
	if d.SSH.Extensions == nil {
		t.Error("extensions: [] decoded as nil (would keep the credential's extensions)")
	}
	if got := d.Explain(); !strings.Contains(got, "ssh certificate narrowed to: principals [deploy]; extensions []; force_command /usr/local/bin/deploy --prod") {
		t.Errorf("Explain() = %s, want the ssh narrowing", got)
	}
	want := []SSHRule{
		{Rule: "deployer-deploys", Line: 2, Credentials: []string{"prod-ssh"},
			SSH: SSH{Principals: []string{"deploy"}, Extensions: []string{}, ForceCommand: "/usr/local/bin/deploy --prod"}},
		{Rule: "ops-logs-in", Line: 9, Credentials: []string{"prod-ssh", "staging-ssh"}, SSH: SSH{Extensions: []string{"permit-pty"}}},
	}
	if diff := cmp.Diff(want, p.SSHRules()); diff != "" {
		t.Errorf("SSHRules() (-want +got):\n%s", diff)
	}
}

func TestSSHRuleKeyErrors(t *testing.T) {
	rule := func(creds, ssh string) string {
		return "rules:\n  - name: a\n    credentials: " + creds + "\n    when: true\n    ssh: " + ssh + "\n"
	}
	tests := []struct {
		name, src string
		want      string
	}{
		{"any credential", rule(`["*"]`, "{principals: [deploy]}"), `p.yaml:2: rule "a": ssh: the ssh key narrows ssh credentials: name them in credentials instead of "*"`},
		{"empty", rule("[s]", "{}"), `rule "a": ssh: empty: give principals, extensions or force_command`},
		{"no principals", rule("[s]", "{principals: []}"), `rule "a": ssh.principals: empty would allow no login`},
		{"bad principal", rule("[s]", `{principals: ["a,b"]}`), `rule "a": ssh.principals[0]: "a,b" is not a principal`},
		{"bad extension", rule("[s]", `{extensions: ["permit pty"]}`), `rule "a": ssh.extensions[0]: "permit pty" is not an extension name`},
		{"newline in command", rule("[s]", `{force_command: "a\nb"}`), `rule "a": ssh.force_command: contains a NUL or a line break`},
		{"unknown key", rule("[s]", "{principal: [deploy]}"), "rules[0].ssh.principal is not a known key"},
		{"not a mapping", rule("[s]", "deploy"), "p.yaml:2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v\nwant it to contain %q", tt.src, err, tt.want)
			}
		})
	}
}

// TestHolderCheck: a check set on the holder refuses the policy in force
// (SetCheck fails) and a reload it refuses (the old policy stays).
func TestHolderCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(sshRules)
	h, err := NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	noOps := func(p *Policy) error {
		for _, r := range p.SSHRules() {
			if r.Rule == "ops-logs-in" {
				return errors.New("rule ops-logs-in widens")
			}
		}
		return nil
	}
	if err := h.SetCheck(noOps); err == nil || !strings.Contains(err.Error(), "ops-logs-in widens") {
		t.Fatalf("SetCheck on a policy it refuses = %v, want its error", err)
	}
	write(strings.Replace(sshRules, "ops-logs-in", "ops-in", 1))
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := h.SetCheck(noOps); err != nil {
		t.Fatalf("SetCheck = %v", err)
	}
	write(sshRules)
	if err := h.Reload(); err == nil || !strings.Contains(err.Error(), "ops-logs-in widens") {
		t.Fatalf("Reload of a refused policy = %v, want the check's error", err)
	}
	if names := h.Policy().RuleNames(); !strings.Contains(strings.Join(names, " "), "ops-in") {
		t.Errorf("after a refused reload the rules are %v, want the previous policy", names)
	}
}
