package policy

import (
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// A guard is a conjunct that compares an input with a string literal, the
// shape most rules are made of. Its result is read off the input in Go,
// without running a CEL program:
//
//	subject.id == "spiffe://…"       a string variable (any of them)
//	subject.segments[0] == "ops"      an element of subject.segments
//	node.labels.zone == "eu-1"        a label, a key path in context
//	context.change.service == "svc"
//	"aws_iid:tag:env:prod" in node.selectors   membership in a list(string)
//
// A guard decides only where CEL's result is certain: the compared value is
// a string (an index in range, every key of the path present, a context
// value of type string); anything else — a missing key, an index out of
// range, a context value of another type — is left to the program, which
// reports the error. A guard reads its variable through the activation, as
// the program would, so the decision's Inputs are the same.
//
// Only the string-variable guard decides "false" for any input (as it
// always has); the others, and every "true", are used only for an input
// within the static cost envelope (see bound.go), where the program could
// not have reached the cost limit either.
type guard struct {
	kind guardKind
	idx  int      // the variable, an index of activation.vals
	lit  string   // the literal
	n    int      // guardIndex: the index
	path []string // guardSelect: the keys under the variable
}

type guardKind uint8

const (
	guardEquals guardKind = iota // a string variable == lit
	guardIndex                   // subject.segments[n] == lit
	guardSelect                  // node.labels.k == lit, context.a.b == lit
	guardIn                      // lit in a list(string) variable
)

// newGuard returns the guard that conjunct e (of a checked expression) is,
// or nil.
func newGuard(e celast.Expr) *guard {
	if e.Kind() != celast.CallKind {
		return nil
	}
	c := e.AsCall()
	if c.IsMemberFunction() || len(c.Args()) != 2 {
		return nil
	}
	a, b := c.Args()[0], c.Args()[1]
	switch c.FunctionName() {
	case operators.Equals:
		if _, ok := stringLiteral(a); ok {
			a, b = b, a
		}
		lit, ok := stringLiteral(b)
		if !ok {
			return nil
		}
		return operandGuard(a, lit)
	case operators.In:
		lit, ok := stringLiteral(a)
		if !ok || b.Kind() != celast.IdentKind {
			return nil
		}
		switch i := varIndex(b.AsIdent()); i {
		case idxSegments, idxSubjectSelectors, idxNodeSelectors:
			return &guard{kind: guardIn, idx: i, lit: lit}
		}
	}
	return nil
}

// operandGuard is the guard of operand == lit, or nil.
func operandGuard(operand celast.Expr, lit string) *guard {
	switch operand.Kind() {
	case celast.IdentKind:
		switch i := varIndex(operand.AsIdent()); i {
		case idxSubjectID, idxTrustDomain, idxPath, idxNodeID, idxNodeMethod, idxCredential:
			return &guard{kind: guardEquals, idx: i, lit: lit}
		}
	case celast.CallKind: // subject.segments[n]
		c := operand.AsCall()
		if c.FunctionName() != operators.Index || c.IsMemberFunction() || len(c.Args()) != 2 {
			return nil
		}
		l, n := c.Args()[0], c.Args()[1]
		if l.Kind() != celast.IdentKind || varIndex(l.AsIdent()) != idxSegments || n.Kind() != celast.LiteralKind {
			return nil
		}
		if i, ok := n.AsLiteral().(types.Int); ok && i >= 0 && i <= 1<<20 {
			return &guard{kind: guardIndex, idx: idxSegments, lit: lit, n: int(i)}
		}
	case celast.SelectKind: // node.labels.k, context.a.b
		var path []string
		e := operand
		for e.Kind() == celast.SelectKind {
			s := e.AsSelect()
			if s.IsTestOnly() {
				return nil
			}
			path = append(path, s.FieldName())
			e = s.Operand()
		}
		if e.Kind() != celast.IdentKind {
			return nil
		}
		i := varIndex(e.AsIdent())
		if i != idxNodeLabels && i != idxContext || i == idxNodeLabels && len(path) != 1 {
			return nil
		}
		for l, r := 0, len(path)-1; l < r; l, r = l+1, r-1 {
			path[l], path[r] = path[r], path[l]
		}
		return &guard{kind: guardSelect, idx: i, lit: lit, path: path}
	}
	return nil
}

func stringLiteral(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// decide returns the conjunct's result (ResultAllow or ResultFalse) and
// true when the guard decides it for the decision's input; false when the
// program must run. fast: the input is within the envelope. A nil guard
// decides nothing.
func (g *guard) decide(a *activation, fast bool) (Result, bool) {
	if g == nil {
		return "", false
	}
	if g.kind == guardEquals {
		switch {
		case a.resolve(g.idx) != types.String(g.lit):
			return ResultFalse, true
		case fast:
			return ResultAllow, true
		}
		return "", false
	}
	if !fast {
		return "", false
	}
	a.resolve(g.idx) // read, as the program would
	var eq bool
	switch g.kind {
	case guardIndex:
		segments := a.segments()
		if g.n >= len(segments) {
			return "", false // the program fails: index out of range
		}
		eq = segments[g.n] == g.lit
	case guardSelect:
		s, ok := a.selectString(g.idx, g.path)
		if !ok {
			return "", false
		}
		eq = s == g.lit
	case guardIn:
		eq = a.contains(g.idx, g.lit)
	}
	if eq {
		return ResultAllow, true
	}
	return ResultFalse, true
}

// isFalse reports whether the guard decides its conjunct false, and so
// the rule: false && x is false in CEL whatever x is, even an error.
func (g *guard) isFalse(a *activation, fast bool) bool {
	res, ok := g.decide(a, fast)
	return ok && res == ResultFalse
}
