package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// TestGuardAgreesWithProgram checks every guard against its conjunct's
// program: where a guard decides, the program gives the same result, for
// inputs with the compared value present, absent, of another type, out of
// range, and lists shorter and longer than setMin; and the guard reads the
// variable the program reads.
func TestGuardAgreesWithProgram(t *testing.T) {
	exprs := []string{
		`subject.id == "spiffe://example.org/ops/backup"`,
		`"example.org" == subject.trust_domain`,
		`subject.path == "/ops/backup"`,
		`node.id == "spiffe://example.org/agent"`,
		`node.attestation_method == "aws_iid"`,
		`request.credential == "db"`,
		`subject.segments[0] == "ops"`,
		`subject.segments[1] == "backup"`,
		`subject.segments[5] == "x"`,
		`"backup" in subject.segments`,
		`"aws_iid:tag:env:prod" in node.selectors`,
		`"aws_iid:tag:k20:v" in node.selectors`,
		`"unix:uid:0" in subject.selectors`,
		`node.labels.zone == "eu-1"`,
		`context.ticket == "CHG-1"`,
		`context.change.service == "svc-1"`,
		`context.change.n == "1"`,
		`context.a.b.c == "x"`,
	}
	var many []model.Selector
	for i := range 2 * setMin {
		many = append(many, model.Selector{Type: "aws_iid", Value: fmt.Sprintf("tag:k%d:v", i)})
	}
	inputs := map[string]Input{}
	add := func(name string, mod func(*Input)) {
		in := input("spiffe://example.org/ops/backup", "db")
		in.Node = Node{ID: "spiffe://example.org/agent", AttestationMethod: "aws_iid",
			Selectors: sel("aws_iid:tag:env:prod", "aws_iid:region:eu-west-1"), Labels: map[string]string{"zone": "eu-1"}}
		in.Subject.Selectors = sel("unix:uid:0")
		in.Context = map[string]any{"ticket": "CHG-1", "change": map[string]any{"service": "svc-1", "n": int64(1)},
			"a": map[string]any{"b": map[string]any{"c": "x"}}}
		mod(&in)
		inputs[name] = in
	}
	add("matching", func(*Input) {})
	add("zero", func(in *Input) { *in = Input{} })
	add("other values", func(in *Input) {
		in.Subject.ID = spiffeid.RequireFromString("spiffe://other.org/web")
		in.Node = Node{ID: "x", AttestationMethod: "join_token", Labels: map[string]string{"zone": "us-1"}}
		in.Request.Credential = "other"
		in.Context = map[string]any{"ticket": "INC-1", "change": map[string]any{"service": "svc-2", "n": "2"}, "a": map[string]any{"b": map[string]any{"c": "y"}}}
	})
	add("missing keys", func(in *Input) {
		in.Node.Labels = nil
		in.Context = map[string]any{"change": map[string]any{}, "a": map[string]any{}}
	})
	add("other types", func(in *Input) {
		in.Node.Labels = map[string]string{"zone": ""}
		in.Context = map[string]any{"ticket": int64(7), "change": "svc-1", "a": map[string]any{"b": []any{"c"}}}
	})
	add("foreign Go types", func(in *Input) {
		in.Context = map[string]any{"ticket": []string{"CHG-1"}, "change": map[string]string{"service": "svc-1"}}
	})
	add("long lists", func(in *Input) {
		in.Node.Selectors = many
		in.Subject.Selectors = append(many, sel("unix:uid:0")...)
	})
	add("short path", func(in *Input) { in.Subject.ID = spiffeid.RequireFromString("spiffe://example.org/ops") })
	for _, expr := range exprs {
		r := &rule{name: "t", expr: expr}
		if err := r.compile(); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		c := r.conjuncts[0]
		if c.guard == nil {
			t.Fatalf("%s: no guard", expr)
		}
		for name, in := range inputs {
			fast := inEnvelope(&in)
			want, _ := c.eval(context.Background(), newActivation(&in), fast)
			for _, f := range []bool{fast, false} {
				act := newActivation(&in)
				got, ok := c.guard.decide(act, f)
				if !ok {
					continue
				}
				if got != want {
					t.Errorf("%s, input %q (fast %v): guard = %s, program = %s", expr, name, f, got, want)
				}
				if act.vals[c.guard.idx] == nil {
					t.Errorf("%s, input %q: the guard did not read %s", expr, name, varNames[c.guard.idx])
				}
			}
		}
	}
}

