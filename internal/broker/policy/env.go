package policy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/signet-id/signet/internal/model"
	"gopkg.in/yaml.v3"
)

// The variables rules see. Each is declared under its full dotted name, so
// that the checker refuses a misspelt field ("subject.idd") at load.
const (
	varSubjectID          = "subject.id"
	varSubjectTrustDomain = "subject.trust_domain"
	varSubjectPath        = "subject.path"
	varSubjectSegments    = "subject.segments"
	varSubjectSelectors   = "subject.selectors"
	varNodeID             = "node.id"
	varNodeMethod         = "node.attestation_method"
	varNodeSelectors      = "node.selectors"
	varNodeLabels         = "node.labels"
	varContext            = "context"
	varRequestCredential  = "request.credential"
	varRequestTTL         = "request.ttl"
	varRequestTime        = "request.time"
)

// subjectVars are the variables of a subject-only rule (the gateway's).
func subjectVars() []cel.EnvOption {
	return []cel.EnvOption{
		cel.Variable(varSubjectID, cel.StringType),
		cel.Variable(varSubjectTrustDomain, cel.StringType),
		cel.Variable(varSubjectPath, cel.StringType),
		cel.Variable(varSubjectSegments, cel.ListType(cel.StringType)),
	}
}

// limits are the parser and checker limits of every environment.
func limits() []cel.EnvOption {
	return []cel.EnvOption{
		cel.ParserExpressionSizeLimit(MaxExpressionSize),
		cel.ParserRecursionLimit(100),
		cel.ExpressionNestingDepthLimit(100),
		cel.EnableMacroCallTracking(),
		cel.DefaultUTCTimeZone(true),
	}
}

var (
	envOnce sync.Once
	envVal  *cel.Env
	envErr  error
)

// policyEnv returns the environment of broker rules.
func policyEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		opts := append(subjectVars(),
			cel.Variable(varSubjectSelectors, cel.ListType(cel.StringType)),
			cel.Variable(varNodeID, cel.StringType),
			cel.Variable(varNodeMethod, cel.StringType),
			cel.Variable(varNodeSelectors, cel.ListType(cel.StringType)),
			cel.Variable(varNodeLabels, cel.MapType(cel.StringType, cel.StringType)),
			cel.Variable(varContext, cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable(varRequestCredential, cel.StringType),
			cel.Variable(varRequestTTL, cel.DurationType),
			cel.Variable(varRequestTime, cel.TimestampType),
		)
		envVal, envErr = cel.NewEnv(append(opts, limits()...)...)
	})
	return envVal, envErr
}

// compileError is a CEL compile error with its position in the expression.
type compileError struct {
	line, col int // 1-based line, 0-based column (code points) in the expression
	msg       string
}

func (e *compileError) Error() string { return e.msg }

// compileExpr parses and type-checks expr in env and requires a bool
// result.
func compileExpr(env *cel.Env, expr string) (*cel.Ast, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		errs := iss.Errors()
		if len(errs) == 0 {
			return nil, iss.Err()
		}
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Message)
		}
		first := errs[0]
		return nil, &compileError{line: first.Location.Line(), col: first.Location.Column(), msg: strings.Join(msgs, "; ")}
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, &compileError{line: 1, col: 0, msg: fmt.Sprintf("the expression is of type %s, not bool (compare it: x == true, x != \"\")", ast.OutputType())}
	}
	return ast, nil
}

// programOptions bound every evaluation: the cost limit, and a check of
// ctx's cancellation inside comprehensions.
func programOptions(extra ...cel.EvalOption) []cel.ProgramOption {
	return append(untrackedOptions(extra...), cel.CostLimit(MaxCost))
}

// untrackedOptions are programOptions without the cost limit, for
// programs whose cost is bounded statically.
func untrackedOptions(extra ...cel.EvalOption) []cel.ProgramOption {
	return []cel.ProgramOption{
		cel.InterruptCheckFrequency(100),
		cel.EvalOptions(extra...),
	}
}

