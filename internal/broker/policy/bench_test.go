package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchPolicy builds a 50-rule policy in the shape of the example.
// With shared, every rule names the credential "db" (the worst case: every
// rule is evaluated); otherwise rule i names only "db-i".
func benchPolicy(b *testing.B, shared bool) *Policy {
	b.Helper()
	var s strings.Builder
	s.WriteString("rules:\n")
	for i := range 50 {
		cred := fmt.Sprintf("db-%d", i)
		if shared {
			cred = "db"
		}
		fmt.Fprintf(&s, `  - name: rule-%d
    credentials: [%s]
    when: >
      subject.id == "spiffe://example.org/svc-%d" &&
      "aws_iid:tag:env:prod" in node.selectors &&
      node.labels.zone == "eu-1" &&
      context.ticket.startsWith("CHG-")
    ttl: 10m
`, i, cred, i)
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

func runDecide(b *testing.B, p *Policy, in Input, allow bool) {
	b.Helper()
	ctx := context.Background()
	if d := p.Decide(ctx, in); d.Allowed != allow {
		b.Fatalf("Decide() = %s", d.Explain())
	}
	reportCPU(b, func() {
		for b.Loop() {
			p.Decide(ctx, in)
		}
	})
}

// reportCPU runs loop and reports, besides ns/op, the process CPU time per
// operation (cpu-ns/op), which stays meaningful when the machine is shared.
func reportCPU(b *testing.B, loop func()) {
	b.ReportAllocs()
	start, ok := processCPU()
	loop()
	end, _ := processCPU()
	if ok && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkDecide50 measures one decision against a 50-rule policy.
func BenchmarkDecide50(b *testing.B) {
	b.Run("own-credential/allow", func(b *testing.B) {
		runDecide(b, benchPolicy(b, false), benchInput(49, "db-49"), true)
	})
	b.Run("own-credential/deny", func(b *testing.B) {
		in := benchInput(49, "db-49")
		in.Context = map[string]any{"ticket": "INC-1"}
		runDecide(b, benchPolicy(b, false), in, false)
	})
	b.Run("shared-credential/allow-first", func(b *testing.B) {
		runDecide(b, benchPolicy(b, true), benchInput(0, "db"), true)
	})
	b.Run("shared-credential/allow-last", func(b *testing.B) {
		runDecide(b, benchPolicy(b, true), benchInput(49, "db"), true)
	})
	b.Run("shared-credential/deny-all", func(b *testing.B) {
		runDecide(b, benchPolicy(b, true), benchInput(99, "db"), false)
	})
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
