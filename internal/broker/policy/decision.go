package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Result is the outcome of one rule, or of one clause of a rule.
type Result string

// Results.
const (
	ResultAllow         Result = "allow"          // the rule was true and decided
	ResultFalse         Result = "false"          // the rule (or clause) was false
	ResultError         Result = "error"          // evaluation failed: a missing key, the cost limit, ...
	ResultNotApplicable Result = "not_applicable" // the rule does not name the credential
	ResultNotEvaluated  Result = "not_evaluated"  // an earlier rule already allowed
)

// Decision is the outcome of Decide, with its explanation. Its JSON form
// (the one of `signet policy test --json` and of the broker's audit
// records) has the fields' tags; TTL is written as "ttl" in Go duration
// syntax, omitted when zero.
type Decision struct {
	Allowed    bool   `json:"allowed"`
	Rule       string `json:"rule,omitempty"` // the rule that allowed; empty on deny
	Credential string `json:"credential"`
	Subject    string `json:"subject"`
	Policy     string `json:"policy,omitempty"` // the policy's name (its file)
	// TTL is the allowing rule's ttl: the credential's lifetime must not
	// exceed it. Zero when the rule sets none, or on deny.
	TTL time.Duration `json:"-"`
	// SSH is the allowing rule's ssh key: how the ssh certificate is
	// narrowed. Nil when the rule has none, or on deny. It is shared with
	// the policy: do not modify it.
	SSH   *SSH         `json:"ssh,omitempty"`
	Rules []RuleResult `json:"rules"` // every rule of the policy, in file order
	// Inputs holds the inputs the evaluated rules read, by variable name
	// ("subject.id", "node.selectors", "context", "request.ttl", ...), for
	// the audit record: strings, lists of strings, the labels and context
	// maps, the TTL in Go duration syntax and the time in RFC 3339. Inputs
	// no rule read are left out; nil when no rule was evaluated. The
	// context is the Input's map itself, so a decision encodes to JSON when
	// its context does (always, for one from ParseContext).
	Inputs map[string]any `json:"inputs,omitempty"`
}

// RuleResult is what one rule did in a decision.
type RuleResult struct {
	Name    string `json:"name"`
	Applies bool   `json:"applies"` // the rule names the requested credential (or "*")
	Result  Result `json:"result"`
	Error   string `json:"error,omitempty"` // for ResultError: why evaluation failed
	// Clauses lists, for a rule that was false or failed, the conjuncts
	// (operands of its top-level && chain) that were false or failed.
	Clauses []Clause `json:"clauses,omitempty"`
}

// Clause is one conjunct of a rule that was not true.
type Clause struct {
	Expr   string `json:"expr"`   // the conjunct, as CEL
	Result Result `json:"result"` // ResultFalse or ResultError
	Error  string `json:"error,omitempty"`
}

// MarshalJSON writes d with its TTL in Go duration syntax.
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	var ttl string
	if d.TTL > 0 {
		ttl = d.TTL.String()
	}
	return json.Marshal(struct {
		plain
		TTL string `json:"ttl,omitempty"`
	}{plain(d), ttl})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (d *Decision) UnmarshalJSON(b []byte) error {
	type plain Decision
	var v struct {
		plain
		TTL string `json:"ttl,omitempty"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = Decision(v.plain)
	if v.TTL != "" {
		ttl, err := time.ParseDuration(v.TTL)
		if err != nil {
			return fmt.Errorf("decision ttl: %w", err)
		}
		d.TTL = ttl
	}
	return nil
}

// Explain returns the decision as text for people: allow or deny, the rule
// that decided, and for every rule that names the credential but did not
// allow, the clauses that were false or failed.
func (d Decision) Explain() string {
	var b strings.Builder
	if d.Allowed {
		fmt.Fprintf(&b, "allow: rule %q allows credential %q for %s", d.Rule, d.Credential, subjectText(d.Subject))
		if d.TTL > 0 {
			fmt.Fprintf(&b, " (ttl at most %s)", d.TTL)
		}
		b.WriteString("\n")
		if d.SSH != nil {
			fmt.Fprintf(&b, "  ssh certificate narrowed to: %s\n", d.SSH)
		}
	} else {
		fmt.Fprintf(&b, "deny: no rule allows credential %q for %s\n", d.Credential, subjectText(d.Subject))
	}
	applicable := 0
	for _, r := range d.Rules {
		switch r.Result {
		case ResultAllow:
			applicable++
			fmt.Fprintf(&b, "  rule %s: allow\n", r.Name)
		case ResultFalse, ResultError:
			applicable++
			if r.Error != "" {
				fmt.Fprintf(&b, "  rule %s: %s: %s\n", r.Name, r.Result, r.Error)
			} else {
				fmt.Fprintf(&b, "  rule %s: %s\n", r.Name, r.Result)
			}
			for _, c := range r.Clauses {
				if c.Error != "" {
					fmt.Fprintf(&b, "    failed: %s: %s\n", c.Expr, c.Error)
				} else {
					fmt.Fprintf(&b, "    false:  %s\n", c.Expr)
				}
			}
		case ResultNotEvaluated:
			if r.Applies {
				applicable++
				fmt.Fprintf(&b, "  rule %s: not evaluated (an earlier rule allowed)\n", r.Name)
			}
		}
	}
	if applicable == 0 {
		fmt.Fprintf(&b, "  no rule names credential %q (deny by default)\n", d.Credential)
	}
	return b.String()
}

func subjectText(s string) string {
	if s == "" {
		return "an unknown subject"
	}
	return s
}

// String describes the narrowing for people and audit records:
// "principals [deploy]; extensions []; force_command /bin/deploy", leaving
// out what is not narrowed.
func (o *SSH) String() string {
	var parts []string
	if o.Principals != nil {
		parts = append(parts, "principals ["+strings.Join(o.Principals, " ")+"]")
	}
	if o.Extensions != nil {
		parts = append(parts, "extensions ["+strings.Join(o.Extensions, " ")+"]")
	}
	if o.ForceCommand != "" {
		parts = append(parts, "force_command "+o.ForceCommand)
	}
	return strings.Join(parts, "; ")
}