// compile type-checks the rule and builds its programs: one for the whole
// expression, which decides, and one per conjunct, which explain.
func (r *rule) compile() error {
	env, err := policyEnv()
	if err != nil {
		return err
	}
	ast, err := compileExpr(env, r.expr)
	if err != nil {
		return err
	}
	if r.whole, err = newProgram(env, ast, strings.TrimSpace(r.expr)); err != nil {
		return err
	}
	native := ast.NativeRep()
	parts := conjuncts(native.Expr())
	r.conjuncts = make([]program, 0, len(parts))
	for _, e := range parts {
		c, err := compileConjunct(env, e, native.SourceInfo())
		if err != nil {
			// Unparsing is exact for every expression the parser makes;
			// should one not round-trip, the rule is explained whole.
			r.conjuncts = nil
			break
		}
		c.guard = newGuard(e)
		r.conjuncts = append(r.conjuncts, c)
	}
	if r.conjuncts == nil {
		r.conjuncts = []program{r.whole}
		if len(parts) == 1 {
			r.conjuncts[0].guard = newGuard(parts[0])
		}
	}
	// When the operands together are bounded by MaxCost, the whole
	// expression cannot reach the limit, and its result is the operands'
	// combined as && does: an explained decision need not evaluate it.
	var sum uint64
	for _, c := range r.conjuncts {
		if c.fast == nil {
			sum = math.MaxUint64
			break
		}
		sum += c.maxCost
	}
	r.combinable = len(r.conjuncts) > 1 && sum <= MaxCost
	return nil
}

// newProgram builds the programs of one checked expression: always one
// with the cost limit, and one without the cost tracker when the
// expression's cost is bounded statically (see staticallyBounded).
func newProgram(env *cel.Env, ast *cel.Ast, text string) (program, error) {
	tracked, err := env.Program(ast, programOptions(cel.OptOptimize)...)
	if err != nil {
		return program{}, fmt.Errorf("build program: %w", err)
	}
	p := program{text: text, memo: -1, tracked: tracked, loops: hasComprehension(ast.NativeRep().Expr()), maxCost: staticCost(env, ast)}
	if p.maxCost <= MaxCost {
		if p.fast, err = env.Program(ast, untrackedOptions(cel.OptOptimize)...); err != nil {
			return program{}, fmt.Errorf("build program: %w", err)
		}
	}
	return p, nil
}

// compileConjunct builds the program of one operand e of a rule's && chain
// from its unparsed text.
func compileConjunct(env *cel.Env, e celast.Expr, info *celast.SourceInfo) (program, error) {
	text, err := cel.ExprToString(e, info)
	if err != nil {
		return program{}, err
	}
	ast, err := compileExpr(env, text)
	if err != nil {
		return program{}, err
	}
	return newProgram(env, ast, text)
}

// hasComprehension reports whether e holds a comprehension (all, exists,
// map, filter, ...): only those loop, so only they need ctx's cancellation
// checked while they run.
func hasComprehension(e celast.Expr) bool {
	found := false
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.ComprehensionKind {
			found = true
		}
	}))
	return found
}

// conjuncts returns the operands of e's top-level && chain, left to right:
// for a && (b && c) they are a, b and c; for any other expression (||, !,
// a comparison, a macro) e itself. Only && is split: the operand of ! or a
// side of || is not a reason on its own, so they stay whole.
func conjuncts(e celast.Expr) []celast.Expr {
	if e.Kind() == celast.CallKind {
		c := e.AsCall()
		if c.FunctionName() == operators.LogicalAnd && !c.IsMemberFunction() {
			var out []celast.Expr
			for _, a := range c.Args() {
				out = append(out, conjuncts(a)...)
			}
			return out
		}
	}
	return []celast.Expr{e}
}

