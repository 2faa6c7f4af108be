package policy

import (
	"context"
	"sync"
	"sync/atomic"
)

// Holder holds the current policy of a file and reloads it on demand (the
// server calls Reload on SIGHUP). A reload that fails keeps the policy in
// force. A Holder is safe for concurrent use; its zero value is not usable:
// make one with NewHolder.
type Holder struct {
	path  string
	mu    sync.Mutex // serializes reloads
	cur   atomic.Pointer[Policy]
	check func(*Policy) error // set by SetCheck; nil: none
}

// NewHolder loads the policy file at path. It fails as Load does, so a
// server whose policy does not compile does not start.
func NewHolder(path string) (*Holder, error) {
	p, err := Load(path)
	if err != nil {
		return nil, err
	}
	h := &Holder{path: path}
	h.cur.Store(p)
	return h, nil
}

// SetCheck makes check part of loading: it runs now on the policy in
// force, and on every Reload before the new policy takes over (a policy it
// refuses is not put in force). The server uses it to refuse rules that
// cannot apply to the configured credentials, such as an ssh key that
// would widen a credential. It returns check's error on the current
// policy, which the caller treats as a policy that does not load.
func (h *Holder) SetCheck(check func(*Policy) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := check(h.cur.Load()); err != nil {
		return err
	}
	h.check = check
	return nil
}

// Path returns the policy file's path.
func (h *Holder) Path() string { return h.path }

// Policy returns the policy in force.
func (h *Holder) Policy() *Policy { return h.cur.Load() }

// Decide decides with the policy in force.
func (h *Holder) Decide(ctx context.Context, in Input) Decision {
	return h.cur.Load().Decide(ctx, in)
}

// Evaluate decides with the policy in force, without the clauses (see
// Policy.Evaluate).
func (h *Holder) Evaluate(ctx context.Context, in Input) Decision {
	return h.cur.Load().Evaluate(ctx, in)
}

// Reload reads and compiles the file again. On success the new policy is in
// force for every later decision; on failure the old one stays and the
// error says why (the rule, its line and the problem).
func (h *Holder) Reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := Load(h.path)
	if err != nil {
		return err
	}
	if h.check != nil {
		if err := h.check(p); err != nil {
			return err
		}
	}
	h.cur.Store(p)
	return nil
}
