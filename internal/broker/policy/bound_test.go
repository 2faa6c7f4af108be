package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	"github.com/google/go-cmp/cmp"

	"github.com/signet-id/signet/internal/model"
)

// envelopeInput is an input at the edge of the envelope: lists and maps of
// envelopeSize entries, strings of envelopeSize bytes.
func envelopeInput() Input {
	in := input("spiffe://example.org/ops/"+strings.Repeat("a", 1000), "orders-db")
	long := strings.Repeat("x", envelopeSize)
	many := make([]model.Selector, envelopeSize)
	labels := make(map[string]string, envelopeSize)
	items := make([]any, envelopeSize)
	for i := range many {
		many[i] = model.Selector{Type: "aws_iid", Value: fmt.Sprintf("tag:k%d:v", i)}
		labels[fmt.Sprint("k", i)] = "v"
		items[i] = fmt.Sprint(i)
	}
	many[len(many)-1] = model.Selector{Type: "unix", Value: long[:envelopeSize-5]}
	in.Subject.Selectors = many
	in.Node = Node{ID: long, AttestationMethod: "aws_iid", Selectors: many, Labels: labels}
	labels["zone"] = long
	delete(labels, "k0")
	in.Context = map[string]any{"ticket": long, "items": items}
	return in
}

// TestStaticCostBoundsActualCost checks the premise of running statically
// bounded programs without the tracker: for an input at the edge of the
// envelope, what the tracker counts never exceeds the static cost.
func TestStaticCostBoundsActualCost(t *testing.T) {
	in := envelopeInput()
	if !inEnvelope(&in) {
		t.Fatal("envelopeInput is not in the envelope")
	}
	env, err := policyEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range []string{
		`subject.id == "spiffe://example.org/etl"`,
		`"aws_iid:tag:env:prod" in node.selectors`,
		`"unix:uid:0" in subject.selectors`,
		`node.labels.zone == "eu-1"`,
		`node.labels.zone.startsWith("x")`,
		`context.ticket.startsWith("CHG-")`,
		`context.ticket == "CHG-1"`,
		`subject.segments.size() >= 2 && subject.segments[0] == "ops"`,
		`subject.path.startsWith("/billing/") && request.ttl <= duration("5m")`,
		`node.selectors.exists(s, s.startsWith("x"))`,
		`node.selectors.exists(s, s == "unix:uid:0")`,
		`node.labels.exists(k, k == "zone")`,
		`"k5" in node.labels && node.labels.k5 == "v"`,
		`size(node.id) > 10 && node.id.endsWith("x")`,
		`node.id + node.id == subject.id`,
		`context.items.exists(i, i == "x")`,
		`has(context.ticket) && context.ticket.size() > 3`,
	} {
		ast, err := compileExpr(env, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		static := staticCost(env, ast)
		prg, err := env.Program(ast, cel.EvalOptions(cel.OptTrackCost))
		if err != nil {
			t.Fatal(err)
		}
		_, det, err := prg.Eval(newActivation(&in))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		actual := det.ActualCost()
		if actual == nil {
			t.Fatalf("%s: no actual cost", expr)
		}
		t.Logf("%s: static %d, actual %d", expr, static, *actual)
		if *actual > static {
			t.Errorf("%s: actual cost %d exceeds the static cost %d", expr, *actual, static)
		}
	}
}

// TestStaticCostUnbounded checks that expressions whose cost the estimate
// cannot bound under MaxCost keep the tracker.
func TestStaticCostUnbounded(t *testing.T) {
	for _, expr := range []string{
		`node.selectors.all(a, node.selectors.all(b, a != b || a == b))`,
		`context.items.exists(a, context.items.exists(b, a == b))`,
		`node.selectors.exists(s, s.matches("^a.*b$"))`,
	} {
		r := &rule{name: "t", expr: expr}
		if err := r.compile(); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if r.whole.fast != nil {
			t.Errorf("%s: static cost %d, run without the tracker", expr, r.whole.maxCost)
		}
	}
	r := &rule{name: "t", expr: `"x" in node.selectors && context.ticket.startsWith("CHG-")`}
	if err := r.compile(); err != nil {
		t.Fatal(err)
	}
	if r.whole.fast == nil || !r.combinable {
		t.Errorf("a rule of two cheap operands: fast %v, combinable %v", r.whole.fast != nil, r.combinable)
	}
}

// TestCostLimitOutsideEnvelope checks that a statically bounded rule is
// still held to MaxCost by an input outside the envelope: the tracked
// program runs then.
func TestCostLimitOutsideEnvelope(t *testing.T) {
	p, err := Parse("p.yaml", []byte("rules:\n  - name: member\n    credentials: [\"*\"]\n    when: '\"unix:uid:0\" in node.selectors'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.rules[0].whole.fast == nil {
		t.Fatal("the rule is not statically bounded")
	}
	in := input("spiffe://example.org/etl", "x")
	in.Node.Selectors = make([]model.Selector, 2*MaxCost)
	for i := range in.Node.Selectors {
		in.Node.Selectors[i] = model.Selector{Type: "aws_iid", Value: "tag:a:b"}
	}
	if inEnvelope(&in) {
		t.Fatalf("%d selectors are in the envelope", len(in.Node.Selectors))
	}
	for _, d := range []Decision{p.Decide(context.Background(), in), p.Evaluate(context.Background(), in)} {
		if d.Allowed || d.Rules[0].Result != ResultError || !strings.Contains(d.Rules[0].Error, "cost limit exceeded") {
			t.Errorf("decision = %s, want the cost limit", d.Explain())
		}
	}
	in.Node.Selectors = in.Node.Selectors[:100]
	in.Node.Selectors[99] = model.Selector{Type: "unix", Value: "uid:0"}
	if d := p.Evaluate(context.Background(), in); !d.Allowed {
		t.Errorf("decision = %s, want allow", d.Explain())
	}
}

func TestInEnvelope(t *testing.T) {
	long := strings.Repeat("x", envelopeSize+1)
	self := map[string]any{}
	self["self"] = self
	deep := map[string]any{}
	for range MaxContextDepth {
		deep = map[string]any{"a": deep}
	}
	parsed, err := ParseContext([]byte(`{"a":[1,2.5,{"b":null,"c":true}],"s":"` + strings.Repeat("y", MaxContextSize-40) + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Input)
		want bool
	}{
		{"zero", func(*Input) {}, true},
		{"parsed context", func(in *Input) { in.Context = parsed }, true},
		{"long context string", func(in *Input) { in.Context = map[string]any{"a": long} }, false},
		{"long context key", func(in *Input) { in.Context = map[string]any{long: 1} }, false},
		{"context of another type", func(in *Input) { in.Context = map[string]any{"a": []string{"x"}} }, false},
		{"context int", func(in *Input) { in.Context = map[string]any{"a": 1} }, false},
		{"context cycle", func(in *Input) { in.Context = self }, false},
		{"context too deep", func(in *Input) { in.Context = deep }, false},
		{"long list in context", func(in *Input) { in.Context = map[string]any{"a": make([]any, envelopeSize+1)} }, false},
		{"long node id", func(in *Input) { in.Node.ID = long }, false},
		{"long method", func(in *Input) { in.Node.AttestationMethod = long }, false},
		{"long credential", func(in *Input) { in.Request.Credential = long }, false},
		{"long label value", func(in *Input) { in.Node.Labels = map[string]string{"a": long} }, false},
		{"long label key", func(in *Input) { in.Node.Labels = map[string]string{long: "a"} }, false},
		{"long selector", func(in *Input) { in.Node.Selectors = []model.Selector{{Type: "a", Value: long}} }, false},
		{"long subject selector", func(in *Input) { in.Subject.Selectors = []model.Selector{{Type: "a", Value: long}} }, false},
		{"many selectors", func(in *Input) { in.Subject.Selectors = make([]model.Selector, envelopeSize+1) }, false},
	}
	for _, tt := range tests {
		in := input("spiffe://example.org/etl", "x")
		tt.mod(&in)
		if got := inEnvelope(&in); got != tt.want {
			t.Errorf("%s: inEnvelope() = %v, want %v", tt.name, got, tt.want)
		}
	}
	if in := envelopeInput(); !inEnvelope(&in) {
		t.Error("envelopeInput: not in the envelope")
	}
}

// checkEvaluate checks that Evaluate decides as the explained decision d:
// the same outcome and per-rule results, no clauses, and inputs that d has.
func checkEvaluate(t testing.TB, p *Policy, d Decision, in Input) {
	t.Helper()
	e := p.Evaluate(context.Background(), in)
	if e.Allowed != d.Allowed || e.Rule != d.Rule || e.TTL != d.TTL || e.Policy != d.Policy || e.Subject != d.Subject || e.Credential != d.Credential {
		t.Fatalf("Evaluate() = %s\nDecide() = %s", e.Explain(), d.Explain())
	}
	strip := make([]RuleResult, len(d.Rules))
	for i, r := range d.Rules {
		r.Clauses = nil
		strip[i] = r
	}
	if diff := cmp.Diff(strip, e.Rules); diff != "" {
		t.Fatalf("Evaluate() rules differ from Decide()'s (-decide +evaluate):\n%s", diff)
	}
	for k := range e.Inputs {
		if _, ok := d.Inputs[k]; !ok {
			t.Fatalf("Evaluate() read %s, which Decide() did not", k)
		}
	}
}

func TestGuard(t *testing.T) {
	tests := []struct {
		expr string
		want string // the guarded variable, "" for none
	}{
		{`subject.id == "spiffe://example.org/a" && node.id == "b"`, "subject.id node.id"},
		{`"example.org" == subject.trust_domain`, "subject.trust_domain"},
		{`request.credential == "db" || subject.path == "/a"`, ""},
		{`node.attestation_method == "aws_iid" && "x" in node.selectors`, "node.attestation_method node.selectors"},
		{`subject.id != "x" && node.id == "b"`, "node.id"},
		{`subject.id != "x"`, ""},
		{`subject.id == node.id`, ""},
		{`subject.segments.size() == 2`, ""},
		{`context.a == "x"`, "context"},
		{`context.a.b.c == "x"`, "context"},
		{`has(context.a) && context["a"] == "x"`, ""},
		{`context.a == 1`, ""},
		{`node.labels.zone == "eu-1"`, "node.labels"},
		{`"eu-1" == node.labels.zone`, "node.labels"},
		{`subject.segments[0] == "ops" && subject.segments[-1] == "x"`, "subject.segments"},
		{`"x" in node.selectors && subject.id == "x"`, "node.selectors subject.id"},
		{`"x" in subject.segments && "x" in subject.selectors`, "subject.segments subject.selectors"},
		{`node.id in node.selectors`, ""},
		{`subject.id == "a" && "x" in node.selectors && request.credential == "db"`, "subject.id node.selectors request.credential"},
	}
	for _, tt := range tests {
		r := &rule{name: "t", expr: tt.expr}
		if err := r.compile(); err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		var guarded []string
		for _, c := range r.conjuncts {
			if c.guard != nil {
				guarded = append(guarded, varNames[c.guard.idx])
			}
		}
		got := strings.Join(guarded, " ")
		if got != tt.want {
			t.Errorf("%s: guard on %q, want %q", tt.expr, got, tt.want)
		}
	}
}