// program is one compiled expression: a rule's whole expression, or one
// operand of its && chain.
type program struct {
	text    string      // the expression, as CEL
	tracked cel.Program // with the cost limit
	fast    cel.Program // without the cost tracker; nil unless the cost is bounded statically
	loops   bool        // holds a comprehension
	maxCost uint64      // the static cost for inputs within the envelope (staticCost)
	guard   *guard      // for a conjunct that compares an input with a literal
	// memo is the conjunct's slot in activation.memo: conjuncts of the
	// same text (in any rule of the policy) share one, so a decision
	// evaluates each distinct conjunct at most once. -1: not memoized.
	memo int
}

// memoEntry is one conjunct's result in a decision.
type memoEntry struct {
	done bool
	res  Result
	msg  string
}

// evalMemo is c.eval, decided by the conjunct's guard when it can (see
// guard.decide), and otherwise remembered for the decision in act's memo
// slots: a conjunct is a pure function of the decision's input (the
// activation converts each input once, request.time included), so a second
// rule with the same conjunct reuses its result. The slots are allocated
// on the first use.
func (c *program) evalMemo(ctx context.Context, act *activation, fast bool) (Result, string) {
	if res, ok := c.guard.decide(act, fast); ok {
		return res, ""
	}
	if c.memo < 0 || c.memo >= act.memos {
		return c.eval(ctx, act, fast)
	}
	if act.memo == nil {
		act.memo = make([]memoEntry, act.memos)
	}
	e := &act.memo[c.memo]
	if !e.done {
		e.res, e.msg = c.eval(ctx, act, fast)
		e.done = true
	}
	return e.res, e.msg
}

// eval evaluates the program: ResultAllow when true, ResultFalse, or
// ResultError with the reason. fast (the input is within the envelope, see
// inEnvelope) lets a statically bounded program run without the tracker.
func (p *program) eval(ctx context.Context, act *activation, fast bool) (Result, string) {
	if err := ctx.Err(); err != nil {
		return ResultError, cleanEvalError(err)
	}
	prg := p.tracked
	if fast && p.fast != nil {
		prg = p.fast
	}
	var out ref.Val
	var err error
	if p.loops {
		out, _, err = prg.ContextEval(ctx, act)
	} else {
		// Without a loop evaluation is short; checking ctx before it is
		// enough, and spares ContextEval's per-call child context.
		out, _, err = prg.Eval(act)
	}
	switch {
	case err != nil:
		return ResultError, cleanEvalError(err)
	case out == types.True:
		return ResultAllow, ""
	case out == types.False:
		return ResultFalse, ""
	}
	return ResultError, "not a bool: " + out.Type().TypeName() // not reachable for a bool-typed expression
}

// eval decides the rule with its whole expression (&& and || short-circuit
// as in CEL: false when an operand is false, else an error when one failed,
// else true). With explain, a rule that did not allow also gets its
// clauses: each conjunct that was false or failed, evaluated on its own.
//
// The conjuncts' guards (see guard.go) are checked first: when one is
// false so is the rule, as in CEL, where false && x is false whatever x is,
// even an error.
func (r *rule) eval(ctx context.Context, act *activation, fast, explain bool) (Result, string, []Clause) {
	if err := ctx.Err(); err != nil {
		return ResultError, cleanEvalError(err), nil
	}
	guarded := false
	for i := range r.conjuncts {
		if r.conjuncts[i].guard.isFalse(act, fast) {
			guarded = true
			break
		}
	}
	switch {
	case guarded && !explain:
		return ResultFalse, "", nil
	case explain && (guarded || fast && r.combinable):
		return r.evalConjuncts(ctx, act, fast)
	case fast && r.combinable:
		return r.shortConjuncts(ctx, act, fast)
	case len(r.conjuncts) == 1:
		// One conjunct, not false by its guard: true when the guard says so.
		if res, ok := r.conjuncts[0].guard.decide(act, fast); ok {
			return res, "", nil
		}
	}
	res, msg := r.whole.eval(ctx, act, fast)
	if res == ResultAllow || !explain {
		return res, msg, nil
	}
	if len(r.conjuncts) == 1 {
		return res, msg, []Clause{{Expr: r.conjuncts[0].text, Result: res, Error: msg}}
	}
	_, _, clauses := r.evalConjuncts(ctx, act, fast)
	return res, msg, clauses
}

