package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"

	"github.com/signet-id/signet/internal/broker/policy"
	"github.com/signet-id/signet/internal/config"
	"github.com/signet-id/signet/internal/model"
)

// Exit codes of `signet policy test`.
const (
	exitPolicyAllow    = 0
	exitPolicyDeny     = 1
	exitPolicyBadInput = 2
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with the broker's credential policy",
	}
	cmd.AddCommand(newPolicyTestCmd())
	return cmd
}

const policyTestLong = `Evaluate the broker's policy offline, with the evaluator the server uses,
for one request: prints allow or deny, the rule that decided, and for every
rule about the credential the sub-expressions that were false or failed.

The policy is --policy FILE, or the broker.policy_file of the server
configuration given with --config. Exit status: 0 allow, 1 deny, 2 bad input
(a flag, the context, or a policy that does not compile).`

const policyTestExample = `  signet policy test --policy policy.yaml --spiffe-id spiffe://example.org/etl \
      --credential orders-db --context ticket=CHG-1 --node-selector aws_iid:tag:env:prod
  signet policy test --config server.yaml --spiffe-id spiffe://example.org/etl \
      --credential orders-db --context-json '{"ticket":"CHG-1","change":{"risk":"low"}}' --json`

// policyTestFlags are the flags of `signet policy test`.
type policyTestFlags struct {
	policyFile, configFile    string
	spiffeID, credential      string
	contexts                  []string
	contextJSON               string
	selectors, nodeSelectors  []string
	nodeLabels                []string
	nodeID, attestationMethod string
	ttl                       time.Duration
	at                        string
	out                       output
}

func newPolicyTestCmd() *cobra.Command {
	var f policyTestFlags
	cmd := &cobra.Command{
		Use:     "test",
		Short:   "Explain what the policy decides for one credential request",
		Long:    policyTestLong,
		Example: policyTestExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{code: exitPolicyBadInput, err: fmt.Errorf("unknown command %q for %q: it takes flags only (see: %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, in, err := f.build()
			if err != nil {
				return &exitError{code: exitPolicyBadInput, err: err}
			}
			d := p.Decide(cmd.Context(), in)
			out := cmd.OutOrStdout()
			if f.out.json {
				err = writeDecisionJSON(out, d)
			} else {
				_, err = io.WriteString(out, d.Explain())
			}
			if err != nil {
				return &exitError{code: exitPolicyBadInput, err: err}
			}
			if !d.Allowed {
				return &exitError{code: exitPolicyDeny}
			}
			return nil
		},
	}
	// A flag error is bad input too.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitPolicyBadInput, err: fmt.Errorf("%w (see: %s --help)", err, c.CommandPath())}
	})
	fl := cmd.Flags()
	fl.StringVar(&f.policyFile, "policy", "", "policy file to evaluate")
	fl.StringVar(&f.configFile, "config", "", "server configuration file whose broker.policy_file to evaluate (instead of --policy)")
	fl.StringVar(&f.spiffeID, "spiffe-id", "", "SPIFFE ID of the calling workload (required)")
	fl.StringVar(&f.credential, "credential", "", "credential requested (required)")
	fl.StringArrayVar(&f.contexts, "context", nil, "task context entry KEY=VALUE, a string (repeatable)")
	fl.StringVar(&f.contextJSON, "context-json", "", "task context as a JSON object, as the request_context parameter carries it")
	fl.StringArrayVar(&f.selectors, "selector", nil, "selector type:value of the workload's entry (repeatable)")
	fl.StringArrayVar(&f.nodeSelectors, "node-selector", nil, "selector type:value of the workload's node (repeatable)")
	fl.StringArrayVar(&f.nodeLabels, "node-label", nil, "label KEY=VALUE of the workload's node (repeatable)")
	fl.StringVar(&f.nodeID, "node-id", "", "SPIFFE ID of the workload's node (agent)")
	fl.StringVar(&f.attestationMethod, "attestation-method", "", "node attestation method of the workload's node, e.g. aws_iid")
	fl.Var(config.DurationFlag(&f.ttl), "ttl", "TTL requested, e.g. 5m (default: none)")
	fl.StringVar(&f.at, "time", "", "time of the request, RFC 3339 (default: now)")
	f.out.addFlagsFor(cmd, "the decision as JSON")
	return cmd
}

