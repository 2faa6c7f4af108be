// Package policy is the credential broker's policy engine: rules written in
// CEL that decide whether a workload may have a credential, and explain why
// or why not. The gateway uses the same evaluator (CompileSubjectRule) to
// authorize peers by their SPIFFE ID.
//
// # Policy files
//
// A policy is a YAML document with one key, rules:
//
//	rules:
//	  - name: etl-reads-orders        # unique; letters, digits, '.', '_', '-'
//	    credentials: [orders-db]      # the credentials the rule is about; "*" is every credential
//	    when: >                       # a CEL expression of type bool
//	      subject.id == "spiffe://example.org/etl" &&
//	      "aws_iid:tag:env:prod" in node.selectors &&
//	      context.ticket.startsWith("CHG-")
//	    ttl: 10m                      # optional: caps the credential's lifetime
//	  - name: deployer-runs-deploy
//	    credentials: [prod-ssh]       # ssh credentials only, named (not "*")
//	    when: subject.id == "spiffe://example.org/deployer"
//	    ssh:                          # optional: narrows the ssh certificate
//	      principals: [deploy]        # a subset of the credential's principals
//	      extensions: []              # a subset of its extensions ([] grants none)
//	      force_command: /usr/local/bin/deploy   # sets the force-command critical option
//
// A rule's ssh key can only narrow: the server checks, when it loads the
// policy and on every reload, that every credential the rule names is an
// ssh credential whose configuration has those principals and extensions,
// and refuses the policy otherwise, naming the rule (see Holder.SetCheck).
//
// Parse and Load compile and type-check every rule; a rule that does not
// compile is an error naming the rule and its line and column in the YAML.
//
// # Inputs
//
// A rule sees four variables (see Input):
//
//	subject.id           string        the caller's SPIFFE ID, "spiffe://example.org/etl"
//	subject.trust_domain string        "example.org"
//	subject.path         string        "/etl"
//	subject.segments     list(string)  the path's segments, ["etl"]
//	subject.selectors    list(string)  the entry's selectors as "type:value"
//	node.id              string        the agent's SPIFFE ID
//	node.attestation_method string     "aws_iid", "join_token", ...
//	node.selectors       list(string)  the node's selectors as "type:value"
//	node.labels          map(string, string)
//	context              map(string, dyn)  the request's task context (ParseContext)
//	request.credential   string        the credential asked for
//	request.ttl          duration      the TTL asked for; duration("0s") when none was
//	request.time         timestamp     when the request arrived
//
// Reading a key that context or node.labels do not have is an evaluation
// error ("no such key: ticket"); the rule then does not allow, and the
// decision names the key. Test with `"ticket" in context` or has(context.ticket)
// where a key is optional.
//
// # Decisions
//
// Decide is deny by default: it goes through the rules in file order and the
// first rule that names the requested credential (or "*") and whose
// expression is true allows; rules after it are not evaluated. The decision
// carries, for every rule, whether it named the credential and its result;
// Decide adds, for a rule that was false or failed, the conjuncts (the
// operands of its top-level && chain) that were false or failed, while
// Evaluate — the request path — leaves them out and evaluates each rule's
// expression only as far as && and || need. Both give the same result for
// every rule. Evaluation is cost-bounded (MaxCost per rule) and honours the
// context's cancellation. A rule's ttl is returned as Decision.TTL: the
// broker grants no longer than it.
//
// # Use
//
//	h, err := policy.NewHolder(path)     // fails when the policy does not compile
//	c, err := policy.ParseContext(raw)   // the request_context parameter
//	d := h.Evaluate(ctx, policy.Input{Subject: …, Node: …, Context: c, Request: …})
//	d.Allowed, d.Rule, d.TTL             // the decision
//	json.Marshal(d)                      // for the audit record (d.Inputs: what the rules read)
//	d = h.Decide(ctx, in)                // the same decision with its clauses (signet policy test)
//	d.Explain()                          // for people
//	err = h.Reload()                     // on SIGHUP; the old policy stays when err != nil
//
//	r, err := policy.CompileSubjectRule(expr) // the gateway: one expression over subject
//	ok, err := r.Allow(peerID)
package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/model"
)

// Limits of a policy.
const (
	// MaxFileSize bounds a policy file.
	MaxFileSize = 1 << 20
	// MaxRules bounds the number of rules of a policy.
	MaxRules = 1000
	// MaxExpressionSize bounds one rule's expression, in code points.
	MaxExpressionSize = 16 << 10
	// MaxCost bounds the evaluation cost of a rule's expression (cel-go's
	// cost units, roughly one per operation or list element visited), and
	// in Decide's explanation that of each operand of its && chain. An
	// ordinary rule costs tens; one that exceeds MaxCost fails with an
	// evaluation error, and the rule does not allow. Expressions whose cost
	// cel-go's static estimate bounds under MaxCost run without the runtime
	// cost tracker for inputs within the size envelope (see bound.go).
	MaxCost = 100_000
	// MaxNameLen bounds rule and credential names.
	MaxNameLen = 128
)