// shortConjuncts decides a combinable rule (see evalConjuncts) from its
// conjuncts as && does, left to right, stopping at the first false one as
// CEL's && stops at a false operand: false when one is false, else the
// first error, else true. The conjuncts' results are shared with the
// other rules of the decision (evalMemo).
func (r *rule) shortConjuncts(ctx context.Context, act *activation, fast bool) (Result, string, []Clause) {
	res, msg := ResultAllow, ""
	for i := range r.conjuncts {
		c := &r.conjuncts[i]
		cres, cmsg := c.evalMemo(ctx, act, fast)
		switch {
		case cres == ResultFalse:
			return ResultFalse, "", nil
		case cres == ResultError && res == ResultAllow:
			res, msg = ResultError, cmsg
		}
	}
	return res, msg, nil
}

// evalConjuncts evaluates every conjunct and combines them as && does:
// false when one is false, else the first error, else true. The clauses
// are the conjuncts that were not true. The combination is the rule's
// result when a conjunct is false, and when the conjuncts' static costs sum
// to at most MaxCost (combinable: the whole expression could not have
// reached the limit either).
func (r *rule) evalConjuncts(ctx context.Context, act *activation, fast bool) (Result, string, []Clause) {
	var clauses []Clause
	res, msg := ResultAllow, ""
	for i := range r.conjuncts {
		c := &r.conjuncts[i]
		cres, cmsg := c.evalMemo(ctx, act, fast)
		switch {
		case cres == ResultAllow:
			continue
		case cres == ResultFalse:
			res, msg = ResultFalse, ""
		case res == ResultAllow: // the first error
			res, msg = ResultError, cmsg
		}
		clauses = append(clauses, Clause{Expr: c.text, Result: cres, Error: cmsg})
	}
	return res, msg, clauses
}

// cleanEvalError turns an evaluation error into operator text.
func cleanEvalError(err error) string {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "evaluation stopped: " + err.Error()
	}
	msg := err.Error()
	if strings.Contains(msg, "actual cost limit exceeded") {
		return fmt.Sprintf("evaluation cost limit exceeded (at most %d per rule)", MaxCost)
	}
	if strings.Contains(msg, "operation interrupted") {
		return "evaluation stopped: the request was cancelled"
	}
	return truncate(msg)
}

// activation resolves the rule variables from one Input. It is built once
// per decision, shared by every rule evaluated for it, and converts each
// input to a CEL value the first time a rule reads it. It is not safe for
// concurrent use; a decision evaluates its rules one after the other.
type activation struct {
	in    *Input
	vals  [numVars]ref.Val
	memo  []memoEntry // the conjuncts' results, by program.memo; nil until the first
	memos int         // the number of memo slots (Policy.memos); 0: none kept
	// The raw forms of the list inputs, made once, for the CEL values and
	// the guards: subject.segments, and the selectors as "type:value"
	// (subject's, node's) with their sets for long lists.
	segs    []string
	segsOK  bool
	sels    [2][]string
	selsOK  [2]bool
	selSets [2]*stringSet
}

// Indexes of the variables in activation.vals.
const (
	idxSubjectID = iota
	idxTrustDomain
	idxPath
	idxSegments
	idxSubjectSelectors
	idxNodeID
	idxNodeMethod
	idxNodeSelectors
	idxNodeLabels
	idxContext
	idxCredential
	idxTTL
	idxTime
	numVars
)

var _ interpreter.Activation = (*activation)(nil)

func newActivation(in *Input) *activation { return &activation{in: in} }

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	i := varIndex(name)
	if i < 0 {
		return nil, false
	}
	return a.resolve(i), true
}

