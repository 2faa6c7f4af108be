package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// loadTestPolicy loads testdata/policy.yaml.
func loadTestPolicy(t testing.TB) *Policy {
	t.Helper()
	p, err := Load(filepath.Join("testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sel(s ...string) []model.Selector {
	var out []model.Selector
	for _, v := range s {
		typ, val, _ := strings.Cut(v, ":")
		out = append(out, model.Selector{Type: typ, Value: val})
	}
	return out
}

// at10 is a fixed request time inside short-stripe-by-day's hours.
var at10 = time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)

func input(id, credential string) Input {
	return Input{
		Subject: Subject{ID: spiffeid.RequireFromString(id)},
		Request: Request{Credential: credential, Time: at10},
	}
}

// golden compares got with testdata/name.golden, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func TestDecide(t *testing.T) {
	p := loadTestPolicy(t)
	etl := func(mod func(*Input)) Input {
		in := input("spiffe://example.org/etl", "orders-db")
		in.Node = Node{ID: "spiffe://example.org/signet/agent/aws_iid/1/i-1", AttestationMethod: "aws_iid", Selectors: sel("aws_iid:tag:env:prod", "aws_iid:region:eu-west-1")}
		in.Context = map[string]any{"ticket": "CHG-1"}
		if mod != nil {
			mod(&in)
		}
		return in
	}
	ops := func(mod func(*Input)) Input {
		in := input("spiffe://example.org/ops/backup", "orders-db")
		in.Node = Node{AttestationMethod: "x509pop", Labels: map[string]string{"env": "prod"}}
		if mod != nil {
			mod(&in)
		}
		return in
	}
	billing := func(mod func(*Input)) Input {
		in := input("spiffe://example.org/billing/api", "stripe")
		in.Request.TTL = 5 * time.Minute
		if mod != nil {
			mod(&in)
		}
		return in
	}
	tests := []struct {
		name  string
		in    Input
		allow bool
		rule  string
		ttl   time.Duration
	}{
		{"etl-allowed", etl(nil), true, "etl-reads-orders", 10 * time.Minute},
		{"etl-wrong-id", etl(func(in *Input) { in.Subject.ID = spiffeid.RequireFromString("spiffe://example.org/web") }), false, "", 0},
		{"etl-no-ticket", etl(func(in *Input) { in.Context = nil }), false, "", 0},
		{"etl-ticket-not-string", etl(func(in *Input) { in.Context = map[string]any{"ticket": int64(7)} }), false, "", 0},
		{"etl-bad-ticket-and-node", etl(func(in *Input) {
			in.Context["ticket"] = "INC-9"
			in.Node.Selectors = sel("aws_iid:tag:env:dev")
		}), false, "", 0},
		{"etl-other-credential", etl(func(in *Input) { in.Request.Credential = "payroll-db" }), false, "", 0},
		{"unknown-credential", input("spiffe://example.org/web", "nope"), false, "", 0},
		{"ops-by-label", ops(nil), true, "ops-any-credential", 0},
		{"ops-by-root-selector", ops(func(in *Input) {
			in.Node.Labels = map[string]string{"env": "dev"}
			in.Subject.Selectors = sel("unix:uid:0")
		}), true, "ops-any-credential", 0},
		{"ops-join-token-node", ops(func(in *Input) { in.Node.AttestationMethod = "join_token" }), false, "", 0},
		{"ops-no-label", ops(func(in *Input) { in.Node.Labels = nil }), false, "", 0},
		{"ops-short-path", ops(func(in *Input) { in.Subject.ID = spiffeid.RequireFromString("spiffe://example.org/ops") }), false, "", 0},
		{"ops-other-domain", ops(func(in *Input) { in.Subject.ID = spiffeid.RequireFromString("spiffe://other.org/ops/backup") }), false, "", 0},
		{"billing-allowed", billing(nil), true, "short-stripe-by-day", 5 * time.Minute},
		{"billing-ttl-too-long", billing(func(in *Input) { in.Request.TTL = time.Hour }), false, "", 0},
		{"billing-at-night", billing(func(in *Input) { in.Request.Time = time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC) }), false, "", 0},
		{"billing-at-night-approved", billing(func(in *Input) {
			in.Request.Time = time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
			in.Context = map[string]any{"approved": true}
		}), true, "stripe-with-flag", 0},
		{"billing-test-credential", billing(func(in *Input) { in.Request.Credential = "stripe-test" }), true, "short-stripe-by-day", 5 * time.Minute},
		{"zero-input", Input{}, false, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.in)
			if d.Allowed != tt.allow || d.Rule != tt.rule || d.TTL != tt.ttl {
				t.Errorf("Decide() = allowed %v by %q ttl %v, want %v by %q ttl %v\n%s", d.Allowed, d.Rule, d.TTL, tt.allow, tt.rule, tt.ttl, d.Explain())
			}
			checkAgainstWhole(t, p, d, &tt.in)
			checkEvaluate(t, p, d, tt.in)
			if len(d.Rules) != 4 {
				t.Errorf("Decide() has %d rule results, want one per rule (4)", len(d.Rules))
			}
			js := marshalDecision(t, d)
			var back Decision
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(d, back, cmpopts.IgnoreFields(Decision{}, "Inputs")); diff != "" {
				t.Errorf("Decision JSON round trip differs (-want +got):\n%s", diff)
			}
			if again := marshalDecision(t, back); !bytes.Equal(again, js) {
				t.Errorf("Decision JSON round trip differs:\n%s\n%s", js, again)
			}
			golden(t, filepath.Join("decisions", tt.name), d.Explain()+"\n"+string(js))
		})
	}
}