// AnyCredential in a rule's credentials list makes the rule apply to every
// credential.
const AnyCredential = "*"

// Subject is the workload asking for a credential: its SPIFFE ID and the
// selectors of the registration entry it was issued under.
type Subject struct {
	ID        spiffeid.ID
	Selectors []model.Selector
}

// Node is the attested node the workload runs on.
type Node struct {
	ID                string // the agent's SPIFFE ID
	AttestationMethod string
	Selectors         []model.Selector
	Labels            map[string]string
}

// Request is what was asked for. A zero TTL means none was asked for; a
// zero Time makes Decide use the current time.
type Request struct {
	Credential string
	TTL        time.Duration
	Time       time.Time
}

// Input is everything a rule can see. Context holds the request's task
// context as ParseContext returns it (strings, bools, int64, float64, nil,
// []any and map[string]any); other Go values that CEL cannot represent make
// the rules reading them fail, never panic.
type Input struct {
	Subject Subject
	Node    Node
	Context map[string]any
	Request Request
}

// Policy is a compiled policy. It is immutable and safe for concurrent use.
type Policy struct {
	name  string
	rules []*rule
	memos int // the conjuncts that occur more than once, the size of a decision's activation.memo
	// naming holds, for each credential the rules name, the indexes of
	// those rules, ascending; anyRules those of the rules for every
	// credential ("*"). A decision evaluates the union, in file order.
	naming   map[string][]int
	anyRules []int
}

// rule is one compiled rule.
type rule struct {
	name        string
	credentials []string
	any         bool          // credentials holds AnyCredential
	ttl         time.Duration // 0: no cap
	expr        string        // the source of when, as written
	line        int           // the YAML line of the rule
	whole       program       // the expression: decides
	// conjuncts are the operands of the top-level && chain, unparsed and
	// compiled on their own, so that a decision can say which were false.
	conjuncts []program
	// combinable: the conjuncts' static costs sum to at most MaxCost (see
	// evalConjuncts).
	combinable bool
	ssh        *SSH // nil: the rule does not narrow ssh certificates
}

// SSH is a rule's ssh key: how it narrows the ssh certificates it allows.
// A nil list keeps the credential's configured one; an empty, non-nil
// Extensions grants none. An empty ForceCommand forces nothing.
type SSH struct {
	Principals   []string `yaml:"principals" json:"principals,omitempty"`
	Extensions   []string `yaml:"extensions" json:"extensions,omitempty"`
	ForceCommand string   `yaml:"force_command" json:"force_command,omitempty"`
}

// SSHRule is a rule that narrows ssh certificates, for checking the rule
// against the credentials it names.
type SSHRule struct {
	Rule        string
	Line        int // the rule's line in the policy file
	Credentials []string
	SSH         SSH
}

// fileRule is one rule as written in YAML.
type fileRule struct {
	Name        string    `yaml:"name"`
	Credentials []string  `yaml:"credentials"`
	When        yaml.Node `yaml:"when"`
	TTL         string    `yaml:"ttl"`
	SSH         *SSH      `yaml:"ssh"`
}

// file is a policy file.
type file struct {
	Rules []yaml.Node `yaml:"rules"`
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Load reads and compiles the policy file at path (at most MaxFileSize
// bytes). Errors name the file, and for a bad rule its name and line.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse compiles the policy in data; name (usually the file's path) starts
// every error message. Every problem found is reported at once, each naming
// the rule and the line (and for an expression the column) in data.
func Parse(name string, data []byte) (*Policy, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy %s is larger than %d bytes", name, MaxFileSize)
	}
	var f file
	if err := config.Decode(data, &f); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	if len(f.Rules) > MaxRules {
		return nil, fmt.Errorf("policy %s: %d rules: at most %d are allowed", name, len(f.Rules), MaxRules)
	}
	lines := strings.Split(string(data), "\n")
	p := &Policy{name: name}
	var errs []error
	seen := map[string]int{}
	for i := range f.Rules {
		r, err := compileRule(i, &f.Rules[i], lines)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%w", name, err))
			continue
		}
		if prev, dup := seen[r.name]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: rules[%d]: name %q is already used by the rule on line %d: rule names are unique", name, r.line, i, r.name, prev))
			continue
		}
		seen[r.name] = r.line
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.assignMemos()
	p.indexCredentials()
	return p, nil
}