// resolve returns input variable i as a CEL value, converting it on the
// first read: what the decision's Inputs list.
func (a *activation) resolve(i int) ref.Val {
	if a.vals[i] == nil {
		a.vals[i] = a.value(i)
	}
	return a.vals[i]
}

func varIndex(name string) int {
	switch name {
	case varSubjectID:
		return idxSubjectID
	case varSubjectTrustDomain:
		return idxTrustDomain
	case varSubjectPath:
		return idxPath
	case varSubjectSegments:
		return idxSegments
	case varSubjectSelectors:
		return idxSubjectSelectors
	case varNodeID:
		return idxNodeID
	case varNodeMethod:
		return idxNodeMethod
	case varNodeSelectors:
		return idxNodeSelectors
	case varNodeLabels:
		return idxNodeLabels
	case varContext:
		return idxContext
	case varRequestCredential:
		return idxCredential
	case varRequestTTL:
		return idxTTL
	case varRequestTime:
		return idxTime
	}
	return -1
}

// value converts input variable i.
func (a *activation) value(i int) ref.Val {
	adapter := types.DefaultTypeAdapter
	in := a.in
	switch i {
	case idxSubjectID:
		return types.String(in.Subject.ID.String())
	case idxTrustDomain:
		return types.String(in.Subject.ID.TrustDomain().Name())
	case idxPath:
		return types.String(in.Subject.ID.Path())
	case idxSegments:
		return types.NewStringList(adapter, a.segments())
	case idxSubjectSelectors:
		return types.NewStringList(adapter, a.selectors(idxSubjectSelectors))
	case idxNodeID:
		return types.String(in.Node.ID)
	case idxNodeMethod:
		return types.String(in.Node.AttestationMethod)
	case idxNodeSelectors:
		return types.NewStringList(adapter, a.selectors(idxNodeSelectors))
	case idxNodeLabels:
		labels := in.Node.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		return types.NewStringStringMap(adapter, labels)
	case idxContext:
		ctx := in.Context
		if ctx == nil {
			ctx = map[string]any{}
		}
		return types.NewStringInterfaceMap(adapter, ctx)
	case idxCredential:
		return types.String(in.Request.Credential)
	case idxTTL:
		return types.Duration{Duration: in.Request.TTL}
	default: // idxTime
		now := in.Request.Time
		if now.IsZero() {
			now = time.Now()
		}
		return types.Timestamp{Time: now.UTC()}
	}
}

// varNames are the variables' names by index.
var varNames = [numVars]string{
	varSubjectID, varSubjectTrustDomain, varSubjectPath, varSubjectSegments, varSubjectSelectors,
	varNodeID, varNodeMethod, varNodeSelectors, varNodeLabels, varContext,
	varRequestCredential, varRequestTTL, varRequestTime,
}

// read returns the variables the evaluated rules read, by name, as plain
// JSON-friendly values: strings, lists of strings, maps, the TTL in Go
// duration syntax and the time in RFC 3339.
func (a *activation) read() map[string]any {
	var out map[string]any
	for i, v := range a.vals {
		if v == nil {
			continue
		}
		if out == nil {
			out = map[string]any{}
		}
		var plain any
		switch i {
		case idxSegments, idxSubjectSelectors, idxNodeSelectors:
			plain = v.Value()
		case idxNodeLabels, idxContext:
			plain = v.Value() // the input's map, or an empty one
		case idxTTL:
			plain = a.in.Request.TTL.String()
		case idxTime:
			plain = v.(types.Timestamp).Time.Format(time.RFC3339Nano)
		default:
			plain = string(v.(types.String))
		}
		out[varNames[i]] = plain
	}
	return out
}

// segments returns subject.segments: the path's segments, [] for none.
func (a *activation) segments() []string {
	if !a.segsOK {
		a.segs, a.segsOK = []string{}, true
		if p := a.in.Subject.ID.Path(); len(p) > 1 {
			a.segs = strings.Split(p[1:], "/")
		}
	}
	return a.segs
}

