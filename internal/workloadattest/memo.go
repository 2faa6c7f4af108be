package workloadattest

import (
	"sync/atomic"
	"time"
)

// Memo holds a value derived from one connection's caller — the Workload
// API server keeps the merged selectors of its attestors there — so that
// the calls on a connection can reuse it for a short while instead of
// reading /proc again. A Memo belongs to exactly one connection and lives
// as long as it: the caller of a connection is one process, named by the
// connection's pidfd, so nothing stored for it is ever seen by another
// process, not even one that reuses its PID. Users still call
// Peer.CheckAlive before serving what they load.
//
// The zero Memo is empty. It is safe for concurrent use.
type Memo struct {
	v atomic.Pointer[memoValue]
}

type memoValue struct {
	val   any
	until time.Time
}

// Load returns the value stored last if it is still valid at now.
func (m *Memo) Load(now time.Time) (any, bool) {
	if m == nil {
		return nil, false
	}
	v := m.v.Load()
	if v == nil || !now.Before(v.until) {
		return nil, false
	}
	return v.val, true
}

// Store replaces the value, valid until the given time. The value is shared
// by every later Load and must not be modified.
func (m *Memo) Store(val any, until time.Time) {
	if m != nil {
		m.v.Store(&memoValue{val: val, until: until})
	}
}

// Memo returns the memo of p's connection: nil for a Peer that was not
// accepted by NewCredentials' handshake (the zero Peer, say), whose Load
// then reports nothing and whose Store does nothing.
func (p Peer) Memo() *Memo { return p.memo }