// assignMemos gives a memo slot to every conjunct whose text occurs more
// than once in the policy, one slot per text: the same text type-checks to
// the same program in the one policy environment. A conjunct that occurs
// once is evaluated at most once per decision and needs none.
func (p *Policy) assignMemos() {
	count := map[string]int{}
	for _, r := range p.rules {
		for _, c := range r.conjuncts {
			count[c.text]++
		}
	}
	slots := map[string]int{}
	for _, r := range p.rules {
		for i := range r.conjuncts {
			c := &r.conjuncts[i]
			if count[c.text] < 2 {
				c.memo = -1
				continue
			}
			id, ok := slots[c.text]
			if !ok {
				id = len(slots)
				slots[c.text] = id
			}
			c.memo = id
		}
	}
	p.memos = len(slots)
}

// indexCredentials fills naming and anyRules.
func (p *Policy) indexCredentials() {
	p.naming = map[string][]int{}
	for i, r := range p.rules {
		if r.any {
			p.anyRules = append(p.anyRules, i)
		}
		for _, c := range r.credentials {
			p.naming[c] = append(p.naming[c], i)
		}
	}
}

// compileRule decodes and compiles rule i. Its error starts with the line
// ("12: ..." or "12:7: ...") so that Parse can put the file name before it.
func compileRule(i int, n *yaml.Node, lines []string) (*rule, error) {
	path := fmt.Sprintf("rules[%d]", i)
	var fr fileRule
	if err := config.DecodeNode(path, n, &fr); err != nil {
		return nil, fmt.Errorf("%d: %w", n.Line, err)
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%d: %s: a rule is a mapping with keys name, credentials, when, ttl and ssh", n.Line, path)
	}
	r := &rule{name: fr.Name, line: n.Line}
	var problems []string
	switch {
	case fr.Name == "":
		problems = append(problems, path+".name is missing: every rule has a unique name")
	case len(fr.Name) > MaxNameLen || !namePattern.MatchString(fr.Name):
		problems = append(problems, fmt.Sprintf("%s.name %q is not a valid rule name: use at most %d letters, digits, '.', '_' or '-', starting with a letter or digit", path, truncate(fr.Name), MaxNameLen))
	default:
		path = fmt.Sprintf("rule %q", fr.Name)
	}
	if len(fr.Credentials) == 0 {
		problems = append(problems, path+": credentials is missing: list the credentials the rule is about, or [\"*\"] for every credential")
	}
	for _, c := range fr.Credentials {
		switch {
		case c == AnyCredential:
			r.any = true
		case c == "" || len(c) > MaxNameLen || strings.ContainsFunc(c, isSpaceOrControl):
			problems = append(problems, fmt.Sprintf("%s: credentials: %q is not a credential name: use the name of a broker credential (at most %d bytes, no spaces) or \"*\"", path, truncate(c), MaxNameLen))
		case slices.Contains(r.credentials, c):
			problems = append(problems, fmt.Sprintf("%s: credentials: %q is listed twice", path, c))
		default:
			r.credentials = append(r.credentials, c)
		}
	}
	if fr.TTL != "" {
		ttl, err := config.ParseDuration(fr.TTL)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: ttl: %q is not a duration: %v", path, truncate(fr.TTL), err))
		case ttl == 0:
			problems = append(problems, path+": ttl: 0 would allow nothing: give a positive duration such as 10m, or leave ttl out for no cap")
		default:
			r.ttl = ttl
		}
	}
	if fr.SSH != nil {
		problems = append(problems, checkSSH(path, r, fr.SSH)...)
		r.ssh = fr.SSH
	}
	if fr.When.Kind != yaml.ScalarNode || fr.When.Tag == "!!null" || strings.TrimSpace(fr.When.Value) == "" {
		problems = append(problems, path+": when is missing: give a CEL expression of type bool, e.g. subject.id == \"spiffe://example.org/etl\"")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%d: %s", n.Line, strings.Join(problems, "; "))
	}
	r.expr = fr.When.Value
	if err := r.compile(); err != nil {
		var ce *compileError
		if errors.As(err, &ce) {
			line, col := ce.position(&fr.When, lines)
			return nil, fmt.Errorf("%d:%d: %s: when: %s", line, col, path, ce.msg)
		}
		return nil, fmt.Errorf("%d: %s: when: %w", fr.When.Line, path, err)
	}
	return r, nil
}

