package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	subjectEnvOnce sync.Once
	subjectEnvVal  *cel.Env
	subjectEnvErr  error
)

// subjectEnv returns the environment of subject rules: subject.id,
// subject.trust_domain, subject.path and subject.segments.
func subjectEnv() (*cel.Env, error) {
	subjectEnvOnce.Do(func() {
		subjectEnvVal, subjectEnvErr = cel.NewEnv(append(subjectVars(), limits()...)...)
	})
	return subjectEnvVal, subjectEnvErr
}

// SubjectRule is one CEL expression over a peer's SPIFFE ID, for the
// gateway: the variables subject.id, subject.trust_domain, subject.path and
// subject.segments of a policy rule, nothing else. It is immutable and safe
// for concurrent use.
type SubjectRule struct {
	expr string
	prg  cel.Program
}

// CompileSubjectRule parses and type-checks expr, which must be of type
// bool, e.g. `subject.trust_domain == "example.org" &&
// subject.segments[0] == "web"`. An error gives the line and column in expr.
func CompileSubjectRule(expr string) (*SubjectRule, error) {
	env, err := subjectEnv()
	if err != nil {
		return nil, err
	}
	ast, err := compileExpr(env, expr)
	if err != nil {
		var ce *compileError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%d:%d: %s", ce.line, ce.col+1, ce.msg)
		}
		return nil, err
	}
	prg, err := env.Program(ast, programOptions(cel.OptOptimize)...)
	if err != nil {
		return nil, fmt.Errorf("build program: %w", err)
	}
	return &SubjectRule{expr: expr, prg: prg}, nil
}

// String returns the expression.
func (r *SubjectRule) String() string { return r.expr }

// Allow evaluates the rule for id. An evaluation error (an index out of
// range, the cost limit) is returned with false; callers deny on it.
func (r *SubjectRule) Allow(id spiffeid.ID) (bool, error) {
	act := newActivation(&Input{Subject: Subject{ID: id}})
	out, _, err := r.prg.ContextEval(context.Background(), act)
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %s", truncate(r.expr), cleanEvalError(err))
	}
	return out == types.True, nil
}
