package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/cputime"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchPolicy builds a 50-rule policy in the shape of the example.
// With shared, every rule names the credential "db" (the worst case: every
// rule is evaluated); otherwise rule i names only "db-i".
func benchPolicy(b *testing.B, shared bool) *Policy {
	return benchPolicyOf(b, shared, false)
}

// benchPolicyOf is benchPolicy; with unguarded, each rule tells its
// subject by subject.segments[0] == "svc-i" last instead of by
// subject.id == "…" first: no operand is a guard (an input compared with a
// literal, decided without running a program), and a rule for another
// subject is only found false after its three other operands (true for
// benchInput) ran — the most work per rule.
func benchPolicyOf(b *testing.B, shared, unguarded bool) *Policy {
	b.Helper()
	var s strings.Builder
	s.WriteString("rules:\n")
	for i := range 50 {
		cred := fmt.Sprintf("db-%d", i)
		if shared {
			cred = "db"
		}
		first := fmt.Sprintf(`subject.id == "spiffe://example.org/svc-%d" &&`, i) + "\n      "
		last := ""
		if unguarded {
			first, last = "", fmt.Sprintf(` &&`+"\n      "+`subject.segments[0] == "svc-%d"`, i)
		}
		fmt.Fprintf(&s, `  - name: rule-%d
    credentials: [%s]
    when: >
      %s"aws_iid:tag:env:prod" in node.selectors &&
      node.labels.zone == "eu-1" &&
      context.ticket.startsWith("CHG-")%s
    ttl: 10m
`, i, cred, first, last)
	}
	p, err := Parse("bench.yaml", []byte(s.String()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchInput(svc int, credential string) Input {
	in := input(fmt.Sprintf("spiffe://example.org/svc-%d", svc), credential)
	in.Node = Node{ID: "spiffe://example.org/signet/agent/aws_iid/1/i-1", AttestationMethod: "aws_iid",
		Selectors: sel("aws_iid:tag:env:prod", "aws_iid:region:eu-west-1", "aws_iid:az:eu-west-1a"),
		Labels:    map[string]string{"zone": "eu-1"}}
	in.Context = map[string]any{"ticket": "CHG-1"}
	return in
}

// decideFunc is Policy.Decide or Policy.Evaluate.
type decideFunc func(*Policy, context.Context, Input) Decision

func runDecide(b *testing.B, decide decideFunc, p *Policy, in Input, allow bool) {
	b.Helper()
	ctx := context.Background()
	if d := decide(p, ctx, in); d.Allowed != allow {
		b.Fatalf("decision = %s", d.Explain())
	}
	reportCPU(b, func() {
		for b.Loop() {
			decide(p, ctx, in)
		}
	})
}

// reportCPU runs loop and reports, besides ns/op, the process CPU time per
// operation (cpu-ns/op), which stays meaningful when the machine is shared.
func reportCPU(b *testing.B, loop func()) {
	b.ReportAllocs()
	start, ok := cputime.Process()
	loop()
	end, _ := cputime.Process()
	if ok && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkDecide50 measures one explained decision (Decide: every rule
// that did not allow has its false clauses) against a 50-rule policy.
func BenchmarkDecide50(b *testing.B) { benchDecide50(b, (*Policy).Decide) }

// BenchmarkEvaluate50 measures one decision without the clauses
// (Evaluate, the broker's request path) against a 50-rule policy.
func BenchmarkEvaluate50(b *testing.B) { benchDecide50(b, (*Policy).Evaluate) }

func benchDecide50(b *testing.B, decide decideFunc) {
	b.Run("own-credential/allow", func(b *testing.B) {
		runDecide(b, decide, benchPolicy(b, false), benchInput(49, "db-49"), true)
	})
	b.Run("own-credential/deny", func(b *testing.B) {
		in := benchInput(49, "db-49")
		in.Context = map[string]any{"ticket": "INC-1"}
		runDecide(b, decide, benchPolicy(b, false), in, false)
	})
	b.Run("shared-credential/allow-first", func(b *testing.B) {
		runDecide(b, decide, benchPolicy(b, true), benchInput(0, "db"), true)
	})
	b.Run("shared-credential/allow-last", func(b *testing.B) {
		runDecide(b, decide, benchPolicy(b, true), benchInput(49, "db"), true)
	})
	b.Run("shared-credential/deny-all", func(b *testing.B) {
		runDecide(b, decide, benchPolicy(b, true), benchInput(99, "db"), false)
	})
	b.Run("shared-credential/unguarded/allow-last", func(b *testing.B) {
		runDecide(b, decide, benchPolicyOf(b, true, true), benchInput(49, "db"), true)
	})
	b.Run("shared-credential/unguarded/deny-all", func(b *testing.B) {
		runDecide(b, decide, benchPolicyOf(b, true, true), benchInput(99, "db"), false)
	})
	b.Run("shared-credential/selectors/allow-last", func(b *testing.B) {
		p, in := benchSelectors(b, 49)
		runDecide(b, decide, p, in, true)
	})
	b.Run("shared-credential/selectors/deny-all", func(b *testing.B) {
		p, in := benchSelectors(b, 99)
		runDecide(b, decide, p, in, false)
	})
	b.Run("shared-credential/context-maps/allow-last", func(b *testing.B) {
		p, in := benchContextMaps(b, 49)
		runDecide(b, decide, p, in, true)
	})
	b.Run("shared-credential/context-maps/deny-all", func(b *testing.B) {
		p, in := benchContextMaps(b, 99)
		runDecide(b, decide, p, in, false)
	})
}

// benchSelectors is a 50-rule policy for one credential whose rules tell
// nodes apart by selectors only: rule i wants "aws_iid:tag:team:t-i" and
// "aws_iid:region:eu-west-1" in a node with 64 selectors; the node has
// team t-svc's tag.
func benchSelectors(b *testing.B, svc int) (*Policy, Input) {
	b.Helper()
	var s strings.Builder
	s.WriteString("rules:\n")
	for i := range 50 {
		fmt.Fprintf(&s, `  - name: rule-%d
    credentials: [db]
    when: >
      "aws_iid:region:eu-west-1" in node.selectors &&
      "aws_iid:tag:team:t-%d" in node.selectors &&
      "aws_iid:tag:env:prod" in subject.selectors
`, i, i)
	}
	p, err := Parse("bench.yaml", []byte(s.String()))
	if err != nil {
		b.Fatal(err)
	}
	in := benchInput(svc, "db")
	var nodeSel []string
	for i := range 62 {
		nodeSel = append(nodeSel, fmt.Sprintf("aws_iid:tag:k%d:v%d", i, i))
	}
	nodeSel = append(nodeSel, "aws_iid:region:eu-west-1", fmt.Sprintf("aws_iid:tag:team:t-%d", svc))
	in.Node.Selectors = sel(nodeSel...)
	in.Subject.Selectors = sel("aws_iid:tag:env:prod", "unix:uid:1000")
	return p, in
}

// benchContextMaps is a 50-rule policy for one credential whose rules read
// nested context maps and node labels: rule i wants
// context.change.service == "svc-i" after checks on context.change.ticket,
// context.env and node.labels.
func benchContextMaps(b *testing.B, svc int) (*Policy, Input) {
	b.Helper()
	var s strings.Builder
	s.WriteString("rules:\n")
	for i := range 50 {
		fmt.Fprintf(&s, `  - name: rule-%d
    credentials: [db]
    when: >
      context.env == "prod" &&
      node.labels.zone == "eu-1" &&
      context.change.ticket.startsWith("CHG-") &&
      context.change.service == "svc-%d"
`, i, i)
	}
	p, err := Parse("bench.yaml", []byte(s.String()))
	if err != nil {
		b.Fatal(err)
	}
	in := benchInput(svc, "db")
	in.Context = map[string]any{"env": "prod", "change": map[string]any{"ticket": "CHG-7", "service": fmt.Sprintf("svc-%d", svc), "approvers": []any{"a", "b"}}}
	return p, in
}

// BenchmarkSubjectRule measures the gateway's per-connection check.
func BenchmarkSubjectRule(b *testing.B) {
	r, err := CompileSubjectRule(`subject.trust_domain == "example.org" && subject.segments.size() > 0 && subject.segments[0] == "web"`)
	if err != nil {
		b.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/web/frontend")
	reportCPU(b, func() {
		for b.Loop() {
			if ok, err := r.Allow(id); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