// TestDecideDeterministic checks that a decision depends on its input only.
func TestDecideDeterministic(t *testing.T) {
	p := loadTestPolicy(t)
	in := input("spiffe://example.org/etl", "orders-db")
	first := p.Decide(context.Background(), in)
	for range 20 {
		if diff := cmp.Diff(first, p.Decide(context.Background(), in)); diff != "" {
			t.Fatalf("Decide() changed between calls (-first +now):\n%s", diff)
		}
	}
}

func TestDecideNilPolicy(t *testing.T) {
	var p *Policy
	d := p.Decide(context.Background(), input("spiffe://example.org/etl", "orders-db"))
	if d.Allowed {
		t.Fatalf("nil policy allowed: %s", d.Explain())
	}
}

func TestDecideCancelled(t *testing.T) {
	list := "[" + strings.TrimSuffix(strings.Repeat("1,", 500), ",") + "]"
	src := "rules:\n  - name: loop\n    credentials: [\"*\"]\n    when: '" + list + ".all(a, a > 0)'\n"
	p, err := Parse("loop.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	in := input("spiffe://example.org/etl", "orders-db")
	if d := p.Decide(context.Background(), in); !d.Allowed {
		t.Fatalf("Decide() denied: %s", d.Explain())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := p.Decide(ctx, in)
	if d.Allowed || d.Rules[0].Result != ResultError || !strings.Contains(d.Rules[0].Error, "evaluation stopped") {
		t.Errorf("Decide(cancelled) = %s, want a deny with the rule stopped", d.Explain())
	}
}

func TestCostLimit(t *testing.T) {
	// Three nested comprehensions over 100 elements: a million steps, far
	// over MaxCost.
	list := "[" + strings.TrimSuffix(strings.Repeat("1,", 100), ",") + "]"
	src := "rules:\n  - name: expensive\n    credentials: [\"*\"]\n    when: '" +
		list + ".all(a, " + list + ".all(b, " + list + ".all(c, a + b + c > 0)))'\n"
	p, err := Parse("cost.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(context.Background(), input("spiffe://example.org/etl", "orders-db"))
	if d.Allowed {
		t.Fatal("a rule over the cost limit allowed")
	}
	r := d.Rules[0]
	if r.Result != ResultError || !strings.Contains(r.Error, "cost limit exceeded") {
		t.Errorf("rule result = %s %q, want error naming the cost limit", r.Result, r.Error)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // substrings of the error
	}{
		{"undeclared", "rules:\n  - name: a\n    credentials: [x]\n    when: subject.idd == \"x\"\n",
			[]string{`p.yaml:4:18: rule "a": when: undeclared reference to 'subject.idd'`}},
		{"type error in folded block", "rules:\n  - name: a\n    credentials: [x]\n    when: >\n      subject.id == \"x\" &&\n      subject.path == 1\n",
			[]string{`p.yaml:6:20: rule "a": when: found no matching overload for '_==_' applied to '(string, int)'`}},
		{"syntax error in literal block", "rules:\n  - name: a\n    credentials: [x]\n    when: |\n      subject.id == \"x\" &&\n        (node.id == \n",
			[]string{`p.yaml:6:`, `rule "a": when: Syntax error`}},
		{"not bool", "rules:\n  - name: a\n    credentials: [x]\n    when: subject.id\n",
			[]string{`p.yaml:4:11: rule "a": when: the expression is of type string, not bool`}},
		{"context value not bool", "rules:\n  - name: a\n    credentials: [x]\n    when: context.ok\n",
			[]string{`rule "a": when: the expression is of type dyn, not bool`}},
		{"second rule bad, position in file", "rules:\n  - name: good\n    credentials: [x]\n    when: true\n  - name: bad\n    credentials: [x]\n    when: \"true && nope\"\n",
			[]string{`p.yaml:7:`, `rule "bad": when: undeclared reference to 'nope'`}},
		{"unknown key", "rules:\n  - name: a\n    credentials: [x]\n    when: true\n    ttls: 5m\n",
			[]string{"p.yaml:2: line 5: rules[0].ttls is not a known key: did you mean rules[0].ttl?"}},
		{"unknown top key", "rule:\n  - name: a\n", []string{"policy p.yaml: line 1: rule is not a known key: did you mean rules?"}},
		{"missing fields", "rules:\n  - ttl: 5m\n", []string{"rules[0].name is missing", "credentials is missing", "when is missing"}},
		{"bad name", "rules:\n  - name: \"a b\"\n    credentials: [x]\n    when: true\n", []string{`rules[0].name "a b" is not a valid rule name`}},
		{"bad credential", "rules:\n  - name: a\n    credentials: [\"x y\"]\n    when: true\n", []string{`rule "a": credentials: "x y" is not a credential name`}},
		{"duplicate credential", "rules:\n  - name: a\n    credentials: [x, x]\n    when: true\n", []string{`credentials: "x" is listed twice`}},
		{"duplicate rule", "rules:\n  - name: a\n    credentials: [x]\n    when: true\n  - name: a\n    credentials: [x]\n    when: true\n",
			[]string{`p.yaml:5: rules[1]: name "a" is already used by the rule on line 2`}},
		{"bad ttl", "rules:\n  - name: a\n    credentials: [x]\n    when: true\n    ttl: soon\n", []string{`p.yaml:2: rule "a": ttl: "soon" is not a duration`}},
		{"zero ttl", "rules:\n  - name: a\n    credentials: [x]\n    when: true\n    ttl: 0s\n", []string{`rule "a": ttl: 0 would allow nothing`}},
		{"rule not a mapping", "rules:\n  - just a string\n", []string{"p.yaml:2:"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"more than one YAML document"}},
		{"every problem at once", "rules:\n  - name: a\n    credentials: [x]\n    when: nope1\n  - name: b\n    credentials: [x]\n    when: nope2\n",
			[]string{"nope1", "nope2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", tt.src)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) = %v\nwant it to contain %q", tt.src, err, w)
				}
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	if _, err := Parse("big.yaml", make([]byte, MaxFileSize+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Parse(too big) = %v, want a size error", err)
	}
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range MaxRules + 1 {
		b.WriteString("  - {name: r" + itoa(i) + ", credentials: [x], when: \"true\"}\n")
	}
	if _, err := Parse("many.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "at most 1000") {
		t.Errorf("Parse(too many rules) = %v, want a rule count error", err)
	}
	long := "rules:\n  - name: a\n    credentials: [x]\n    when: \"" + strings.Repeat("true && ", MaxExpressionSize/8+1) + "true\"\n"
	if _, err := Parse("long.yaml", []byte(long)); err == nil || !strings.Contains(err.Error(), `rule "a"`) {
		t.Errorf("Parse(expression too long) = %v, want an error naming the rule", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestEmptyPolicyDenies(t *testing.T) {
	for _, src := range []string{"", "rules: []\n", "# nothing\n"} {
		p, err := Parse("empty.yaml", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q) = %v", src, err)
		}
		if d := p.Decide(context.Background(), input("spiffe://example.org/etl", "x")); d.Allowed {
			t.Errorf("empty policy %q allowed", src)
		}
	}
}

func TestCredentials(t *testing.T) {
	p := loadTestPolicy(t)
	want := []string{"orders-db", "stripe", "stripe-test"}
	if diff := cmp.Diff(want, p.Credentials()); diff != "" {
		t.Errorf("Credentials() differs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"etl-reads-orders", "ops-any-credential", "short-stripe-by-day", "stripe-with-flag"}, p.RuleNames()); diff != "" {
		t.Errorf("RuleNames() differs (-want +got):\n%s", diff)
	}
}

func TestConjuncts(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`subject.id == "a" && subject.path == "/b" && node.id == "c"`, `subject.id == "a" | subject.path == "/b" | node.id == "c"`},
		{`subject.id == "a" && (subject.path == "/b" && node.id == "c")`, `subject.id == "a" | subject.path == "/b" | node.id == "c"`},
		{`subject.id == "a" || subject.path == "/b" && node.id == "c"`, `subject.id == "a" || subject.path == "/b" && node.id == "c"`},
		{`!(subject.id == "a" && subject.path == "/b")`, `!(subject.id == "a" && subject.path == "/b")`},
		{`(subject.id == "a" || node.id == "b") && !(node.id == "c")`, `subject.id == "a" || node.id == "b" | !(node.id == "c")`},
		{`node.selectors.exists(s, s.startsWith("x") && s.endsWith("y"))`, `node.selectors.exists(s, s.startsWith("x") && s.endsWith("y"))`},
	}
	for _, tt := range tests {
		r := &rule{name: "t", expr: tt.expr}
		if err := r.compile(); err != nil {
			t.Fatalf("compile(%q): %v", tt.expr, err)
		}
		var got []string
		for _, c := range r.conjuncts {
			got = append(got, c.text)
		}
		if g := strings.Join(got, " | "); g != tt.want {
			t.Errorf("conjuncts(%q) = %q, want %q", tt.expr, g, tt.want)
		}
	}
}

// TestExplainNegations checks that clauses under ! and || are judged as a
// whole: the explanation of !(a && b) being false is the negation, never a
// or b (which are true).
func TestExplainNegations(t *testing.T) {
	src := `rules:
  - name: not-both
    credentials: ["*"]
    when: '!(subject.path == "/etl" && subject.trust_domain == "example.org") && request.credential == "x"'
  - name: either
    credentials: ["*"]
    when: '(subject.path == "/a" || subject.path == "/b") && subject.trust_domain == "example.org"'
`
	p, err := Parse("neg.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(context.Background(), input("spiffe://example.org/etl", "x"))
	if d.Allowed {
		t.Fatalf("allowed: %s", d.Explain())
	}
	want := [][]Clause{
		{{Expr: `!(subject.path == "/etl" && subject.trust_domain == "example.org")`, Result: ResultFalse}},
		{{Expr: `subject.path == "/a" || subject.path == "/b"`, Result: ResultFalse}},
	}
	for i, r := range d.Rules {
		if diff := cmp.Diff(want[i], r.Clauses); diff != "" {
			t.Errorf("rule %s clauses differ (-want +got):\n%s", r.Name, diff)
		}
	}
}

func TestSubjectRule(t *testing.T) {
	r, err := CompileSubjectRule(`subject.trust_domain == "example.org" && subject.segments.size() > 0 && subject.segments[0] == "web"`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{"spiffe://example.org/web/frontend", true},
		{"spiffe://example.org/web", true},
		{"spiffe://example.org/db", false},
		{"spiffe://example.org", false},
		{"spiffe://other.org/web", false},
	}
	for _, tt := range tests {
		got, err := r.Allow(spiffeid.RequireFromString(tt.id))
		if err != nil || got != tt.want {
			t.Errorf("Allow(%s) = %v, %v, want %v", tt.id, got, err, tt.want)
		}
	}
	idx, err := CompileSubjectRule(`subject.segments[1] == "x"`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := idx.Allow(spiffeid.RequireFromString("spiffe://example.org/a")); ok || err == nil {
		t.Errorf("Allow(index out of range) = %v, %v, want false and an error", ok, err)
	}
	for _, bad := range []string{`node.id == "x"`, `context.x == "y"`, `subject.id`, `subject.id ==`, `subject.selectors.size() > 0`} {
		if _, err := CompileSubjectRule(bad); err == nil {
			t.Errorf("CompileSubjectRule(%q) succeeded, want an error", bad)
		}
	}
	if _, err := CompileSubjectRule("subject.id == 1"); err == nil || !strings.HasPrefix(err.Error(), "1:12: ") {
		t.Errorf("CompileSubjectRule(type error) = %v, want it to start with the position 1:12", err)
	}
}

// marshalDecision writes d as the CLI does: indented, without HTML escapes.
func marshalDecision(t testing.TB, d Decision) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDocExpressions compiles the examples of docs/policy.md, so the page
// shows only expressions that load.
func TestDocExpressions(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "### Useful expressions\n\n```cel\n")
	if !ok {
		t.Fatal("docs/policy.md has no Useful expressions block")
	}
	block, _, _ := strings.Cut(rest, "```")
	n := 0
	for line := range strings.Lines(block) {
		expr, _, _ := strings.Cut(line, "  //") // a comment follows two spaces
		if expr = strings.TrimSpace(expr); expr == "" {
			continue
		}
		n++
		if err := (&rule{name: "doc", expr: expr}).compile(); err != nil {
			t.Errorf("docs/policy.md: %s: %v", expr, err)
		}
	}
	if n < 5 {
		t.Errorf("found %d expressions in docs/policy.md", n)
	}
	// And the policy at the top of the page.
	_, rest, _ = strings.Cut(string(doc), "# policy.yaml — deny unless a rule allows\n")
	src, _, _ := strings.Cut(rest, "```")
	if _, err := Parse("docs/policy.md", []byte(src)); err != nil {
		t.Errorf("the policy of docs/policy.md does not load: %v", err)
	}
}
