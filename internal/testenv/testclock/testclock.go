// Package testclock is a settable clock for tests: time moves only when the
// test says so, and waits started with After end when the clock passes
// their deadline. It satisfies agent.Clock, and its Now method value fits
// every `Now func() time.Time` configuration field (server, CA, store), so
// one clock can drive a whole test environment.
package testclock

import (
	"sync"
	"time"
)

// Clock is a fake clock. Create it with New; it is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	added   chan struct{} // closed and replaced whenever a waiter is added
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

// New returns a clock reading start (whole seconds).
func New(start time.Time) *Clock {
	return &Clock{now: start.Truncate(time.Second), added: make(chan struct{})}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once it has been
// moved at least d forward. A wait of zero or less ends at once.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), c: ch})
	close(c.added)
	c.added = make(chan struct{})
	return ch
}

// Add moves the clock forward by d and ends every wait whose deadline it
// passed.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.c <- c.now
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

// Set moves the clock to t, which must not be before the current time.
func (c *Clock) Set(t time.Time) {
	c.Add(t.Sub(c.Now()))
}

// Waiters returns how many waits are pending.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// WaitForWaiters blocks until at least n waits are pending or timeout (real
// time) passes, and reports whether they were. Tests use it to know a loop
// has gone to sleep before moving the clock.
func (c *Clock) WaitForWaiters(n int, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		ok, added := len(c.waiters) >= n, c.added
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-added:
		case <-deadline:
			return false
		}
	}
}