// build loads the policy and assembles the input from the flags. Every
// error names the flag and what it accepts.
func (f *policyTestFlags) build() (*policy.Policy, policy.Input, error) {
	var in policy.Input
	path, err := f.policyPath()
	if err != nil {
		return nil, in, err
	}
	p, err := policy.Load(path)
	if err != nil {
		return nil, in, err
	}
	if f.spiffeID == "" {
		return nil, in, errors.New("--spiffe-id is required: the SPIFFE ID of the calling workload, e.g. spiffe://example.org/etl")
	}
	id, err := spiffeid.FromString(f.spiffeID)
	if err != nil {
		return nil, in, fmt.Errorf("--spiffe-id %q is not a SPIFFE ID (%v): want spiffe://TRUST-DOMAIN/PATH", f.spiffeID, err)
	}
	if f.credential == "" {
		return nil, in, errors.New("--credential is required: the name of the credential requested")
	}
	in.Subject.ID = id
	if in.Subject.Selectors, err = parseSelectors("--selector", f.selectors); err != nil {
		return nil, in, err
	}
	if in.Node.Selectors, err = parseSelectors("--node-selector", f.nodeSelectors); err != nil {
		return nil, in, err
	}
	if f.nodeID != "" {
		if _, err := spiffeid.FromString(f.nodeID); err != nil {
			return nil, in, fmt.Errorf("--node-id %q is not a SPIFFE ID (%v): want spiffe://TRUST-DOMAIN/PATH", f.nodeID, err)
		}
	}
	in.Node.ID = f.nodeID
	in.Node.AttestationMethod = f.attestationMethod
	if in.Node.Labels, err = parsePairs("--node-label", f.nodeLabels); err != nil {
		return nil, in, err
	}
	if in.Context, err = f.context(); err != nil {
		return nil, in, err
	}
	in.Request = policy.Request{Credential: f.credential, TTL: f.ttl, Time: time.Now()}
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return nil, in, fmt.Errorf("--time %q is not an RFC 3339 time: want e.g. 2026-12-01T10:30:00Z", f.at)
		}
		in.Request.Time = t
	}
	return p, in, nil
}

// policyPath is --policy, or broker.policy_file of --config.
func (f *policyTestFlags) policyPath() (string, error) {
	switch {
	case f.policyFile != "" && f.configFile != "":
		return "", errors.New("flags --policy and --config both name a policy: give one")
	case f.policyFile != "":
		return f.policyFile, nil
	case f.configFile != "":
		return brokerPolicyFile(f.configFile)
	}
	return "", errors.New("no policy: give --policy FILE, or --config server.yaml to use its broker.policy_file")
}

// brokerPolicyFile reads just broker.policy_file from a server
// configuration file, ignoring every other key.
func brokerPolicyFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--config: %w", err)
	}
	var c struct {
		Broker struct {
			PolicyFile string `yaml:"policy_file"`
		} `yaml:"broker"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return "", fmt.Errorf("--config %s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if c.Broker.PolicyFile == "" {
		return "", fmt.Errorf("--config %s has no broker.policy_file: set it, or give --policy FILE", path)
	}
	return c.Broker.PolicyFile, nil
}

// context merges --context-json and --context into one context, checked by
// the parser the token endpoint uses.
func (f *policyTestFlags) context() (map[string]any, error) {
	ctx, err := policy.ParseContext([]byte(f.contextJSON))
	if err != nil {
		return nil, fmt.Errorf("--context-json: %w", err)
	}
	pairs, err := parsePairs("--context", f.contexts)
	if err != nil {
		return nil, err
	}
	for k, v := range pairs {
		if _, dup := ctx[k]; dup {
			return nil, fmt.Errorf("--context %s=…: key %q is also in --context-json: give each key once", k, k)
		}
		ctx[k] = v
	}
	if len(pairs) == 0 {
		return ctx, nil
	}
	// Check the merged context against the request_context limits.
	raw, err := json.Marshal(ctx)
	if err != nil {
		return nil, fmt.Errorf("--context: %w", err)
	}
	if ctx, err = policy.ParseContext(raw); err != nil {
		return nil, fmt.Errorf("--context: %w", err)
	}
	return ctx, nil
}

func parseSelectors(flag string, values []string) ([]model.Selector, error) {
	var out []model.Selector
	for _, v := range values {
		typ, val, ok := strings.Cut(v, ":")
		if !ok || typ == "" || val == "" {
			return nil, fmt.Errorf("%s %q is not a selector: want type:value, e.g. aws_iid:tag:env:prod", flag, v)
		}
		out = append(out, model.Selector{Type: typ, Value: val})
	}
	return out, nil
}

// parsePairs parses repeated KEY=VALUE flags; a key may appear once.
func parsePairs(flag string, values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q is not KEY=VALUE", flag, v)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: key %q is given twice", flag, k)
		}
		out[k] = val
	}
	return out, nil
}

// writeDecisionJSON writes d indented, without HTML escapes ("&&" stays
// readable).
func writeDecisionJSON(w io.Writer, d policy.Decision) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