// selectors returns subject.selectors (i is idxSubjectSelectors) or
// node.selectors as "type:value" strings.
func (a *activation) selectors(i int) []string {
	k, sel := 0, a.in.Subject.Selectors
	if i == idxNodeSelectors {
		k, sel = 1, a.in.Node.Selectors
	}
	if !a.selsOK[k] {
		a.sels[k], a.selsOK[k] = selectorStrings(sel), true
	}
	return a.sels[k]
}

// setMin is the length from which a list's membership test builds a set.
const setMin = 16

// contains reports whether the list(string) variable i holds s, as CEL's
// `s in list` does.
func (a *activation) contains(i int, s string) bool {
	if i == idxSegments {
		return slices.Contains(a.segments(), s)
	}
	list := a.selectors(i)
	if len(list) < setMin {
		return slices.Contains(list, s)
	}
	k := 0
	if i == idxNodeSelectors {
		k = 1
	}
	if a.selSets[k] == nil {
		a.selSets[k] = newStringSet(list)
	}
	return a.selSets[k].has(s)
}

// setSeed seeds the hashes of every stringSet of the process.
var setSeed = maphash.MakeSeed()

// stringSet is a set of strings for membership tests: an open-addressing
// table of indexes into the list, probed linearly. Building it is one
// allocation without pointers (the strings stay in the list), cheaper than
// a map for the one decision it serves.
type stringSet struct {
	elems []string
	slots []int32 // 1 + an index of elems; 0: empty. The length is a power of two, at least twice len(elems).
}

func newStringSet(elems []string) *stringSet {
	n := 1
	for n < 2*len(elems) {
		n <<= 1
	}
	s := &stringSet{elems: elems, slots: make([]int32, n)}
	mask := uint64(n - 1)
	for i, e := range elems {
		for h := maphash.String(setSeed, e) & mask; ; h = (h + 1) & mask {
			if s.slots[h] == 0 {
				s.slots[h] = int32(i + 1)
				break
			}
			if elems[s.slots[h]-1] == e {
				break // a duplicate
			}
		}
	}
	return s
}

// has reports whether x is in the set.
func (s *stringSet) has(x string) bool {
	mask := uint64(len(s.slots) - 1)
	for h := maphash.String(setSeed, x) & mask; ; h = (h + 1) & mask {
		switch j := s.slots[h]; {
		case j == 0:
			return false
		case s.elems[j-1] == x:
			return true
		}
	}
}

// selectString returns the string that the select path under the map
// variable i (node.labels or context) reaches, with false when a key is
// missing, a step is not a map or the value is not a string: the cases a
// guard leaves to the program.
func (a *activation) selectString(i int, path []string) (string, bool) {
	if i == idxNodeLabels {
		v, ok := a.in.Node.Labels[path[0]]
		return v, ok && len(path) == 1
	}
	var cur any = a.in.Context
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[k]; !ok {
			return "", false
		}
	}
	s, ok := cur.(string)
	return s, ok
}

// selectorStrings returns the selectors as "type:value" (Selector.String),
// cut from one string: two allocations for any number of selectors.
func selectorStrings(sel []model.Selector) []string {
	out := make([]string, len(sel))
	n := 0
	for _, s := range sel {
		n += len(s.Type) + 1 + len(s.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range sel {
		b.WriteString(s.Type)
		b.WriteByte(':')
		b.WriteString(s.Value)
	}
	all, at := b.String(), 0
	for i, s := range sel {
		end := at + len(s.Type) + 1 + len(s.Value)
		out[i] = all[at:end]
		at = end
	}
	return out
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// position maps the compile error's position in the expression to a line
// and 1-based column of the YAML document (lines) holding it in node n.
func (e *compileError) position(n *yaml.Node, lines []string) (int, int) {
	return yamlPosition(n, e.line, e.col, lines)
}