func TestSelectorStrings(t *testing.T) {
	in := []model.Selector{{Type: "aws_iid", Value: "tag:env:prod"}, {Type: "unix", Value: "uid:0"}, {}, {Type: "k8s", Value: ""}, {Type: "", Value: "x:y"}}
	got := selectorStrings(in)
	if len(got) != len(in) {
		t.Fatalf("selectorStrings() = %q", got)
	}
	for i, s := range in {
		if got[i] != s.String() {
			t.Errorf("selectorStrings()[%d] = %q, want %q", i, got[i], s.String())
		}
	}
	if got := selectorStrings(nil); got == nil || len(got) != 0 {
		t.Errorf("selectorStrings(nil) = %#v, want an empty list", got)
	}
}

func TestStringSet(t *testing.T) {
	for _, n := range []int{0, 1, 2, setMin, 100, 1000} {
		var elems []string
		for i := range n {
			elems = append(elems, fmt.Sprintf("aws_iid:tag:k%d:v", i))
		}
		if n > 2 {
			elems = append(elems, elems[1], "") // a duplicate and an empty string
		}
		s := newStringSet(elems)
		for _, e := range elems {
			if !s.has(e) {
				t.Errorf("n=%d: has(%q) = false", n, e)
			}
		}
		for _, x := range []string{"aws_iid:tag:k:v", fmt.Sprintf("aws_iid:tag:k%d:v", n+1), "x"} {
			if s.has(x) {
				t.Errorf("n=%d: has(%q) = true", n, x)
			}
		}
		if n <= 2 && s.has("") {
			t.Errorf("n=%d: has(\"\") = true", n)
		}
	}
}

// FuzzGuards checks the guards against their programs for random labels,
// context (from ParseContext) and selectors: where a guard decides, the
// program gives the same result.
func FuzzGuards(f *testing.F) {
	f.Add("zone", "eu-1", []byte(`{"ticket":"CHG-1","change":{"service":"svc-1"}}`), "aws_iid:tag:env:prod", 3)
	f.Add("", "", []byte(`{"change":"svc-1","ticket":7}`), ":", 40)
	f.Add("zone", "", []byte(`{"change":{"service":["svc-1"]},"a":{"b":{"c":"x"}}}`), "unix:uid:0", 0)
	exprs := []string{
		`node.labels.zone == "eu-1"`, `"" == node.labels.zone`, `context.ticket == "CHG-1"`,
		`context.change.service == "svc-1"`, `context.a.b.c == "x"`, `"aws_iid:tag:env:prod" in node.selectors`,
		`"unix:uid:0" in subject.selectors`, `subject.segments[1] == "b"`, `"b" in subject.segments`,
	}
	var guards []program
	for _, e := range exprs {
		r := &rule{name: "t", expr: e}
		if err := r.compile(); err != nil {
			f.Fatal(err)
		}
		if r.conjuncts[0].guard == nil {
			f.Fatalf("%s: no guard", e)
		}
		guards = append(guards, r.conjuncts[0])
	}
	f.Fuzz(func(t *testing.T, labelKey, labelValue string, rawContext []byte, selector string, n int) {
		c, err := ParseContext(rawContext)
		if err != nil {
			return
		}
		in := input("spiffe://example.org/a/b", "db")
		typ, val, _ := strings.Cut(selector, ":")
		n = n % 100
		if n < 0 {
			n = -n
		}
		for i := range n {
			in.Node.Selectors = append(in.Node.Selectors, model.Selector{Type: typ, Value: fmt.Sprint(val, i%7)})
		}
		in.Node.Selectors = append(in.Node.Selectors, model.Selector{Type: typ, Value: val})
		in.Subject.Selectors = in.Node.Selectors[n/2:]
		in.Node.Labels = map[string]string{labelKey: labelValue}
		in.Context = c
		fast := inEnvelope(&in)
		for _, g := range guards {
			got, ok := g.guard.decide(newActivation(&in), fast)
			if !ok {
				continue
			}
			if want, _ := g.eval(context.Background(), newActivation(&in), fast); got != want {
				t.Fatalf("%s: guard = %s, program = %s", g.text, got, want)
			}
		}
	})
}
