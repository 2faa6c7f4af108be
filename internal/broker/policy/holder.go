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
	path string
	mu   sync.Mutex // serializes reloads
	cur  atomic.Pointer[Policy]
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

// Path returns the policy file's path.
func (h *Holder) Path() string { return h.path }

// Policy returns the policy in force.
func (h *Holder) Policy() *Policy { return h.cur.Load() }

// Decide decides with the policy in force.
func (h *Holder) Decide(ctx context.Context, in Input) Decision {
	return h.cur.Load().Decide(ctx, in)
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
	h.cur.Store(p)
	return nil
}
