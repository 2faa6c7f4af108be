package policy

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/internal/model"
)

// FuzzParseContext checks that ParseContext never panics, accepts only
// JSON objects within its limits, and that what it accepts survives a
// round trip through JSON unchanged.
func FuzzParseContext(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"ticket":"CHG-1"}`, `{"a":[1,2.5,{"b":null}],"c":true}`, `[1]`, `"x"`,
		`{"a":1,"a":2}`, `{"a":1e400}`, `{"a":` + strings.Repeat(`[`, 10) + strings.Repeat(`]`, 10) + `}`,
		"{\"a\":\"\xff\"}", `{"a":1} x`, `{"n":-0,"m":9223372036854775808}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := ParseContext(raw)
		if err != nil {
			return
		}
		if len(raw) > MaxContextSize {
			t.Fatalf("ParseContext accepted %d bytes", len(raw))
		}
		if depth(got) > MaxContextDepth {
			t.Fatalf("ParseContext accepted depth %d", depth(got))
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("json.Marshal(ParseContext(%q)): %v", raw, err)
		}
		back, err := ParseContext(again)
		if err != nil {
			if len(again) > MaxContextSize {
				return // re-encoding may grow the text (escapes)
			}
			t.Fatalf("ParseContext(%s) (re-encoded) = %v", again, err)
		}
		if !reflect.DeepEqual(got, back) {
			t.Fatalf("round trip differs:\n%s", cmp.Diff(got, back))
		}
	})
}

// depth is the nesting depth of a parsed context value.
func depth(v any) int {
	switch v := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range v {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range v {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// FuzzDecide runs random inputs against the fixed policy of
// testdata/policy.yaml: Decide never panics, has a result for every rule,
// is deterministic, allows only through a rule that names the credential,
// and explains every rule that was not true.
func FuzzDecide(f *testing.F) {
	p := loadTestPolicy(f)
	f.Add("spiffe://example.org/etl", "orders-db", "aws_iid:tag:env:prod", "env", "prod", []byte(`{"ticket":"CHG-1"}`), int64(0), int64(at10.Unix()))
	f.Add("spiffe://example.org/ops/backup", "x", "unix:uid:0", "env", "prod", []byte(`{}`), int64(time.Minute), int64(0))
	f.Add("spiffe://example.org/billing/api", "stripe", "", "", "", []byte(`{"approved":true}`), int64(5*time.Minute), int64(1<<40))
	f.Add("", "", ":", "", "", []byte(`{"ticket":7}`), int64(-1), int64(-1<<40))
	f.Add("spiffe://example.org/etl", "orders-db", "aws_iid:tag:env:prod", "env", "prod", []byte(`not json`), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, id, credential, selector, labelKey, labelValue string, rawContext []byte, ttl, unix int64) {
		in := Input{Request: Request{Credential: credential, TTL: time.Duration(ttl), Time: time.Unix(unix, 0)}}
		if sid, err := spiffeid.FromString(id); err == nil {
			in.Subject.ID = sid
		}
		typ, val, _ := strings.Cut(selector, ":")
		sel := model.Selector{Type: typ, Value: val}
		in.Subject.Selectors = []model.Selector{sel}
		in.Node = Node{ID: id, AttestationMethod: typ, Selectors: []model.Selector{sel, sel}, Labels: map[string]string{labelKey: labelValue}}
		if c, err := ParseContext(rawContext); err == nil {
			in.Context = c
		} else {
			// Values ParseContext would never produce must not crash either.
			in.Context = map[string]any{"ticket": rawContext, "n": ttl, "ch": make(chan int), "f": func() {}}
		}
		d := p.Decide(context.Background(), in)
		if len(d.Rules) != len(p.rules) {
			t.Fatalf("Decide() has %d rule results, want %d", len(d.Rules), len(p.rules))
		}
		again := p.Decide(context.Background(), in)
		if diff := cmp.Diff(d, again, cmpopts.IgnoreFields(Decision{}, "Inputs")); diff != "" {
			t.Fatalf("Decide() is not deterministic (-first +second):\n%s", diff)
		}
		if diff := cmp.Diff(slices.Sorted(maps.Keys(d.Inputs)), slices.Sorted(maps.Keys(again.Inputs))); diff != "" {
			t.Fatalf("Decide() read different inputs (-first +second):\n%s", diff)
		}
		if d.Allowed {
			i := slices.Index(p.RuleNames(), d.Rule)
			if i < 0 || !p.rules[i].applies(credential) || d.Rules[i].Result != ResultAllow {
				t.Fatalf("allowed by %q, which does not name %q or did not allow", d.Rule, credential)
			}
		}
		for _, r := range d.Rules {
			if (r.Result == ResultFalse || r.Result == ResultError) && len(r.Clauses) == 0 {
				t.Fatalf("rule %s is %s without a clause explaining it", r.Name, r.Result)
			}
		}
		checkAgainstWhole(t, p, d, &in)
		checkEvaluate(t, p, d, in)
		_ = d.Explain()
	})
}

// FuzzParse checks that Parse never panics on any YAML and that an
// accepted policy decides without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"rules:\n  - name: a\n    credentials: [x]\n    when: subject.id == \"x\"\n    ttl: 5m\n",
		"rules:\n  - name: a\n    credentials: [\"*\"]\n    when: >\n      context.a.b[0] == 1 &&\n      node.labels.x == \"y\"\n",
		"rules:\n  - name: a\n    credentials: [x]\n    when: |\n      [1,2].all(i, i > 0) ||\n      request.ttl < duration(\"1h\")\n",
		"rules: []\n", "", "rules:\n  - {name: a, credentials: [x], when: \"subject.idd\"}\n",
		"rules:\n  - name: a\n    credentials: [x]\n    when: \"\\u00e9\" == subject.path\n",
		"rules:\n  - name: a\n    credentials: [x]\n    when: true\n    ssh: {principals: [deploy], extensions: [], force_command: /bin/true}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		in := input("spiffe://example.org/etl", "x")
		in.Context = map[string]any{"a": map[string]any{"b": []any{int64(1)}}}
		d := p.Decide(context.Background(), in)
		if len(d.Rules) != len(p.rules) {
			t.Fatalf("Decide() has %d rule results, want %d", len(d.Rules), len(p.rules))
		}
	})
}

// wholeResult evaluates rule r as one CEL program, as cel-go would without
// the split into operands: the reference Decide's combination must match.
func wholeResult(t testing.TB, r *rule, in *Input) Result {
	t.Helper()
	env, err := policyEnv()
	if err != nil {
		t.Fatal(err)
	}
	ast, err := compileExpr(env, r.expr)
	if err != nil {
		t.Fatal(err)
	}
	prg, err := env.Program(ast, programOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := prg.Eval(newActivation(in))
	switch {
	case err != nil:
		return ResultError
	case out == types.True:
		return ResultAllow
	case out == types.False:
		return ResultFalse
	}
	return ResultError
}

// checkAgainstWhole checks every evaluated rule of d against wholeResult.
func checkAgainstWhole(t testing.TB, p *Policy, d Decision, in *Input) {
	t.Helper()
	for i, rr := range d.Rules {
		if rr.Result != ResultAllow && rr.Result != ResultFalse && rr.Result != ResultError {
			continue
		}
		if want := wholeResult(t, p.rules[i], in); rr.Result != want {
			t.Fatalf("rule %s: Decide says %s, the whole expression evaluates to %s", rr.Name, rr.Result, want)
		}
	}
}
