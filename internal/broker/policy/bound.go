package policy

import (
	"math"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
)

// Programs whose cost is bounded statically run without cel-go's runtime
// cost tracker, which costs about as much as the evaluation itself.
//
// At load, a rule's expression (and each operand of its && chain) is given
// cel-go's static cost estimate, under the assumption that every input value
// — each string, list and map the rule can reach from a variable, at any
// depth — has at most envelopeSize elements or bytes. When the estimate's
// upper bound is at most MaxCost, the rule also gets a program without the
// tracker. At decision time, inEnvelope checks that the Input meets the
// assumption; only then is that program used, so its cost provably stays
// under MaxCost and the tracked program would have returned the same
// result. Any other input, or any expression whose estimate is larger (or
// unknown, such as nested comprehensions or values deep in context), runs
// with the tracker and its limit.

// envelopeSize bounds every input value's size (strings in bytes, lists and
// maps in entries) for the static estimate. A context from ParseContext is
// never larger than MaxContextSize, so it always fits.
const envelopeSize = MaxContextSize

// sizeBound is the estimator behind the static bound: every node that is a
// value reachable from an input variable has a size of at most
// envelopeSize, and so have its keys and elements. Other nodes (literals,
// computed values) are sized by cel-go.
type sizeBound struct{}

func (sizeBound) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if n.Path() == nil {
		return nil
	}
	elem := cost.RangedSizeEstimate(0, envelopeSize)
	return &cost.SizeEstimate{Min: 0, Max: envelopeSize, Key: &elem, Elem: &elem}
}

func (sizeBound) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// staticCost returns the most ast costs for an input within the envelope:
// cel-go's static estimate with sizeBound, math.MaxUint64 when unknown.
// Only an expression whose static cost is at most MaxCost runs without the
// tracker.
func staticCost(env *cel.Env, ast *cel.Ast) uint64 {
	est, err := env.EstimateCost(ast, sizeBound{})
	if err != nil {
		return math.MaxUint64
	}
	return est.Max
}

// inEnvelope reports whether every value of in has at most envelopeSize
// bytes or entries, so that the statically bounded programs may run
// without the cost tracker. Context values of types other than those
// ParseContext produces, or nested deeper than MaxContextDepth, are
// outside the envelope.
func inEnvelope(in *Input) bool {
	if !fits(len(in.Subject.ID.String())) || !fits(len(in.Subject.Selectors)) ||
		!fits(len(in.Node.ID)) || !fits(len(in.Node.AttestationMethod)) ||
		!fits(len(in.Node.Selectors)) || !fits(len(in.Node.Labels)) ||
		!fits(len(in.Request.Credential)) || !fits(len(in.Context)) {
		return false
	}
	for _, s := range in.Subject.Selectors {
		if !fits(len(s.Type) + 1 + len(s.Value)) {
			return false
		}
	}
	for _, s := range in.Node.Selectors {
		if !fits(len(s.Type) + 1 + len(s.Value)) {
			return false
		}
	}
	for k, v := range in.Node.Labels {
		if !fits(len(k)) || !fits(len(v)) {
			return false
		}
	}
	return valueFits(in.Context, 1)
}

func fits(n int) bool { return n <= envelopeSize }

// valueFits reports whether v, at depth, and everything in it is within
// the envelope.
func valueFits(v any, depth int) bool {
	switch v := v.(type) {
	case nil, bool, int64, float64:
		return true
	case string:
		return fits(len(v))
	case []any:
		if depth > MaxContextDepth || !fits(len(v)) {
			return false
		}
		for _, e := range v {
			if !valueFits(e, depth+1) {
				return false
			}
		}
		return true
	case map[string]any:
		if depth > MaxContextDepth || !fits(len(v)) {
			return false
		}
		for k, e := range v {
			if !fits(len(k)) || !valueFits(e, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}