// checkSSH returns the problems of a rule's ssh key that the policy alone
// can see; whether it narrows the credentials' configuration is checked
// by the server (Holder.SetCheck).
func checkSSH(path string, r *rule, o *SSH) []string {
	var problems []string
	if r.any {
		problems = append(problems, path+": ssh: the ssh key narrows ssh credentials: name them in credentials instead of \"*\"")
	}
	if o.Principals == nil && o.Extensions == nil && o.ForceCommand == "" {
		problems = append(problems, path+": ssh: empty: give principals, extensions or force_command, or leave ssh out")
	}
	if o.Principals != nil && len(o.Principals) == 0 {
		problems = append(problems, path+": ssh.principals: empty would allow no login: name at least one of the credential's principals, or leave principals out")
	}
	for i, p := range o.Principals {
		if p == "" || len(p) > 256 || strings.ContainsFunc(p, func(c rune) bool { return isSpaceOrControl(c) || c == ',' }) {
			problems = append(problems, fmt.Sprintf("%s: ssh.principals[%d]: %q is not a principal (non-empty, no spaces, commas or control characters)", path, i, truncate(p)))
		}
	}
	for i, e := range o.Extensions {
		if e == "" || strings.ContainsFunc(e, isSpaceOrControl) {
			problems = append(problems, fmt.Sprintf("%s: ssh.extensions[%d]: %q is not an extension name, e.g. permit-pty", path, i, truncate(e)))
		}
	}
	if strings.ContainsAny(o.ForceCommand, "\x00\n\r") {
		problems = append(problems, path+": ssh.force_command: contains a NUL or a line break: give one command line")
	}
	return problems
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// truncate shortens a value quoted in an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}

// Name returns the name the policy was parsed under.
func (p *Policy) Name() string { return p.name }

// Credentials returns the credential names the rules name, sorted, without
// AnyCredential; the broker checks them against its configured credentials.
func (p *Policy) Credentials() []string {
	var out []string
	for _, r := range p.rules {
		for _, c := range r.credentials {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RuleNames returns the names of the rules in file order.
func (p *Policy) RuleNames() []string {
	out := make([]string, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.name
	}
	return out
}

// SSHRules returns the rules with an ssh key, in file order.
func (p *Policy) SSHRules() []SSHRule {
	var out []SSHRule
	for _, r := range p.rules {
		if r.ssh != nil {
			out = append(out, SSHRule{Rule: r.name, Line: r.line, Credentials: slices.Clone(r.credentials), SSH: *r.ssh})
		}
	}
	return out
}

// applies reports whether the rule is about credential.
func (r *rule) applies(credential string) bool {
	return r.any || slices.Contains(r.credentials, credential)
}

// Decide evaluates the policy for in. It never fails: a rule that cannot be
// evaluated (a missing key, the cost limit, ctx cancelled) does not allow and
// its error is in the decision. A nil policy denies everything.
func (p *Policy) Decide(ctx context.Context, in Input) Decision {
	return p.decide(ctx, &in, true)
}

// Evaluate decides as Decide does — the same Allowed, Rule, TTL, and for
// every rule the same Applies, Result and Error — without the clauses:
// every RuleResult.Clauses is nil, and Inputs holds only what the
// evaluation read, && and || short-circuiting (the inputs the decision
// rests on). It is the request path of the broker, whose audit record needs
// the deciding rule and the inputs; Decide, for `signet policy test`,
// explains. A nil policy denies everything.
func (p *Policy) Evaluate(ctx context.Context, in Input) Decision {
	return p.decide(ctx, &in, false)
}

func (p *Policy) decide(ctx context.Context, in *Input, explain bool) Decision {
	d := Decision{Credential: in.Request.Credential, Subject: in.Subject.ID.String()}
	if p == nil {
		return d
	}
	d.Policy = p.name
	act := newActivation(in)
	act.memos = p.memos
	fast := inEnvelope(in)
	d.Rules = make([]RuleResult, len(p.rules))
	// The rules about the credential, ascending: those naming it and
	// those for every credential, merged as the loop goes.
	named, star := p.naming[in.Request.Credential], p.anyRules
	decided := false
	for i, r := range p.rules {
		rr := &d.Rules[i] // filled in place: no copy of the struct
		rr.Name = r.name
		applies := false
		if len(named) > 0 && named[0] == i {
			applies, named = true, named[1:]
		}
		if len(star) > 0 && star[0] == i {
			applies, star = true, star[1:]
		}
		switch {
		case decided:
			rr.Applies = applies
			rr.Result = ResultNotEvaluated
		case !applies:
			rr.Result = ResultNotApplicable
		default:
			rr.Applies = true
			rr.Result, rr.Error, rr.Clauses = r.eval(ctx, act, fast, explain)
			if rr.Result == ResultAllow {
				decided = true
				d.Allowed = true
				d.Rule = r.name
				d.TTL = r.ttl
				d.SSH = r.ssh
			}
		}
	}
	d.Inputs = act.read()
	return d
}
